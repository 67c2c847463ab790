package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/tlog"
)

// LogEntry is an event's entry in the audit log: its RFC 8785 canonical
// JSON, built from the event as the index holds it, so that an auditor
// rebuilds the same bytes from GET /v1/events. It holds what the event
// holds and no secret.
func LogEntry(e index.Event) ([]byte, error) {
	en := tlog.Entry{
		ID: e.ID, Kind: e.Kind, At: e.At, Repository: e.Repository, Digest: e.Digest, Tags: e.Tags,
		Actor:         tlog.Actor{Kind: e.ActorKind, ID: e.ActorID, Name: e.ActorName},
		PredicateType: e.PredicateType, RequestID: e.RequestID, Locations: e.Locations, Detail: e.Detail,
	}
	if e.KeyID != "" {
		en.Key = &tlog.Key{ID: e.KeyID, Name: e.KeyName, Version: e.KeyVersion}
	}
	return en.Canonical()
}

// logReader reads the audit log (storage/auditlog).
type logReader interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	Tile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	EntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// logProver computes proofs from the log's tiles.
type logProver interface {
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
}

// AuditLog serves the audit log to auditors: the tlog-tiles resources
// (checkpoint, tiles, entry bundles), proofs, and the key checkpoints are
// signed with. Entries name repositories and token names, so reading needs
// the auditor role unless the log is public.
type AuditLog struct {
	reader logReader
	prover logProver
	key    string
	public bool
}

// NewAuditLog returns the audit log's read side. verifierKey is the
// signed-note verifier key of the checkpoints; public opens the log to
// anonymous readers.
func NewAuditLog(r logReader, p logProver, verifierKey string, public bool) *AuditLog {
	return &AuditLog{reader: r, prover: p, key: verifierKey, public: public}
}

// Public reports whether anonymous callers may read the log.
func (l *AuditLog) Public() bool { return l.public }

// VerifierKey is the public key checkpoints verify with, in the
// signed-note format; auditors pin it.
func (l *AuditLog) VerifierKey() string { return l.key }

// ResourceKind says what a log resource is, for caching: a checkpoint
// changes, tiles and bundles never do once full.
type ResourceKind int

// Resource kinds.
const (
	ResourceCheckpoint ResourceKind = iota
	ResourceTile
	ResourcePartialTile
)

func (l *AuditLog) authorize(p Principal) error {
	if l.public {
		return nil
	}
	return Authorize(p, ActionAudit)
}

// Resource returns the tlog-tiles resource at path: "checkpoint",
// "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]".
func (l *AuditLog) Resource(ctx context.Context, p Principal, path string) ([]byte, ResourceKind, error) {
	if err := l.authorize(p); err != nil {
		return nil, 0, err
	}
	var b []byte
	var err error
	kind := ResourceTile
	switch {
	case path == layout.CheckpointPath:
		kind = ResourceCheckpoint
		b, err = l.reader.Checkpoint(ctx)
	case strings.HasPrefix(path, "tile/entries/"):
		idx, w, perr := layout.ParseTileIndexPartial(strings.TrimPrefix(path, "tile/entries/"))
		if perr != nil {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrInvalid, path, perr)
		}
		if w > 0 {
			kind = ResourcePartialTile
		}
		b, err = l.reader.EntryBundle(ctx, idx, w)
	case strings.HasPrefix(path, "tile/"):
		level, rest, _ := strings.Cut(strings.TrimPrefix(path, "tile/"), "/")
		lv, idx, w, perr := layout.ParseTileLevelIndexPartial(level, rest)
		if perr != nil {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrInvalid, path, perr)
		}
		if w > 0 {
			kind = ResourcePartialTile
		}
		b, err = l.reader.Tile(ctx, lv, idx, w)
	default:
		return nil, 0, fmt.Errorf("%w: %s is not a tlog-tiles resource", ErrNotFound, path)
	}
	if err != nil {
		return nil, 0, logErr(err)
	}
	return b, kind, nil
}

// InclusionProof proves that the entry at index is in the tree of size.
func (l *AuditLog) InclusionProof(ctx context.Context, p Principal, index, size uint64) ([][]byte, error) {
	if err := l.authorize(p); err != nil {
		return nil, err
	}
	pr, err := l.prover.InclusionProof(ctx, index, size)
	return pr, logErr(err)
}

// ConsistencyProof proves that the tree of size to extends the tree of
// size from.
func (l *AuditLog) ConsistencyProof(ctx context.Context, p Principal, from, to uint64) ([][]byte, error) {
	if err := l.authorize(p); err != nil {
		return nil, err
	}
	pr, err := l.prover.ConsistencyProof(ctx, from, to)
	return pr, logErr(err)
}

func logErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auditlog.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, auditlog.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// unloggedStore finds events the audit log does not have yet.
type unloggedStore interface {
	Events(ctx context.Context, f index.EventFilter) ([]index.Event, error)
	SetLogIndexes(ctx context.Context, ids []string, indexes []int64) error
	MaxLogIndex(ctx context.Context) (int64, error)
}

