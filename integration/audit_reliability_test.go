package integration_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/integration/stack"
)

// The audit reliability tests prove that every conversation the router answers appears in
// the audit log exactly once, whatever happens to PostgreSQL or to the audit service: an
// outage of the database, the audit process killed in the middle of a batch, two audit
// replicas sharing the work. Each starts a constellation of its own with a private
// PostgreSQL server it starts and stops itself, reusing the shared stack's binaries.
//
// By default each runs 200 conversations (and a 3 s outage); PARLEY_AUDIT_SOAK=1 runs the
// full scenarios of docs/audit.md: 1,000 conversations and a 30 s outage.

// EnvAuditSoak selects the full-size audit scenarios.
const envAuditSoak = "PARLEY_AUDIT_SOAK"

// auditLoad sizes a scenario.
type auditLoad struct {
	conversations int
	outage        time.Duration
	// spread is how long the conversations take, evenly paced, so that faults land
	// among them.
	spread time.Duration
}

func auditLoadSize() auditLoad {
	if os.Getenv(envAuditSoak) != "" {
		return auditLoad{conversations: 1000, outage: 30 * time.Second, spread: 40 * time.Second}
	}
	return auditLoad{conversations: 200, outage: 3 * time.Second, spread: 6 * time.Second}
}

// auditEnv tunes the audit service for the scenarios: a redelivery after a crash comes
// within seconds, and batches wait a while to fill, so a crash finds one half full.
var auditEnv = map[string]string{
	"WORKER_COMPONENTS":          "echo,echo-nocache",
	"WORKER_HEARTBEAT_INTERVAL":  "200ms",
	"ROUTER_WORKER_IDLE_TIMEOUT": "2s",
	"AUDIT_ACK_WAIT":             "4s",
	"AUDIT_BATCH_MAX_WAIT":       "1s",
	"LOG_LEVEL":                  "info",
}

// auditRig is a constellation with a private PostgreSQL server.
type auditRig struct {
	stack *stack.Stack
	pg    *stack.Postgres
	db    *pgxpool.Pool
}

// startAuditRig starts a private PostgreSQL server and a constellation on it; the test's
// end stops both.
func startAuditRig(t *testing.T) *auditRig {
	t.Helper()
	if st == nil {
		t.Skip("end-to-end test: needs the stack (not started under -short)")
	}
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	pgPort, err := stack.FreePort()
	require.NoError(t, err)
	pg, err := stack.StartPrivatePostgres(ctx, filepath.Join(data, "pg"), pgPort, true, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() {
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer stopCancel()
		// The server may be down already (an outage test that failed half-way).
		_ = pg.Stop(stopCtx)
	})

	logPath := filepath.Join(data, "services.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	ports, err := stack.FreePorts()
	require.NoError(t, err)
	wd, err := os.Getwd()
	require.NoError(t, err)
	s, err := stack.Start(ctx, stack.Options{
		DataDir:       data,
		BinDir:        filepath.Dir(st.Binary("router")),
		TLSDir:        st.TLSDir(),
		ComponentsDir: filepath.Join(wd, "testdata", "components"),
		Ports:         ports,
		Postgres:      stack.PostgresOptions{URL: pg.URL, FreshDatabase: true},
		Env:           auditEnv,
		Log:           logFile,
	})
	t.Cleanup(func() {
		if s != nil {
			stopCtx, stopCancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer stopCancel()
			if err := s.Stop(stopCtx); err != nil {
				t.Errorf("stop the audit rig: %v", err)
			}
		}
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				const tail = 40000
				if len(b) > tail {
					b = b[len(b)-tail:]
				}
				t.Logf("---- audit rig's service logs (tail) ----\n%s", b)
			}
		}
	})
	require.NoError(t, err, "start the audit rig")
	db, err := pgxpool.New(ctx, s.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return &auditRig{stack: s, pg: pg, db: db}
}

// traffic runs n Dapr conversations through the router, evenly paced over spread, and
// returns once they are all answered. Each answer must be 200; the request ids are
// collected.
type traffic struct {
	done chan struct{}
	mu   sync.Mutex
	ids  []string
	errs []string
}

