// Package jobs opens the job queue's database: riverqueue/river on SQLite
// (modernc, no cgo) for the zero-config default, or on PostgreSQL, shared by
// several replicas. Jobs are rows in it, so
// they survive restarts, and a job whose worker died is rescued and retried.
package jobs

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
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
	driver := riversqlite.New(db)
	m, err := rivermigrate.New(driver, nil)
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
