package ingest_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// cpuMeter measures the CPU time a benchmark costs: this process's (the ingester and the
// embedded NATS server) and that of the PostgreSQL backends serving its database, read
// from /proc when the server is local. On a shared machine wall-clock rates vary with the
// neighbours' load; CPU time per row does much less, which makes it the figure to compare
// changes with.
type cpuMeter struct {
	self     time.Duration
	backends map[int]time.Duration
}

func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU returns the CPU time of every backend connected to pool's database; nil when
// /proc does not show them (a remote server).
func backendCPU(tb testing.TB, pool *pgxpool.Pool) map[int]time.Duration {
	tb.Helper()
	rows, err := pool.Query(tb.Context(), "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	require.NoError(tb, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(tb, err)
	out := map[int]time.Duration{}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			return nil
		}
		// Fields 14 and 15 (utime, stime, in clock ticks of 1/100 s) follow the command
		// name, which is in parentheses and may hold spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			return nil
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		out[int(pid)] = time.Duration(u+s) * 10 * time.Millisecond
	}
	return out
}

func startCPU(tb testing.TB, pool *pgxpool.Pool) cpuMeter {
	tb.Helper()
	return cpuMeter{self: processCPU(tb), backends: backendCPU(tb, pool)}
}

// report adds the CPU time per row since start to b's metrics.
func (m cpuMeter) report(b *testing.B, pool *pgxpool.Pool, rows int) {
	b.Helper()
	self := processCPU(b) - m.self
	b.ReportMetric(float64(self.Microseconds())/float64(rows), "proc-cpu-µs/row")
	end := backendCPU(b, pool)
	if m.backends == nil || end == nil {
		return
	}
	var db time.Duration
	for pid, t := range end {
		db += t - m.backends[pid]
	}
	b.ReportMetric(float64(db.Microseconds())/float64(rows), "db-cpu-µs/row")
}