func (r *auditRig) startTraffic(t *testing.T, n int, spread time.Duration) *traffic {
	t.Helper()
	tr := &traffic{done: make(chan struct{})}
	base := r.stack.URL("router")
	client := &http.Client{Timeout: 30 * time.Second}
	tag := nonce(t)
	go func() {
		defer close(tr.done)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		tick := time.NewTicker(spread / time.Duration(n))
		defer tick.Stop()
		for i := range n {
			<-tick.C
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				id, err := auditConverse(client, base, fmt.Sprintf("audit %s conversation %d", tag, i))
				tr.mu.Lock()
				defer tr.mu.Unlock()
				if err != nil {
					tr.errs = append(tr.errs, err.Error())
					return
				}
				tr.ids = append(tr.ids, id)
			})
		}
		wg.Wait()
	}()
	return tr
}

// answered returns how many conversations have been answered so far.
func (tr *traffic) answered() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.ids)
}

// wait waits for every conversation and requires that each was answered.
func (tr *traffic) wait(t *testing.T, n int) []string {
	t.Helper()
	select {
	case <-tr.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("conversations did not finish")
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Empty(t, tr.errs)
	require.Len(t, tr.ids, n)
	return tr.ids
}

// auditConverse posts one Dapr alpha1 conversation and returns its request id.
func auditConverse(client *http.Client, base, text string) (string, error) {
	body := fmt.Sprintf(`{"inputs":[{"content":%q}]}`, text)
	res, err := client.Post(base+"/v1.0-alpha1/conversation/echo-nocache/converse", "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	id := res.Header.Get("Parley-Request-Id")
	if id == "" {
		return "", fmt.Errorf("no Parley-Request-Id in %v", res.Header)
	}
	return id, nil
}

// rowCount returns the number of rows in the audit log, or -1 when the database does not
// answer.
func (r *auditRig) rowCount(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var n int
	if err := r.db.QueryRow(ctx, "SELECT count(*) FROM conversations").Scan(&n); err != nil {
		return -1
	}
	return n
}

// requireEachOnce waits until the audit log holds len(ids) rows and requires that they
// are exactly ids, each once, and that the daily usage roll-up counts each once too.
func (r *auditRig) requireEachOnce(t *testing.T, ids []string) {
	t.Helper()
	// Once the consumer has nothing pending or unacknowledged, every event in the stream
	// has been written and acknowledged: nothing in flight can add a row or a count.
	consumer := auditConsumer(t, r.stack)
	require.Eventually(t, func() bool {
		info, err := consumer.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && r.rowCount(t.Context()) >= len(ids)
	}, 2*time.Minute, 100*time.Millisecond,
		"the audit log never caught up: %d of %d rows", r.rowCount(t.Context()), len(ids))
	rows, err := r.db.Query(t.Context(), "SELECT request_id::text, count(*) FROM conversations GROUP BY 1")
	require.NoError(t, err)
	counts := map[string]int{}
	for rows.Next() {
		var (
			id string
			n  int
		)
		require.NoError(t, rows.Scan(&id, &n))
		counts[id] = n
	}
	require.NoError(t, rows.Err())
	require.Len(t, counts, len(ids), "rows of conversations nobody had")
	for _, id := range ids {
		require.Equal(t, 1, counts[id], "request %s", id)
	}
	var requests int64
	require.NoError(t, r.db.QueryRow(t.Context(), "SELECT coalesce(sum(requests), 0)::bigint FROM usage_daily").Scan(&requests))
	require.EqualValues(t, len(ids), requests, "usage roll-up")
	// Nothing went to the dead-letter subject.
	require.Zero(t, scrapeAudit(t, r.stack.URL("audit"), "parley_audit_dead_letters_total"))
}

// TestAuditSurvivesPostgresOutage stops PostgreSQL while conversations run and starts it
// again: the router answers every call throughout (the stream holds the events), and
// every conversation lands in the log exactly once.
func TestAuditSurvivesPostgresOutage(t *testing.T) {
	load := auditLoadSize()
	r := startAuditRig(t)
	tr := r.startTraffic(t, load.conversations, load.spread)

	// Some rows are written before the outage.
	require.Eventually(t, func() bool { return r.rowCount(t.Context()) > 0 }, time.Minute, 20*time.Millisecond)
	require.NoError(t, r.pg.StopServer(t.Context()))
	before := tr.answered()
	// The outage lasts load.outage, and longer if need be until conversations have been
	// answered during it.
	holdOutage(load.outage)
	require.Eventually(t, func() bool { return tr.answered() > before }, time.Minute, 20*time.Millisecond,
		"no conversation was answered while the database was down")
	during := tr.answered() - before
	require.Equal(t, -1, r.rowCount(t.Context()), "the database is down")
	require.NoError(t, r.pg.StartServer(t.Context()))
	t.Logf("%d conversations were answered while PostgreSQL was down", during)

	r.requireEachOnce(t, tr.wait(t, load.conversations))
}

// TestAuditSurvivesKillMidBatch kills the audit service (SIGKILL) while it holds a batch
// that it has fetched but not acknowledged, starts it again, and finds every conversation
// exactly once: the batch is redelivered, and rows it had committed are not duplicated.
func TestAuditSurvivesKillMidBatch(t *testing.T) {
	load := auditLoadSize()
	r := startAuditRig(t)
	consumer := auditConsumer(t, r.stack)
	// Twice the usual spread: each kill and restart takes a second or two.
	tr := r.startTraffic(t, load.conversations, 2*load.spread)

	// Kill until two kills have caught a batch in hand (a batch can be acknowledged
	// between the check and the signal), then let the last instance finish.
	for kills, midBatch := 0, 0; midBatch < 2; kills++ {
		require.Less(t, kills, 10, "no kill caught a batch in hand")
		require.Eventually(t, func() bool {
			info, err := consumer.Info(t.Context())
			return err == nil && r.rowCount(t.Context()) > 0 && info.NumAckPending > 0
		}, time.Minute, 5*time.Millisecond)
		require.NoError(t, r.stack.Kill("audit"))
		// What the dead process held stays unacknowledged until AckWait redelivers it.
		info, err := consumer.Info(t.Context())
		require.NoError(t, err)
		if info.NumAckPending > 0 {
			midBatch++
		}
		t.Logf("killed audit holding %d delivered, unacknowledged events; %d rows written, %d conversations answered",
			info.NumAckPending, r.rowCount(t.Context()), tr.answered())
		require.NoError(t, r.stack.StartService(t.Context(), "audit"))
		require.NoError(t, r.stack.WaitReady(t.Context(), "audit", time.Minute))
	}

	r.requireEachOnce(t, tr.wait(t, load.conversations))
}

// TestAuditTwoReplicas runs a second audit process on the same durable consumer: the two
// share the work, and every conversation is written exactly once.
func TestAuditTwoReplicas(t *testing.T) {
	load := auditLoadSize()
	r := startAuditRig(t)
	require.NoError(t, r.stack.StartInstance(t.Context(), "audit", "audit-2", nil))
	tr := r.startTraffic(t, load.conversations, load.spread)
	ids := tr.wait(t, load.conversations)
	r.requireEachOnce(t, ids)

	first := scrapeAudit(t, r.stack.URL("audit"), "parley_audit_rows_written_total")
	second := scrapeAudit(t, r.stack.URL("audit-2"), "parley_audit_rows_written_total")
	t.Logf("rows written: audit %v, audit-2 %v", first, second)
	require.InDelta(t, float64(len(ids)), first+second, 0, "each row is written by one replica")
	require.Positive(t, first, "both replicas take work")
	require.Positive(t, second, "both replicas take work")
}

// auditConsumer returns the audit service's durable consumer on the stack's NATS (as
// its admin: only audit itself may read the consumer).
func auditConsumer(t *testing.T, st *stack.Stack) jetstream.Consumer {
	t.Helper()
	nc, err := st.ConnectNATS(stack.AdminUser)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var c jetstream.Consumer
	require.Eventually(t, func() bool {
		c, err = js.Consumer(t.Context(), "PARLEY_AUDIT", "parley-audit")
		return err == nil
	}, 30*time.Second, 50*time.Millisecond)
	return c
}

// scrapeAudit returns the sum of the samples of metric name on base's /metrics.
func scrapeAudit(t *testing.T, base, name string) float64 {
	t.Helper()
	res := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, res.status)
	sum := 0.0
	for _, line := range strings.Split(res.body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		var v float64
		_, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		require.NoError(t, err, line)
		sum += v
	}
	return sum
}
