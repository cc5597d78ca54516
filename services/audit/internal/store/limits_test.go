package store_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"
	"github.com/parleyhq/parley/services/audit/internal/store"
)

func deepJSON(depth int) string {
	return strings.Repeat(`{"a":`, depth) + `"x"` + strings.Repeat("}", depth)
}

// TestDeepJSONNeverPoisonsAPage stores a request nested ~4,900 levels deep (the row that
// made every ListConversations page holding it fail for everyone with "exceeded maximum
// recursion depth") and reads the page back the way the router does: the answer
// round-trips through protobuf's binary decoder, whose recursion limit is 10,000.
func TestDeepJSONNeverPoisonsAPage(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	deep := event(t, "acme", 1)
	deep.RequestJson = []byte(deepJSON(4900))
	normal := event(t, "acme", 2)
	insert(t, s, deep, normal)

	// A row stored deep by an older version (or by hand) is tolerated on read too.
	legacy := event(t, "acme", 3)
	insert(t, s, legacy)
	_, err := pool.Exec(t.Context(), "UPDATE conversations SET request = $1::jsonb WHERE request_id = $2",
		deepJSON(4900), pgtype.UUID{Bytes: uuid.MustParse(legacy.GetRequestId()), Valid: true})
	require.NoError(t, err)

	resp, err := s.List(t.Context(), "acme", &auditv1.ListConversationsRequest{})
	require.NoError(t, err)
	require.Len(t, resp.GetConversations(), 3)
	b, err := proto.Marshal(resp)
	require.NoError(t, err)
	var decoded auditv1.ListConversationsResponse
	require.NoError(t, proto.Unmarshal(b, &decoded), "the page decodes wherever it goes")

	byID := map[string]*auditv1.Conversation{}
	for _, c := range decoded.GetConversations() {
		byID[c.GetRequestId()] = c
	}
	for _, id := range []string{deep.GetRequestId(), legacy.GetRequestId()} {
		text := byID[id].GetRequest().GetStringValue()
		require.Equal(t, 4900, strings.Count(text, "{"), "the over-deep request is kept as its text")
		require.Contains(t, text, `"x"`)
	}
	requireProtoEqual(t, want(t, normal), byID[normal.GetRequestId()])

	got, err := s.Get(t.Context(), "acme", deep.GetRequestId())
	require.NoError(t, err)
	require.NotEmpty(t, got.GetRequest().GetStringValue())
}

// TestListPageByteBudget: a page stops adding rows at the byte budget (20 rows of
// 800 KB used to make one 16 MB answer) and the token continues from the last row
// returned, so paging still visits every row exactly once.
func TestListPageByteBudget(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	const budget = 1 << 20
	s := store.New(pool, store.WithPageMaxBytes(budget))
	big := strings.Repeat("word ", 160_000) // 800 KB
	var events []*auditv1.ConversationEvent
	for i := range 20 {
		ev := event(t, "acme", i)
		ev.RequestJson = []byte(fmt.Sprintf(`{"text":%q}`, big))
		events = append(events, ev)
	}
	insert(t, s, events...)

	seen := map[string]bool{}
	token := ""
	pages := 0
	for {
		resp, err := s.List(t.Context(), "acme", &auditv1.ListConversationsRequest{PageSize: 20, PageToken: token})
		require.NoError(t, err)
		pages++
		require.NotEmpty(t, resp.GetConversations(), "a page holds one row at least")
		require.LessOrEqual(t, proto.Size(resp), budget+budget/4, "page %d", pages)
		for _, c := range resp.GetConversations() {
			require.False(t, seen[c.GetRequestId()], "row %s twice", c.GetRequestId())
			seen[c.GetRequestId()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Len(t, seen, 20)
	require.Equal(t, 20, pages, "one 800 KB row per 1 MiB page")

	// A row larger than the budget still comes, alone.
	s2 := store.New(pool, store.WithPageMaxBytes(1024))
	resp, err := s2.List(t.Context(), "acme", &auditv1.ListConversationsRequest{PageSize: 5})
	require.NoError(t, err)
	require.Len(t, resp.GetConversations(), 1)
	require.NotEmpty(t, resp.GetNextPageToken())
}
