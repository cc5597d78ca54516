package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
)

// List returns one page of the tenant's conversations that match every filter set in req,
// newest first. A page holds at most page_size rows and stops early, after at least one
// row, when the next row would take it past the store's byte budget
// (WithPageMaxBytes); next_page_token then continues from there. start_time is inclusive and end_time exclusive. Pages are keyset-paginated on
// (created_at, request_id), so rows inserted while a client pages through never cause gaps or
// repeats. A bad page token gives ErrInvalidPageToken; a bad filter or page size,
// ErrInvalidRequest.
func (s *Store) List(ctx context.Context, tenant string, req *auditv1.ListConversationsRequest) (*auditv1.ListConversationsResponse, error) {
	q, limit, err := listQuery(tenant, req)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	// A custom plan for every call: the best plan depends on the values (a rare word or a
	// common one, a short window or none), and a cached generic plan chosen for one kind
	// is slow for the other. Planning costs about a millisecond.
	rows, err := s.pool.Query(ctx, q.sql(), append([]any{pgx.QueryExecModeDescribeExec}, q.args...)...)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	// Rows are read one by one and the page ends at limit rows or when the next row
	// would pass the byte budget (a page always holds at least one row); the rest of the
	// result is discarded unread into memory. Either way the token continues after the
	// last row returned.
	var (
		rs    []row
		bytes int
		more  bool
	)
	for rows.Next() {
		r, err := pgx.RowToStructByName[row](rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list conversations: %w", err)
		}
		if len(rs) == limit || (len(rs) > 0 && bytes+r.size() > s.pageMaxBytes) {
			more = true
			break
		}
		rs = append(rs, r)
		bytes += r.size()
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}

	resp := &auditv1.ListConversationsResponse{}
	if more {
		last := rs[len(rs)-1]
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
		if err := checkText(f.column, f.value); err != nil {
			return nil, 0, err
		}
		if f.value != "" {
			q.add(f.column+" = $%d", f.value)
		}
	}
	// Implied by the equalities above, but the planner cannot see that through a bound
	// parameter; stated, they let it use the partial indexes.
	if req.GetErrorCode() != "" {
		q.where = append(q.where, "error_code <> ''")
	}
	if req.GetContextId() != "" {
		q.where = append(q.where, "context_id <> ''")
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
	if req.GetMinLatency() != nil {
		if err := req.GetMinLatency().CheckValid(); err != nil {
			return nil, 0, fmt.Errorf("%w: min_latency: %w", ErrInvalidRequest, err)
		}
		d := req.GetMinLatency().AsDuration()
		if d < 0 {
			return nil, 0, fmt.Errorf("%w: negative min_latency %s", ErrInvalidRequest, d)
		}
		// Rounded up: a row's latency is stored in whole microseconds.
		us := d.Microseconds()
		if d%1000 != 0 {
			us++
		}
		q.add("latency_us >= $%d", us)
	}
	if text := req.GetTextQuery(); text != "" {
		hashes, err := queryHashes(text)
		if err != nil {
			return nil, 0, err
		}
		q.add("search_hashes @> $%d::int8[]", hashes)
	}
	if req.GetPageToken() != "" {
		c, err := decodePageToken(req.GetPageToken())
		if err != nil {
			return nil, 0, err
		}
		// The first condition is implied by the second, but only it lets the planner
		// skip the partitions of later days.
		q.add("created_at <= $%d", c.createdAt)
		q.add("(created_at, request_id) < ($%d, $%d)", c.createdAt, pgtype.UUID{Bytes: c.requestID, Valid: true})
	}
	return q, size, nil
}
