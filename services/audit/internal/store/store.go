// Package store keeps the audit log of conversations in PostgreSQL: batched, idempotent
// inserts from the ingest path, and tenant-confined queries for the AuditService.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// Page sizes for List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

var (
	// ErrNotFound means no conversation with that request id exists for the tenant.
	ErrNotFound = errors.New("conversation not found")
	// ErrInvalidPageToken means a page token was not one List returned.
	ErrInvalidPageToken = errors.New("invalid page token")
	// ErrInvalidRequest means a List request has a bad filter or page size.
	ErrInvalidRequest = errors.New("invalid list request")
	// ErrInvalidEvent means an event can never be stored: it is a poison message.
	ErrInvalidEvent = errors.New("invalid conversation event")
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations, for pg.Migrate and pgtest.NewDB.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		// Unreachable: "migrations" is a valid path. tern then reports no migrations found.
		return migrationFiles
	}
	return sub
}

// Store reads and writes the conversations table.
type Store struct {
	pool    *pgxpool.Pool
	columns []string
}

// New returns a Store on pool, which must point at a migrated database.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, columns: strings.Split(columnList, ", ")}
}

const stageTable = "conversations_stage"

// InsertBatch writes events in one transaction and returns how many rows are new. Events
// already stored (JetStream redeliveries after a crash between commit and ack) and duplicates
// within the batch are skipped. The COPY protocol cannot do ON CONFLICT, so rows are copied
// into a temporary staging table and moved with INSERT ... ON CONFLICT DO NOTHING.
//
// An event that fails ValidateEvent fails the whole batch with an error wrapping
// ErrInvalidEvent, before anything is written; any other error is the database's and worth
// retrying.
func (s *Store) InsertBatch(ctx context.Context, events []*auditv1.ConversationEvent) (inserted int64, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	rows := make([][]any, len(events))
	for i, ev := range events {
		if rows[i], err = toRow(ev); err != nil {
			return 0, fmt.Errorf("insert batch: event %d: %w", i, err)
		}
	}

	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			"CREATE TEMP TABLE "+stageTable+" (LIKE conversations INCLUDING DEFAULTS) ON COMMIT DROP"); err != nil {
			return fmt.Errorf("create stage: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{stageTable}, s.columns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		tag, err := tx.Exec(ctx, "INSERT INTO conversations ("+columnList+") SELECT "+columnList+
			" FROM "+stageTable+" ON CONFLICT DO NOTHING")
		if err != nil {
			return fmt.Errorf("move from stage: %w", err)
		}
		inserted = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("insert batch: %w", err)
	}
	return inserted, nil
}

// Get returns the tenant's conversation with requestID. A request id that is not a UUID
// cannot exist, so it gives ErrNotFound too.
func (s *Store) Get(ctx context.Context, tenant, requestID string) (*auditv1.Conversation, error) {
	id, err := uuid.Parse(requestID)
	if err != nil {
		return nil, fmt.Errorf("get conversation: %w", ErrNotFound)
	}
	rows, err := s.pool.Query(ctx, "SELECT "+columnList+" FROM conversations"+
		" WHERE tenant = $1 AND request_id = $2 ORDER BY created_at DESC LIMIT 1",
		tenant, pgtype.UUID{Bytes: id, Valid: true})
	if err != nil {
		return nil, fmt.Errorf("get conversation: %w", err)
	}
	r, err := pgx.CollectOneRow(rows, pgx.RowToStructByName[row])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get conversation: %w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("get conversation: %w", err)
	}
	return r.conversation(), nil
}

// List returns one page of the tenant's conversations that match every filter set in req,
// newest first. start_time is inclusive and end_time exclusive. Pages are keyset-paginated on
// (created_at, request_id), so rows inserted while a client pages through never cause gaps or
// repeats. A bad page token gives ErrInvalidPageToken; a bad filter or page size,
// ErrInvalidRequest.
func (s *Store) List(ctx context.Context, tenant string, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	q, limit, err := listQuery(tenant, req)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	rows, err := s.pool.Query(ctx, q.sql(), q.args...)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[row])
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}

	resp := &auditv1.ListConversationsResponse{}
	if len(rs) > limit {
		rs = rs[:limit]
		last := rs[limit-1]
		resp.NextPageToken = encodePageToken(pageCursor{createdAt: last.CreatedAt, requestID: last.RequestID.Bytes})
	}
	resp.Conversations = make([]*auditv1.Conversation, len(rs))
	for i := range rs {
		resp.Conversations[i] = rs[i].conversation()
	}
	return resp, nil
}

type query struct {
	where []string
	args  []any
	limit int
}

func (q *query) add(cond string, args ...any) {
	n := make([]any, len(args))
	for i := range args {
		n[i] = len(q.args) + i + 1
	}
	q.where = append(q.where, fmt.Sprintf(cond, n...))
	q.args = append(q.args, args...)
}

func (q *query) sql() string {
	return "SELECT " + columnList + " FROM conversations WHERE " + strings.Join(q.where, " AND ") +
		" ORDER BY created_at DESC, request_id DESC LIMIT " + fmt.Sprint(q.limit)
}

