package service

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

type revisionStore interface {
	Revisions(ctx context.Context) (map[string]int64, error)
}

// Sync is the one hook through which shared state that any replica changes
// (key states, policies, quarantines) reaches this one: it polls the
// index's revisions and calls the reload of each watched name whose
// revision moved. Verdicts are cached by revision, so once a reload has
// run no cached allow of the old state is served.
type Sync struct {
	store revisionStore
	every time.Duration
	log   *slog.Logger

	mu       sync.Mutex
	watchers map[string]func(context.Context) error
	seen     map[string]int64
}

// NewSync returns the revision poller; every is how often it polls.
func NewSync(store revisionStore, every time.Duration, log *slog.Logger) *Sync {
	return &Sync{store: store, every: every, log: log, watchers: map[string]func(context.Context) error{}, seen: map[string]int64{}}
}

// SetInterval changes how often it polls; call it before Run.
func (s *Sync) SetInterval(every time.Duration) { s.every = every }

// Watch calls reload whenever the revision called name moves.
func (s *Sync) Watch(name string, reload func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers[name] = reload
}

// Check polls once and runs the reloads that are due. A failed reload is
// tried again at the next poll.
func (s *Sync) Check(ctx context.Context) error {
	revs, err := s.store.Revisions(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, reload := range s.watchers {
		rev, ok := revs[name]
		if !ok || rev == s.seen[name] {
			continue
		}
		if err := reload(ctx); err != nil {
			s.log.ErrorContext(ctx, "shared state not reloaded; retrying", "state", name, "revision", rev, "err", err.Error())
			continue
		}
		s.seen[name] = rev
	}
	return nil
}

// Run polls until ctx ends.
func (s *Sync) Run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, s.every*4+time.Second)
			if err := s.Check(cctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "revisions not read", "err", err.Error())
			}
			cancel()
		}
	}
}