// outboxLog is what the outbox needs of the log: appending, and reading
// back its tail to find entries already there.
type outboxLog interface {
	Append(ctx context.Context, entries [][]byte) ([]uint64, error)
	Size(ctx context.Context) (uint64, error)
	Entries(ctx context.Context, from, n, size uint64) ([][]byte, error)
}

// LogOutbox appends to the audit log the events the index holds without a
// log index: those whose append failed (the request was answered 503),
// those of a process that stopped between the index commit and the log,
// and, on upgrade, the events recorded before there was a log. Before
// appending, it looks for them among the log's latest entries (by event
// id): an event sequenced whose index was not noted is noted, not appended
// again. Events younger than the grace period, or that this process is
// still appending, are left to the recorder.
//
// Replicas each run one; two may rarely append the same event, which the
// log then holds twice (the index names the first). Nothing is lost.
type LogOutbox struct {
	store unloggedStore
	log   outboxLog
	rec   *Recorder
	grace time.Duration
	every time.Duration
	slog  *slog.Logger
	now   func() time.Time
}

// Outbox bounds: events per round, and how far back the log's tail is
// searched for events already in it.
const (
	outboxBatch  = 1000
	outboxWindow = 8192
)

// NewLogOutbox returns the outbox. It runs every `every`, for events older
// than grace.
func NewLogOutbox(store unloggedStore, l outboxLog, rec *Recorder, grace, every time.Duration, log *slog.Logger) *LogOutbox {
	return &LogOutbox{store: store, log: l, rec: rec, grace: grace, every: every, slog: log, now: time.Now}
}

// Run appends unlogged events until ctx ends.
func (o *LogOutbox) Run(ctx context.Context) {
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := o.Once(ctx)
			if err != nil {
				o.slog.WarnContext(ctx, "audit log outbox: events not appended yet; retrying", "err", err.Error())
				break
			}
			if n < outboxBatch {
				break
			}
		}
	}
}

// Once appends one round of unlogged events and returns how many it
// handled (found in the log or appended).
func (o *LogOutbox) Once(ctx context.Context) (int, error) {
	evs, err := o.store.Events(ctx, index.EventFilter{Unlogged: true, Until: o.now().Add(-o.grace), Limit: outboxBatch})
	if err != nil {
		return 0, err
	}
	todo := evs[:0]
	for _, e := range evs {
		if o.rec == nil || !o.rec.InFlight(e.ID) {
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	found, err := o.findInLog(ctx, todo)
	if err != nil {
		return 0, err
	}
	var ids []string
	var idx []int64
	var entries [][]byte
	var rest []index.Event
	for _, e := range todo {
		if i, ok := found[e.ID]; ok {
			ids, idx = append(ids, e.ID), append(idx, i)
			continue
		}
		b, err := LogEntry(e)
		if err != nil {
			o.slog.ErrorContext(ctx, "audit log outbox: event has no entry", "event", e.ID, "err", err.Error())
			continue
		}
		entries, rest = append(entries, b), append(rest, e)
	}
	if len(ids) > 0 {
		if err := o.store.SetLogIndexes(ctx, ids, idx); err != nil {
			return 0, err
		}
	}
	if len(entries) > 0 {
		got, err := o.log.Append(ctx, entries)
		if err != nil {
			return len(ids), err
		}
		ids, idx = ids[:0], idx[:0]
		for i, e := range rest {
			ids, idx = append(ids, e.ID), append(idx, int64(got[i])) //nolint:gosec // a log index is far below 2^63
		}
		if err := o.store.SetLogIndexes(ctx, ids, idx); err != nil {
			return 0, err
		}
		o.slog.InfoContext(ctx, "audit log outbox: events appended", "events", len(rest))
	}
	return len(todo), nil
}

// findInLog returns the log indices of those of evs already in the log's
// latest entries.
func (o *LogOutbox) findInLog(ctx context.Context, evs []index.Event) (map[string]int64, error) {
	size, err := o.log.Size(ctx)
	if err != nil || size == 0 {
		return nil, err
	}
	maxIdx, err := o.store.MaxLogIndex(ctx)
	if err != nil {
		return nil, err
	}
	from := uint64(0)
	if maxIdx+1 > outboxWindow {
		from = uint64(maxIdx + 1 - outboxWindow)
	}
	if size-from > 4*outboxWindow {
		from = size - 4*outboxWindow
	}
	want := map[string]bool{}
	for _, e := range evs {
		want[e.ID] = true
	}
	entries, err := o.log.Entries(ctx, from, size-from, size)
	if err != nil {
		return nil, err
	}
	found := map[string]int64{}
	for i, b := range entries {
		if id, err := tlog.EntryID(b); err == nil && want[id] {
			if _, dup := found[id]; !dup {
				found[id] = int64(from) + int64(i)
			}
		}
	}
	return found, nil
}
