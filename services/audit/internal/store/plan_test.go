package store_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

// planNode is the part of EXPLAIN (FORMAT JSON) the test reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// TestListPlansUseIndexes is the everyday stand-in for BenchmarkQuery's million rows: on a
// log of 30,000 rows over three days, with statistics, every kind of list query BenchmarkQuery
// times is planned without a sequential scan of a partition, so its cost follows the page
// size rather than the size of the log.
func TestListPlansUseIndexes(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	const rows = 30000
	rng := rand.New(rand.NewPCG(5, 5))
	for from := 0; from < rows; from += 3000 {
		events := make([]*auditv1.ConversationEvent, 0, 3000)
		for i := from; i < from+3000; i++ {
			ev := logEvent(i, rows, rng)
			// Three days rather than thirty: bigger partitions, as in a busy log.
			ev.CreatedAt = timestamppb.New(logStart.Add(time.Duration(float64(72*time.Hour) * float64(i) / rows)))
			events = append(events, ev)
		}
		insert(t, s, events...)
	}
	_, err := s.Maintain(t.Context(), store.MaintainOptions{Now: logStart.Add(5 * 24 * time.Hour), Ahead: 1, LockTimeout: time.Minute})
	require.NoError(t, err)
	_, err = pool.Exec(t.Context(), "ANALYZE conversations")
	require.NoError(t, err)

	// Empty partitions (the days ahead) are scanned sequentially at no cost; only the
	// three with rows matter.
	full := map[string]bool{}
	for d := range 3 {
		full[store.PartitionName(logStart.Add(time.Duration(d)*24*time.Hour))] = true
	}

	day := timestamppb.New(logStart.Add(24 * time.Hour))
	dayEnd := timestamppb.New(logStart.Add(48 * time.Hour))
	tests := []struct {
		name string
		req  *auditv1.ListConversationsRequest
		// wantIndexSuffix, when set, must name the index that every partition with rows
		// is read through.
		wantIndexSuffix string
	}{
		{name: "newest", req: &auditv1.ListConversationsRequest{}},
		{name: "one day", req: &auditv1.ListConversationsRequest{StartTime: day, EndTime: dayEnd}},
		{name: "component", req: &auditv1.ListConversationsRequest{Component: "component-3"}},
		{name: "model and day", req: &auditv1.ListConversationsRequest{Model: "model-7", StartTime: day, EndTime: dayEnd}},
		{name: "errors", req: &auditv1.ListConversationsRequest{Status: auditv1.Status_STATUS_ERROR}},
		{name: "error code", req: &auditv1.ListConversationsRequest{ErrorCode: "DeadlineExceeded"}},
		{name: "context id", req: &auditv1.ListConversationsRequest{ContextId: "ctx-1234"}},
		{name: "cache hits", req: &auditv1.ListConversationsRequest{CacheHit: proto.Bool(true)}},
		{name: "slowest", req: &auditv1.ListConversationsRequest{MinLatency: durationpb.New(5 * time.Second)}},
		{name: "rare word", req: &auditv1.ListConversationsRequest{TextQuery: "zebracorn"}, wantIndexSuffix: "_search_idx"},
		{name: "common words", req: &auditv1.ListConversationsRequest{TextQuery: "w1 w2"}},
		{name: "earlier page", req: &auditv1.ListConversationsRequest{EndTime: day}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := proto.CloneOf(tt.req)
			req.PageSize = 50
			sql, args, err := store.ListSQL("acme", req)
			require.NoError(t, err)
			var doc []struct {
				Plan planNode `json:"Plan"`
			}
			var out string
			require.NoError(t, pool.QueryRow(t.Context(), "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&out))
			require.NoError(t, json.Unmarshal([]byte(out), &doc))
			var scans []string
			indexed := map[string]bool{}
			doc[0].Plan.walk(func(n planNode) {
				if n.NodeType == "Seq Scan" && full[n.RelationName] {
					scans = append(scans, n.RelationName)
				}
				if tt.wantIndexSuffix != "" && strings.HasSuffix(n.IndexName, tt.wantIndexSuffix) {
					indexed[strings.TrimSuffix(n.IndexName, tt.wantIndexSuffix)] = true
				}
			})
			require.Empty(t, scans, "sequential scans in the plan:\n%s", out)
			if tt.wantIndexSuffix != "" {
				require.Equal(t, full, indexed, "partitions not read through %s:\n%s", tt.wantIndexSuffix, out)
			}

			// And the query answers.
			_, err = s.List(t.Context(), "acme", req)
			require.NoError(t, err)
		})
	}
}
