package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// checkViolation is SQLSTATE 23514, which PostgreSQL also raises for a row that no
// partition accepts.
const checkViolation = "23514"

// partitionPrefix starts the name of every partition of conversations; the UTC day follows
// as YYYYMMDD.
const partitionPrefix = "conversations_p"

// day is one UTC day.
const day = 24 * time.Hour

// ErrInvalidPartitionName means a table name is not that of a day partition.
var ErrInvalidPartitionName = errors.New("not a day partition name")

// dayOf returns the UTC day of t as days since the Unix epoch.
func dayOf(t time.Time) int64 {
	return floorDiv(t.Unix(), 86400)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// dayTime returns the start of day d (days since the Unix epoch) in UTC.
func dayTime(d int64) time.Time {
	return time.Unix(d*86400, 0).UTC()
}

// PartitionName returns the name of the partition holding day, a time within it.
func PartitionName(day time.Time) string {
	return partitionPrefix + day.UTC().Format("20060102")
}

// ParsePartitionName returns the UTC day of a partition named by PartitionName. Any other
// name gives an error wrapping ErrInvalidPartitionName.
func ParsePartitionName(name string) (time.Time, error) {
	digits, ok := strings.CutPrefix(name, partitionPrefix)
	if !ok || len(digits) != 8 {
		return time.Time{}, fmt.Errorf("%w: %q", ErrInvalidPartitionName, name)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%w: %q", ErrInvalidPartitionName, name)
		}
	}
	t, err := time.Parse("20060102", digits)
	if err != nil || t.Format("20060102") != digits {
		return time.Time{}, fmt.Errorf("%w: %q", ErrInvalidPartitionName, name)
	}
	return t, nil
}

