// Package jobs opens the job queue's database: riverqueue/river on SQLite
// (modernc, no cgo) for the zero-config default, or on PostgreSQL, shared by
// several replicas. Jobs are rows in it, so
// they survive restarts, and a job whose worker died is rescued and retried.
package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the SQLite driver
)

// OpenSQLite opens (and migrates) the queue database at path.
func OpenSQLite(ctx context.Context, path string) (riverdriver.Driver[*sql.Tx], *sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, nil, fmt.Errorf("open job queue: %w", err)
	}
	// One writer at a time keeps SQLite from answering "database is locked".
	db.SetMaxOpenConns(1)
	driver := singleProcess{riversqlite.New(db)}
	m, err := rivermigrate.New[*sql.Tx](driver, nil)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("migrate job queue: %w", err)
	}
	return driver, db, nil
}

// singleProcess is river's SQLite driver for the one process a data dir
// has: without a listener, river wakes its producer itself when this
// process inserts a job, where the driver's listener would poll a
// notification table every 50 ms (most of an idle server's CPU).
type singleProcess struct{ *riversqlite.Driver }

// SupportsListener is false: no listener, no notification table polling.
func (singleProcess) SupportsListener() bool { return false }

// SupportsListenNotify is false: inserts write no notification rows.
func (singleProcess) SupportsListenNotify() bool { return false }

// OpenPostgres opens (and migrates) the queue in the PostgreSQL database at
// url, shared by every replica and worker.
func OpenPostgres(ctx context.Context, url string) (riverdriver.Driver[pgx.Tx], *pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("open job queue: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("job queue database: %w", err)
	}
	driver := riverpgxv5.New(pool)
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("migrate job queue: %w", err)
	}
	return driver, pool, nil
}

// RescueOrphans makes the jobs left running by a process that died
// available again at once, as river's rescuer would after its horizon.
// It MUST be called only where this process is the queue's one worker (the
// SQLite queue in the data dir): there, a job running before it started can
// have no live worker. On a shared queue, river's rescuer does it after
// RescueStuckJobsAfter. It returns how many jobs it rescued.
func RescueOrphans[TTx any](ctx context.Context, driver riverdriver.Driver[TTx]) (int, error) {
	exec := driver.GetExecutor()
	horizon := time.Now()
	stuck, err := exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{Max: 10_000, StuckHorizon: horizon})
	if err != nil {
		return 0, fmt.Errorf("find orphaned jobs: %w", err)
	}
	if len(stuck) == 0 {
		return 0, nil
	}
	now := time.Now().UTC()
	p := &riverdriver.JobRescueManyParams{StuckHorizon: horizon}
	for _, j := range stuck {
		e, err := json.Marshal(rivertype.AttemptError{At: now, Attempt: max(j.Attempt, 0), Error: "the process working it stopped; retried at start"})
		if err != nil {
			return 0, err
		}
		state, finalized := rivertype.JobStateRetryable, (*time.Time)(nil)
		if j.Attempt >= j.MaxAttempts {
			state, finalized = rivertype.JobStateDiscarded, &now
		}
		p.ID, p.Error = append(p.ID, j.ID), append(p.Error, e)
		p.FinalizedAt, p.ScheduledAt, p.State = append(p.FinalizedAt, finalized), append(p.ScheduledAt, now), append(p.State, string(state))
	}
	if _, err := exec.JobRescueMany(ctx, p); err != nil {
		return 0, fmt.Errorf("rescue orphaned jobs: %w", err)
	}
	return len(stuck), nil
}