// listQuery builds the query for req; it fetches one row more than the page size to learn
// whether another page follows.
func listQuery(tenant string, req *auditv1.ListConversationsRequest) (*query, int, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, 0, fmt.Errorf("%w: negative page_size %d", ErrInvalidRequest, size)
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	q := &query{limit: size + 1}
	q.add("tenant = $%d", tenant)

	if req.GetStartTime() != nil {
		if err := req.GetStartTime().CheckValid(); err != nil {
			return nil, 0, fmt.Errorf("%w: start_time: %w", ErrInvalidRequest, err)
		}
		q.add("created_at >= $%d", req.GetStartTime().AsTime())
	}
	if req.GetEndTime() != nil {
		if err := req.GetEndTime().CheckValid(); err != nil {
			return nil, 0, fmt.Errorf("%w: end_time: %w", ErrInvalidRequest, err)
		}
		q.add("created_at < $%d", req.GetEndTime().AsTime())
	}
	for _, f := range []struct{ column, value string }{
		{"component", req.GetComponent()},
		{"model", req.GetModel()},
		{"error_code", req.GetErrorCode()},
		{"context_id", req.GetContextId()},
	} {
		if f.value != "" {
			q.add(f.column+" = $%d", f.value)
		}
	}
	if req.GetStatus() != auditv1.Status_STATUS_UNSPECIFIED {
		st, ok := statusToDB(req.GetStatus())
		if !ok {
			return nil, 0, fmt.Errorf("%w: unknown status %v", ErrInvalidRequest, req.GetStatus())
		}
		q.add("status = $%d", st)
	}
	if req.CacheHit != nil {
		q.add("cache_hit = $%d", req.GetCacheHit())
	}
	if req.GetPageToken() != "" {
		c, err := decodePageToken(req.GetPageToken())
		if err != nil {
			return nil, 0, err
		}
		q.add("(created_at, request_id) < ($%d, $%d)", c.createdAt, pgtype.UUID{Bytes: c.requestID, Valid: true})
	}
	return q, size, nil
}

// row is one conversations row as read back.
type row struct {
	RequestID         pgtype.UUID      `db:"request_id"`
	CreatedAt         time.Time        `db:"created_at"`
	Tenant            string           `db:"tenant"`
	API               string           `db:"api"`
	Component         string           `db:"component"`
	Provider          string           `db:"provider"`
	Model             string           `db:"model"`
	ContextID         string           `db:"context_id"`
	Request           []byte           `db:"request"`
	Response          []byte           `db:"response"`
	FinishReason      string           `db:"finish_reason"`
	Status            string           `db:"status"`
	ErrorCode         string           `db:"error_code"`
	ErrorMessage      string           `db:"error_message"`
	PromptTokens      int64            `db:"prompt_tokens"`
	CompletionTokens  int64            `db:"completion_tokens"`
	TotalTokens       int64            `db:"total_tokens"`
	CachedTokens      int64            `db:"cached_tokens"`
	ReasoningTokens   int64            `db:"reasoning_tokens"`
	CacheHit          bool             `db:"cache_hit"`
	PIIFindings       map[string]int64 `db:"pii_findings"`
	Attempts          int32            `db:"attempts"`
	Fallbacks         []string         `db:"fallbacks"`
	WorkerID          string           `db:"worker_id"`
	LatencyUS         int64            `db:"latency_us"`
	ProviderLatencyUS int64            `db:"provider_latency_us"`
}

func (r *row) conversation() *auditv1.Conversation {
	return &auditv1.Conversation{
		RequestId:    uuid.UUID(r.RequestID.Bytes).String(),
		Tenant:       r.Tenant,
		Api:          apiFromDB(r.API),
		Component:    r.Component,
		Provider:     r.Provider,
		Model:        r.Model,
		ContextId:    r.ContextID,
		Request:      jsonValue(r.Request),
		Response:     jsonValue(r.Response),
		FinishReason: r.FinishReason,
		Status:       statusFromDB(r.Status),
		ErrorCode:    r.ErrorCode,
		ErrorMessage: r.ErrorMessage,
		Usage: &auditv1.TokenUsage{
			PromptTokens:     unsigned(r.PromptTokens),
			CompletionTokens: unsigned(r.CompletionTokens),
			TotalTokens:      unsigned(r.TotalTokens),
			CachedTokens:     unsigned(r.CachedTokens),
			ReasoningTokens:  unsigned(r.ReasoningTokens),
		},
		CacheHit:        r.CacheHit,
		PiiFindings:     r.PIIFindings,
		Attempts:        r.Attempts,
		Fallbacks:       r.Fallbacks,
		WorkerId:        r.WorkerID,
		Latency:         durationpb.New(micros(r.LatencyUS)),
		ProviderLatency: durationpb.New(micros(r.ProviderLatencyUS)),
		CreatedAt:       timestamppb.New(r.CreatedAt),
	}
}

// jsonValue turns a jsonb column into a Value; SQL NULL leaves the field unset. InsertBatch
// only stores JSON a Value can hold, so the string fallback guards rows written by other
// means: one odd row must not make a whole page unreadable.
func jsonValue(b []byte) *structpb.Value {
	if b == nil {
		return nil
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(b, v); err != nil {
		return structpb.NewStringValue(string(b))
	}
	return v
}

func unsigned(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