// ensureDays creates the partitions of days that this store has not seen yet.
func (s *Store) ensureDays(ctx context.Context, days map[int64]struct{}) error {
	var missing []int64
	s.mu.Lock()
	for d := range days {
		if _, ok := s.days[d]; !ok {
			missing = append(missing, d)
		}
	}
	s.mu.Unlock()
	slices.Sort(missing)
	for _, d := range missing {
		if _, err := s.ensurePartition(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// ensurePartition creates day d's partition unless it exists and remembers that it does.
func (s *Store) ensurePartition(ctx context.Context, d int64) (created bool, err error) {
	if err := s.pool.QueryRow(ctx, "SELECT conversations_ensure_partition($1::date, $2)", dayTime(d), s.liveSearch).Scan(&created); err != nil {
		return false, fmt.Errorf("ensure partition %s: %w", PartitionName(dayTime(d)), err)
	}
	s.mu.Lock()
	s.days[d] = struct{}{}
	s.mu.Unlock()
	return created, nil
}

func (s *Store) forgetDays(days map[int64]struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range days {
		delete(s.days, d)
	}
}

// maintenanceLock is the advisory lock a Maintain run holds for its whole length, so that
// only one replica maintains partitions at a time; partitionLock serialises every creation
// and drop of a partition (conversations_ensure_partition takes it too).
const (
	maintenanceLock = "parley.audit.maintenance"
	partitionLock   = "parley.audit.partitions"
)

// MaintainOptions say what Maintain keeps.
type MaintainOptions struct {
	// Now is the time the run reckons from.
	Now time.Time
	// Ahead is how many days after Now's have their partition created in advance.
	Ahead int
	// Retention drops the partitions whose day ended at least Retention before Now;
	// zero keeps every partition.
	Retention time.Duration
	// UsageRetention deletes the usage roll-up of the days that ended at least
	// UsageRetention before Now; zero keeps it all.
	UsageRetention time.Duration
	// SearchIndexDelay is how long after a day ends its partition's search index is
	// built (unless the store builds search indexes live, with each partition).
	SearchIndexDelay time.Duration
	// LockTimeout bounds the wait for each partition's lock before a drop, so that long
	// queries delay the drop rather than queue every later query behind it.
	LockTimeout time.Duration
}

// MaintainReport says what a Maintain run did.
type MaintainReport struct {
	// Skipped is set when another replica was maintaining; nothing was done.
	Skipped bool
	// Created, Indexed and Dropped name the partitions created, given their search
	// index and dropped.
	Created, Indexed, Dropped []string
	// UsageDeleted counts the roll-up rows deleted.
	UsageDeleted int64
}

// Maintain keeps the partitions: it creates those of the days from today to Ahead days
// on, builds the search index of every day over for at least SearchIndexDelay, drops the
// partitions past Retention and deletes the roll-up past UsageRetention. One replica
// maintains at a time; a run that finds another under way returns at once with Skipped.
// On error, the report holds what was done before it.
func (s *Store) Maintain(ctx context.Context, o MaintainOptions) (MaintainReport, error) {
	var r MaintainReport
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return r, fmt.Errorf("maintain: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", maintenanceLock).Scan(&locked); err != nil {
		return r, fmt.Errorf("maintain: lock: %w", err)
	}
	if !locked {
		r.Skipped = true
		return r, nil
	}
	defer func() {
		// A connection that cannot unlock is closed, which unlocks.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", maintenanceLock); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	today := dayOf(o.Now)
	for d := today; d <= today+int64(o.Ahead); d++ {
		created, err := s.ensurePartition(ctx, d)
		if err != nil {
			return r, fmt.Errorf("maintain: %w", err)
		}
		if created {
			r.Created = append(r.Created, PartitionName(dayTime(d)))
		}
	}

	days, err := s.Partitions(ctx)
	if err != nil {
		return r, fmt.Errorf("maintain: %w", err)
	}
	var kept []time.Time
	for _, d := range days {
		if o.Retention > 0 && !d.Add(day).After(o.Now.Add(-o.Retention)) {
			if err := s.dropPartition(ctx, conn.Conn(), d, o.LockTimeout); err != nil {
				return r, fmt.Errorf("maintain: %w", err)
			}
			r.Dropped = append(r.Dropped, PartitionName(d))
			continue
		}
		kept = append(kept, d)
	}
	for _, d := range kept {
		if !s.liveSearch && d.Add(day+o.SearchIndexDelay).After(o.Now) {
			continue
		}
		built, err := ensureSearchIndex(ctx, conn.Conn(), d)
		if err != nil {
			return r, fmt.Errorf("maintain: %w", err)
		}
		if built {
			r.Indexed = append(r.Indexed, PartitionName(d))
		}
	}

	if o.UsageRetention > 0 {
		tag, err := conn.Exec(ctx, "DELETE FROM usage_daily WHERE day < $1::date", dayTime(dayOf(o.Now.Add(-o.UsageRetention))))
		if err != nil {
			return r, fmt.Errorf("maintain: delete usage: %w", err)
		}
		r.UsageDeleted = tag.RowsAffected()
	}
	return r, nil
}

// dropPartition drops day d's partition.
func (s *Store) dropPartition(ctx context.Context, conn *pgx.Conn, d time.Time, lockTimeout time.Duration) error {
	name := PartitionName(d)
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", max(lockTimeout.Milliseconds(), 1))); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", partitionLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize())
		return err
	})
	if err != nil {
		return fmt.Errorf("drop partition %s: %w", name, err)
	}
	s.forgetDays(map[int64]struct{}{dayOf(d): {}})
	return nil
}

// SearchIndexName returns the name of the search index of day's partition.
func SearchIndexName(day time.Time) string {
	return PartitionName(day) + "_search_idx"
}

// ensureSearchIndex builds the search index of day d's partition unless a valid one
// exists, and reports whether it built one. CONCURRENTLY, so that late events still go
// into the partition meanwhile; an invalid index, left by a build that was interrupted,
// is dropped and built again.
func ensureSearchIndex(ctx context.Context, conn *pgx.Conn, d time.Time) (bool, error) {
	name := SearchIndexName(d)
	var valid bool
	err := conn.QueryRow(ctx, `SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
		WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace`, name).Scan(&valid)
	switch {
	case err == nil && valid:
		return false, nil
	case err == nil:
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			return false, fmt.Errorf("drop invalid index %s: %w", name, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return false, fmt.Errorf("look up index %s: %w", name, err)
	}
	part := pgx.Identifier{PartitionName(d)}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()+
		" ON "+part+" USING gin (search_hashes)"); err != nil {
		return false, fmt.Errorf("build index %s: %w", name, err)
	}
	// Fresh statistics of the finished day, so that the planner knows which words are
	// rare enough for the new index.
	if _, err := conn.Exec(ctx, "ANALYZE "+part); err != nil {
		return true, fmt.Errorf("analyze %s: %w", PartitionName(d), err)
	}
	return true, nil
}

// Partitions returns the UTC days that have a partition, oldest first.
func (s *Store) Partitions(ctx context.Context) ([]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'conversations'::regclass`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var days []time.Time
	for _, n := range names {
		// A partition attached by hand under another name is not for this store to manage.
		if d, err := ParsePartitionName(n); err == nil {
			days = append(days, d)
		}
	}
	slices.SortFunc(days, func(a, b time.Time) int { return a.Compare(b) })
	return days, nil
}
