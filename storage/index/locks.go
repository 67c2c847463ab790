package index

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"time"
)

// ErrLockBusy means another holder kept a lock past the wait.
var ErrLockBusy = errors.New("lock held elsewhere")

// Shared reports whether the index is shared by several processes
// (PostgreSQL), so that locks must be taken in it.
func (d *DB) Shared() bool { return d.engine == Postgres }

// AdvisoryLock takes the PostgreSQL session advisory lock of key, waiting
// until ctx ends, and returns its unlock. The lock is held on one
// connection of the pool until unlock; a crashed holder's lock goes with
// its connection. On SQLite (one process) it is an error: use in-process
// locks.
func (d *DB) AdvisoryLock(ctx context.Context, key string) (func(), error) {
	if d.engine != Postgres {
		return nil, errors.New("advisory locks need PostgreSQL")
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	id := int64(h.Sum64()) //nolint:gosec // a hash, reinterpreted as PostgreSQL's bigint key
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	wait := 2 * time.Millisecond
	for {
		var ok bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, id).Scan(&ok); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("lock %s: %w", key, err)
		}
		if ok {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = conn.Close()
			return nil, fmt.Errorf("lock %s: %w: %w", key, ErrLockBusy, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var released bool
		if err := conn.QueryRowContext(uctx, `SELECT pg_advisory_unlock($1)`, id).Scan(&released); err != nil || !released {
			// The session may be gone; closing the connection releases
			// whatever it held.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}, nil
}
