// Package store keeps the audit log of conversations in PostgreSQL: batched, idempotent
// inserts from the ingest path into day partitions, with the daily usage roll-up updated
// in the same transaction; partition maintenance (creation ahead, retention, search
// indexes); and tenant-confined queries for the AuditService (list with filters, text
// search and keyset pages, get, usage statistics).
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/libs/jsondepth"
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

// Store reads and writes the conversations table, its partitions and the usage_daily
// roll-up.
type Store struct {
	pool    *pgxpool.Pool
	columns []string
	now     func() time.Time
	// liveSearch creates each partition with its search index (AUDIT_SEARCH_INDEX=live).
	liveSearch bool
	// pageMaxBytes is the byte budget of a List page.
	pageMaxBytes int

	mu sync.Mutex
	// days holds the UTC days (days since the Unix epoch) whose partition is known to
	// exist, so that a batch checks the catalog only for a day it has not seen.
	days map[int64]struct{}
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock that usage statistics default their time range from.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithLiveSearchIndex makes every partition the store creates carry its search index from
// the start, so that rows are searchable by index as soon as they are written, at a cost
// to every insert. Without it, the search index of a day is built by
// EnsureSearchIndexes once the day is over.
func WithLiveSearchIndex(live bool) Option {
	return func(s *Store) { s.liveSearch = live }
}

// WithPageMaxBytes sets the byte budget of a List page (AUDIT_PAGE_MAX_BYTES); see List.
func WithPageMaxBytes(n int) Option {
	return func(s *Store) { s.pageMaxBytes = n }
}

// DefaultPageMaxBytes is the byte budget of a List page unless WithPageMaxBytes says
// otherwise.
const DefaultPageMaxBytes = 4 << 20

// New returns a Store on pool, which must point at a migrated database.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, columns: strings.Split(insertColumnList, ", "), now: time.Now, days: map[int64]struct{}{}, pageMaxBytes: DefaultPageMaxBytes}
	for _, o := range opts {
		o(s)
	}
	return s
}

const (
	stageTable = "conversations_stage"
	// Rows in the stage live for one transaction: toast_tuple_target keeps all but huge
	// ones from being compressed on the way in.
	createStageSQL = "CREATE TEMP TABLE IF NOT EXISTS " + stageTable +
		" (LIKE conversations INCLUDING DEFAULTS) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS"
)

// Row is an event converted for InsertRows.
type Row struct {
	values []any
	key    rowKey
	usage  usageKey
	counts usageCounts
}

// rowKey is a row's primary key.
type rowKey struct {
	id        [16]byte
	createdAt int64 // Unix microseconds
}

// PrepareRow checks ev and converts it for InsertRows, text search hashes included. The
// ingest path prepares the next batch this way while the store writes the current one.
// Errors wrap ErrInvalidEvent.
func PrepareRow(ev *auditv1.ConversationEvent) (Row, error) {
	values, err := toRow(ev)
	if err != nil {
		return Row{}, err
	}
	created := ev.GetCreatedAt().AsTime()
	r := Row{
		values: values,
		key:    rowKey{id: values[0].(pgtype.UUID).Bytes, createdAt: created.UnixMicro()},
		usage: usageKey{
			tenant: values[2].(string), day: dayOf(created),
			component: values[4].(string), model: values[6].(string),
		},
	}
	r.counts.add(ev)
	return r, nil
}

// InsertBatch prepares events (PrepareRow) and writes them with InsertRows. An event that
// cannot be prepared fails the whole batch, before anything is written, with an error
// wrapping ErrInvalidEvent that names its index.
func (s *Store) InsertBatch(ctx context.Context, events []*auditv1.ConversationEvent) (int64, error) {
	rows := make([]Row, len(events))
	for i, ev := range events {
		r, err := PrepareRow(ev)
		if err != nil {
			return 0, fmt.Errorf("insert batch: event %d: %w", i, err)
		}
		rows[i] = r
	}
	return s.InsertRows(ctx, rows)
}

