package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLocalLocksSerializeAndGiveUp(t *testing.T) {
	l := NewLocalLocks()
	ctx := context.Background()
	unlock, err := l.Lock(ctx, "r@d")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is independent.
	other, err := l.Lock(ctx, "r@e")
	if err != nil {
		t.Fatal(err)
	}
	other()
	// A waiter gives up when its context ends, with a retryable error.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(cctx, "r@d"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("waiting past the deadline: %v, want ErrUnavailable", err)
	}
	// Holders run one at a time.
	var mu sync.Mutex
	in, maxIn := 0, 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := l.Lock(ctx, "r@d")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			in++
			maxIn = max(maxIn, in)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			in--
			mu.Unlock()
			u()
		}()
	}
	unlock()
	unlock() // a second unlock is harmless
	wg.Wait()
	if maxIn != 1 {
		t.Errorf("%d holders at once", maxIn)
	}
	if l.Len() != 0 {
		t.Errorf("%d lock entries left after every holder and waiter left", l.Len())
	}
}
