package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/integration/stack"
)

// The helper processes of the benchmark: the one-hop floor, the fake provider and (unless
// -nats embedded) the NATS server, each a process of its own so that its CPU time can be
// read from /proc apart from the load generator's.

// natsChildFlag makes parley-bench run only the stack's NATS server (its own child).
const natsChildFlag = "nats-child"

// helper is a child process that printed its address.
type helper struct {
	name string
	cmd  *exec.Cmd
	addr string
}

// startHelper starts bin with args and waits for its first line that contains marker,
// returning what follows the marker up to the next space.
func startHelper(name, bin string, marker string, args ...string) (*helper, error) {
	cmd := exec.Command(bin, args...) //nolint:gosec // our own binaries
	cmd.Stderr = os.Stderr
	// The helper dies with the benchmark, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			if line := sc.Text(); !found && strings.Contains(line, marker) {
				found = true
				lines <- line
			}
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s exited before it listened", name)
		}
		addr, _, _ := strings.Cut(line[strings.Index(line, marker)+len(marker):], " ")
		return &helper{name: name, cmd: cmd, addr: addr}, nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not listen within 30s", name)
	}
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

func (h *helper) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-done
	}
}

// buildHelpers compiles parley-floor and fakeprovider into dir.
func buildHelpers(ctx context.Context, root, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"./integration/cmd/parley-floor", "./integration/cmd/fakeprovider")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build helpers: %w\n%s", err, out)
	}
	return nil
}

// startNATSChild runs the stack's NATS server in a child process of this binary, admitting
// the users of a stack with dataDir and env (each -set is passed on: WORKER_COMPONENTS
// shapes the workers' permissions).
func startNATSChild(dataDir string, env envFlag) (*helper, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-" + natsChildFlag, dataDir}
	for k, v := range env {
		args = append(args, "-set", k+"="+v)
	}
	return startHelper("nats", self, "nats listening on ", args...)
}

// runNATSChild is the child: the stack's embedded NATS server until SIGTERM, admitting the
// floors' users too.
func runNATSChild(dataDir string, env envFlag) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url, shutdown, err := stack.StartNATS(dataDir, withDefaults(env), benchNATSUsers()...)
	if err != nil {
		return err
	}
	fmt.Printf("nats listening on %s\n", url)
	<-ctx.Done()
	shutdown()
	return nil
}

// cpuTime is a process's user plus system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(b))
}

// parseStat reads utime and stime (fields 14 and 15) from a /proc/<pid>/stat line.
func parseStat(s string) (time.Duration, error) {
	// The command name (field 2) may hold spaces and parentheses; the fields after it
	// follow its last ")".
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", s)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(fields))
	}
	// fields[0] is field 3 (state): utime is field 14, stime field 15.
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: bad times %q %q", fields[11], fields[12])
	}
	// Linux reports clock ticks of USER_HZ, 100 per second on every architecture Go runs on.
	const userHZ = 100
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// meter reads the CPU time of the benchmark's processes.
type meter struct {
	// procs maps a column name to its process ids (several for PostgreSQL's backends).
	procs map[string]func(context.Context) []int
	close func()
}

// sample is every column's CPU time by process id.
type sample map[string]map[int]time.Duration

func (m *meter) sample(ctx context.Context) sample {
	out := sample{}
	for name, pids := range m.procs {
		out[name] = map[int]time.Duration{}
		for _, pid := range pids(ctx) {
			if t, err := cpuTime(pid); err == nil {
				out[name][pid] = t
			}
		}
	}
	return out
}

// since is the CPU each column used between before and s; a process that appeared in
// between counts from zero (a new PostgreSQL backend), one that went is lost.
func (s sample) since(before sample) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pids := range s {
		for pid, t := range pids {
			out[name] += t - before[name][pid]
		}
	}
	return out
}

func fixed(pid int) func(context.Context) []int {
	return func(context.Context) []int { return []int{pid} }
}

// pgBackends lists the PostgreSQL backends serving the benchmark's database (audit's
// pool), through a connection of its own, which it leaves out. PostgreSQL's background
// processes (WAL writer, checkpointer) serve every database and are not counted.
func pgBackends(ctx context.Context, url string) (func(context.Context) []int, func(), error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	list := func(ctx context.Context) []int {
		rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		if err != nil {
			return nil
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return nil
		}
		out := make([]int, len(pids))
		for i, p := range pids {
			out[i] = int(p)
		}
		return out
	}
	return list, func() { _ = conn.Close(context.Background()) }, nil
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