// InsertRows writes rows in one transaction and returns how many are new. Rows already
// stored (JetStream redeliveries after a crash between commit and ack) and duplicates
// within the batch are skipped, and so are not counted again in the usage roll-up. The
// COPY protocol cannot do ON CONFLICT: rows are copied straight into the table, and when
// that fails on a duplicate key, copied into a temporary staging table and moved with
// INSERT ... ON CONFLICT DO NOTHING instead.
//
// The partition of every row's day is created first if it does not exist, so a row is
// never refused for its date, however old or far ahead. Every error is the database's
// and may be worth retrying; a row it refuses for its data gives a PostgreSQL error of
// class 22, 23 or 54.
func (s *Store) InsertRows(ctx context.Context, rows []Row) (inserted int64, err error) {
	if len(rows) == 0 {
		return 0, nil
	}
	days := map[int64]struct{}{}
	for _, r := range rows {
		days[r.usage.day] = struct{}{}
	}
	for attempt := 0; ; attempt++ {
		if err := s.ensureDays(ctx, days); err != nil {
			return 0, fmt.Errorf("insert rows: %w", err)
		}
		inserted, err = s.insert(ctx, rows)
		if err == nil {
			return inserted, nil
		}
		// Another replica's retention job may have dropped a partition this one thought
		// existed (an event older than the retention); forget the days and create again.
		if attempt == 0 && isNoPartition(err) {
			s.forgetDays(days)
			continue
		}
		return 0, fmt.Errorf("insert rows: %w", err)
	}
}

// insert writes rows in one transaction. The fast path copies them straight into
// conversations; only when a row is there already (a redelivery) does it fall back to
// the staging table and INSERT ... ON CONFLICT DO NOTHING, which skips the rows stored
// before. Either way the usage roll-up is updated, in the same transaction, with exactly
// the rows inserted.
func (s *Store) insert(ctx context.Context, rows []Row) (inserted int64, err error) {
	values := make([][]any, len(rows))
	for i, r := range rows {
		values[i] = r.values
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"conversations"}, s.columns, pgx.CopyFromRows(values)); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		return upsertUsage(ctx, tx, rows)
	})
	if err == nil {
		return int64(len(rows)), nil
	}
	if !isUniqueViolation(err) {
		return 0, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One staging table per connection, emptied at every commit: creating and
		// dropping one per batch would churn the catalog.
		if _, err := tx.Exec(ctx, createStageSQL); err != nil {
			return fmt.Errorf("create stage: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{stageTable}, s.columns, pgx.CopyFromRows(values)); err != nil {
			return fmt.Errorf("copy to stage: %w", err)
		}
		res, err := tx.Query(ctx, "INSERT INTO conversations ("+insertColumnList+") SELECT "+insertColumnList+
			" FROM "+stageTable+" ON CONFLICT DO NOTHING RETURNING request_id, created_at")
		if err != nil {
			return fmt.Errorf("move from stage: %w", err)
		}
		added := map[rowKey]bool{}
		var (
			id pgtype.UUID
			at time.Time
		)
		if _, err := pgx.ForEachRow(res, []any{&id, &at}, func() error {
			added[rowKey{id: id.Bytes, createdAt: at.UnixMicro()}] = true
			return nil
		}); err != nil {
			return fmt.Errorf("move from stage: %w", err)
		}
		var fresh []Row
		for _, r := range rows {
			if added[r.key] {
				fresh = append(fresh, r)
				delete(added, r.key) // a duplicate within the batch counts once
			}
		}
		inserted = int64(len(fresh))
		return upsertUsage(ctx, tx, fresh)
	})
	return inserted, err
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// isNoPartition reports whether err is PostgreSQL's refusal of a row for which no
// partition exists.
func isNoPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == checkViolation &&
		strings.HasPrefix(pgErr.Message, "no partition of relation")
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
	KeyID             string           `db:"key_id"`
	// TimeToFirstTokenUS is 0 for a conversation that was not streamed.
	TimeToFirstTokenUS int64  `db:"time_to_first_token_us"`
	TraceID            string `db:"trace_id"`
}

func (r *row) conversation() *auditv1.Conversation {
	c := &auditv1.Conversation{
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
		KeyId:           r.KeyID,
		TraceId:         r.TraceID,
	}
	if r.TimeToFirstTokenUS > 0 {
		c.TimeToFirstToken = durationpb.New(micros(r.TimeToFirstTokenUS))
	}
	return c
}

// jsonValue turns a jsonb column into a Value; SQL NULL leaves the field unset. InsertBatch
// only stores JSON a Value can hold, nested at most maxJSONDepth deep, so the string
// fallbacks guard rows written before that rule or by other means: one odd row must not
// make a whole page unreadable, for the audit service or for any decoder of its answer.
func jsonValue(b []byte) *structpb.Value {
	if b == nil {
		return nil
	}
	if jsondepth.Exceeds(b, maxJSONDepth) {
		return structpb.NewStringValue(string(b))
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(b, v); err != nil {
		return structpb.NewStringValue(string(b))
	}
	return v
}

// size approximates the bytes r adds to a List answer: its JSON documents and a fixed
// allowance for the other columns.
func (r *row) size() int {
	return len(r.Request) + len(r.Response) + len(r.ErrorMessage) + 512
}

func unsigned(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
