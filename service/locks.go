package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// writeLocker serializes the writes of evidence about one subject. The
// legacy `.sig`/`.att` tags and the referrers fallback index are
// read-modify-write on the registry, which offers no conditional update:
// two writers of one digest would otherwise lose one's signature, and two
// signs by one key would store it twice. Holding the lock, a writer reads
// what is stored, then writes only what is missing.
//
// Lock MUST give up when ctx ends, with an error wrapping ErrUnavailable.
type writeLocker interface {
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// subjectKey is the lock key of a subject: its repository and digest.
func subjectKey(d name.Digest) string { return d.Context().Name() + "@" + d.DigestStr() }

// maxLockWait bounds how long a write waits for another write of the same
// subject.
const maxLockWait = 30 * time.Second

// LocalLocks is a writeLocker for one process: a mutex per key, held only
// while a key has holders or waiters.
type LocalLocks struct {
	mu sync.Mutex
	m  map[string]*localLock
}

type localLock struct {
	ch    chan struct{} // holds one token while locked
	users int
}

// NewLocalLocks returns the in-process write locks.
func NewLocalLocks() *LocalLocks { return &LocalLocks{m: map[string]*localLock{}} }

// Lock waits for the lock of key, at most until ctx ends or maxLockWait.
func (l *LocalLocks) Lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	e, ok := l.m[key]
	if !ok {
		e = &localLock{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.users++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		if e.users--; e.users == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	t := time.NewTimer(maxLockWait)
	defer t.Stop()
	select {
	case e.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("%w: waiting for another write of %s: %w", ErrUnavailable, key, ctx.Err())
	case <-t.C:
		release()
		return nil, fmt.Errorf("%w: another write of %s held it for over %s", ErrUnavailable, key, maxLockWait)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.ch
			release()
		})
	}, nil
}

// Len is the number of keys held or waited for; for tests.
func (l *LocalLocks) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

type advisoryLocker interface {
	AdvisoryLock(ctx context.Context, key string) (func(), error)
}

// SharedLocks serializes writes of a subject across replicas: the
// in-process lock first (so a process waits on its own writers without
// holding a database connection), then an advisory lock in the shared
// PostgreSQL, held only around the read-merge-write of the subject's tags.
type SharedLocks struct {
	local  *LocalLocks
	shared advisoryLocker
}

// NewSharedLocks returns locks shared through db.
func NewSharedLocks(db advisoryLocker) *SharedLocks {
	return &SharedLocks{local: NewLocalLocks(), shared: db}
}

// Lock waits for key in this process, then across replicas, at most until
// ctx ends or maxLockWait; past it the error wraps ErrUnavailable.
func (l *SharedLocks) Lock(ctx context.Context, key string) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, maxLockWait)
	defer cancel()
	unlockLocal, err := l.local.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	unlockShared, err := l.shared.AdvisoryLock(ctx, key)
	if err != nil {
		unlockLocal()
		return nil, fmt.Errorf("%w: waiting for another replica's write of %s: %w", ErrUnavailable, key, err)
	}
	return func() {
		unlockShared()
		unlockLocal()
	}, nil
}
