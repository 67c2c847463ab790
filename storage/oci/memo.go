package oci

import (
	"context"
	"sync"
)

// A read memo lets one decision read each registry object once, however
// many checks need it. Manifests and blobs are keyed by digest, so a
// memoized read is the same bytes; tag heads and referrer lists are kept
// only for the memo's context, one decision, never across decisions.
type memoKey struct{}

type memo struct {
	mu sync.Mutex
	m  map[string]*memoEntry
}

type memoEntry struct {
	once sync.Once
	val  any
	err  error
}

// WithReadMemo returns a context whose registry reads are memoized.
func WithReadMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, &memo{m: map[string]*memoEntry{}})
}

// memoize runs f once per key within a memoized context, and every time otherwise.
func memoize[T any](ctx context.Context, key string, f func() (T, error)) (T, error) {
	m, ok := ctx.Value(memoKey{}).(*memo)
	if !ok {
		return f()
	}
	m.mu.Lock()
	e, ok := m.m[key]
	if !ok {
		e = &memoEntry{}
		m.m[key] = e
	}
	m.mu.Unlock()
	e.once.Do(func() { e.val, e.err = f() })
	if e.err != nil {
		var zero T
		return zero, e.err
	}
	return e.val.(T), nil
}
