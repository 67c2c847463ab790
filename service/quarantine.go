package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/index"
)

type quarantineStore interface {
	AddQuarantine(ctx context.Context, q index.Quarantine, evs ...index.Event) (int64, error)
	LiftQuarantine(ctx context.Context, id, by, reason string, at time.Time, evs ...index.Event) (index.Quarantine, int64, error)
	Quarantines(ctx context.Context, f index.QuarantineFilter) ([]index.Quarantine, error)
}

type quarantineKeys interface {
	Get(name string) (*keys.Key, keys.Status, error)
	ByID(id string) (*keys.Key, bool)
}

// Bounds of quarantines.
const (
	// maxActiveQuarantines caps the quarantines in force at once: every
	// replica holds them all in memory.
	maxActiveQuarantines = 10_000
	maxQuarantineReason  = 1000
	maxQuarantinePage    = 1000
)

// errQuarantineUnknown is why everything is denied while the quarantine
// list could not be read: fail closed.
var errQuarantineUnknown = errors.New("the quarantine list could not be read; denied until it is")

// Quarantines blocks digests and keys everywhere, at once, until lifted.
// A quarantined digest is denied by the gate whatever the policy, mode or
// breakglass; a quarantined key's signatures and attestations count for
// nothing (as if revoked, but reversible). Adding and lifting are recorded
// events, written in the same transaction as the change, and bump the
// quarantine revision: the replica that took the change applies it before
// answering, the others within a poll of the revision (Sync).
//
// It fails closed: while the list in force could not be read, every check
// answers an error and the gate denies.
type Quarantines struct {
	store quarantineStore
	rec   preparer
	keys  quarantineKeys
	log   *slog.Logger
	now   func() time.Time

	// maxActive caps the quarantines in force (maxActiveQuarantines).
	maxActive int

	// wmu orders changes to the list in force: a reload that read the
	// store before a change here committed must not apply after it.
	wmu     sync.Mutex
	mu      sync.RWMutex
	gen     int64
	digests map[string]index.Quarantine
	byKey   map[string]index.Quarantine
	err     error
}

// NewQuarantines loads the quarantines in force. rec prepares and
// sequences their events; ks names keys.
func NewQuarantines(ctx context.Context, store quarantineStore, rec preparer, ks quarantineKeys, log *slog.Logger) (*Quarantines, error) {
	q := &Quarantines{store: store, rec: rec, keys: ks, log: log, now: time.Now, maxActive: maxActiveQuarantines}
	if err := q.Reload(ctx); err != nil {
		return nil, fmt.Errorf("load quarantines: %w", err)
	}
	return q, nil
}

// Reload reads the quarantines in force, as any replica left them. If they
// cannot be read, every check fails (deny) until a reload succeeds.
func (q *Quarantines) Reload(ctx context.Context) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	active, err := q.store.Quarantines(ctx, index.QuarantineFilter{Active: true, Limit: maxActiveQuarantines + 1})
	if err == nil && len(active) > maxActiveQuarantines {
		err = fmt.Errorf("more than %d quarantines in force", maxActiveQuarantines)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.gen++
	if err != nil {
		q.err = err
		return err
	}
	q.err = nil
	q.digests, q.byKey = map[string]index.Quarantine{}, map[string]index.Quarantine{}
	for _, x := range active {
		q.put(x)
	}
	return nil
}

func (q *Quarantines) put(x index.Quarantine) {
	if x.Kind == index.QuarantineKey {
		q.byKey[x.Subject] = x
	} else {
		q.digests[x.Subject] = x
	}
}

// Revision changes whenever the quarantines in force here change (or were
// read again): cached verdicts are keyed by it.
func (q *Quarantines) Revision() int64 {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.gen
}

// Digest returns the quarantine in force on digest, if any; an error if
// the list in force is not known.
func (q *Quarantines) Digest(digest string) (*index.Quarantine, error) {
	return q.lookup(func() (index.Quarantine, bool) { x, ok := q.digests[digest]; return x, ok })
}

// Key returns the quarantine in force on the key with id keyID, if any;
// an error if the list in force is not known.
func (q *Quarantines) Key(keyID string) (*index.Quarantine, error) {
	return q.lookup(func() (index.Quarantine, bool) { x, ok := q.byKey[keyID]; return x, ok })
}

func (q *Quarantines) lookup(find func() (index.Quarantine, bool)) (*index.Quarantine, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.err != nil {
		return nil, errQuarantineUnknown
	}
	x, ok := find()
	if !ok {
		return nil, nil
	}
	return &x, nil
}

// quarantineReason says why a subject under x is denied: its id, reason,
// actor and time.
func quarantineReason(x *index.Quarantine) string {
	what := "digest " + x.Subject
	if x.Kind == index.QuarantineKey {
		what = "key " + x.Subject
		if x.KeyName != "" {
			what = "key " + x.KeyName + " (" + x.Subject + ")"
		}
	}
	return fmt.Sprintf("%s is quarantined (quarantine %s: %q, by %s at %s)", what, x.ID, x.Reason, x.Actor, x.CreatedAt.UTC().Format(time.RFC3339))
}

// QuarantineRequest quarantines a digest or a key (by name or id), with a
// reason.
type QuarantineRequest struct {
	Digest, Key, Reason string
}

// QuarantineInfo is a quarantine as the API shows it.
type QuarantineInfo struct {
	index.Quarantine
	// LogIndex is the event's index in the audit log, when there is one.
	LogIndex *uint64
}

func checkReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > maxQuarantineReason {
		return "", fmt.Errorf("%w: give a reason of at most %d characters", ErrInvalid, maxQuarantineReason)
	}
	return reason, nil
}

// Add quarantines a digest or a key (role admin). It is in force on this
// replica when it returns, and recorded (index and audit log) before it is
// acknowledged. If the log cannot be appended to, the answer is an error
// (503) but the quarantine is stored and in force, as with other changes.
func (q *Quarantines) Add(ctx context.Context, p Principal, req QuarantineRequest) (QuarantineInfo, error) {
	if err := Authorize(p, ActionQuarantine); err != nil {
		return QuarantineInfo{}, err
	}
	reason, err := checkReason(req.Reason)
	if err != nil {
		return QuarantineInfo{}, err
	}
	x := index.Quarantine{ID: newID(), Reason: reason, Actor: p.Name, CreatedAt: q.now().UTC().Truncate(time.Microsecond)}
	ev := Event{Kind: EventQuarantineAdded, Actor: p}
	switch {
	case (req.Digest == "") == (req.Key == ""):
		return QuarantineInfo{}, fmt.Errorf("%w: give a digest or a key, not both", ErrInvalid)
	case req.Digest != "":
		h, err := v1.NewHash(req.Digest)
		if err != nil || h.Algorithm != "sha256" {
			return QuarantineInfo{}, fmt.Errorf("%w: digest %q is not sha256:<64 hex>", ErrInvalid, req.Digest)
		}
		x.Kind, x.Subject, ev.Digest = index.QuarantineDigest, h.String(), h.String()
	default:
		k, err := q.key(req.Key)
		if err != nil {
			return QuarantineInfo{}, err
		}
		x.Kind, x.Subject, x.KeyName = index.QuarantineKey, k.ID(), k.Name()
		ev.KeyID, ev.KeyName = k.ID(), k.Name()
	}
	ev.Detail = map[string]any{"quarantine_id": x.ID, "subject_kind": x.Kind, "subject": x.Subject, "reason": reason}
	if n := q.active(); n >= q.maxActive {
		return QuarantineInfo{}, fmt.Errorf("%w: %d quarantines are in force, the most attestd holds: lift some first", ErrInvalid, n)
	}
	ie, err := q.rec.Prepare(ctx, ev)
	if err != nil {
		return QuarantineInfo{}, err
	}
	err = q.change(func() error {
		_, err := q.store.AddQuarantine(ctx, x, ie)
		return err
	}, func() { q.put(x) })
	if errors.Is(err, index.ErrQuarantined) {
		return QuarantineInfo{}, fmt.Errorf("%w: %s %s is quarantined already", ErrInvalid, x.Kind, x.Subject)
	} else if err != nil {
		return QuarantineInfo{}, fmt.Errorf("%w: store the quarantine: %w", ErrUnavailable, err)
	}
	q.log.WarnContext(ctx, "quarantine added", "quarantine_id", x.ID, "kind", x.Kind, "subject", x.Subject, "by", p.Name)
	return q.sequence(ctx, x, ie)
}

// change stores a change, then applies it to the list in force, ordered
// with reloads (wmu); readers (the gate) wait only for the apply (mu),
// never for the store. The generation moves whatever store returns.
func (q *Quarantines) change(store func() error, apply func()) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	err := store()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.gen++
	if err == nil && q.err == nil {
		apply()
	}
	return err
}

func (q *Quarantines) sequence(ctx context.Context, x index.Quarantine, ie index.Event) (QuarantineInfo, error) {
	idx, err := q.rec.Sequence(ctx, ie)
	if err != nil {
		return QuarantineInfo{}, err
	}
	out := QuarantineInfo{Quarantine: x}
	if len(idx) > 0 {
		out.LogIndex = &idx[0]
	}
	return out, nil
}

func (q *Quarantines) active() int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return len(q.digests) + len(q.byKey)
}

// key finds a key by name or id.
func (q *Quarantines) key(ref string) (*keys.Key, error) {
	if strings.HasPrefix(ref, "sha256:") {
		if k, ok := q.keys.ByID(ref); ok {
			return k, nil
		}
	} else if k, _, err := q.keys.Get(ref); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: no key %q in the key set", ErrInvalid, ref)
}

// Lift ends quarantine id (role admin), with a reason. Like Add, it is in
// force here when it returns and recorded before it is acknowledged.
func (q *Quarantines) Lift(ctx context.Context, p Principal, id, reason string) (QuarantineInfo, error) {
	if err := Authorize(p, ActionQuarantine); err != nil {
		return QuarantineInfo{}, err
	}
	reason, err := checkReason(reason)
	if err != nil {
		return QuarantineInfo{}, err
	}
	if id == "" || len(id) > 64 {
		return QuarantineInfo{}, fmt.Errorf("%w: no quarantine %q", ErrNotFound, id)
	}
	ie, err := q.rec.Prepare(ctx, Event{Kind: EventQuarantineLifted, Actor: p, Detail: map[string]any{"quarantine_id": id, "reason": reason}})
	if err != nil {
		return QuarantineInfo{}, err
	}
	var x index.Quarantine
	err = q.change(func() error {
		var err error
		x, _, err = q.store.LiftQuarantine(ctx, id, p.Name, reason, ie.At, ie)
		return err
	}, func() {
		if x.Kind == index.QuarantineKey {
			delete(q.byKey, x.Subject)
		} else {
			delete(q.digests, x.Subject)
		}
	})
	switch {
	case errors.Is(err, index.ErrNotFound):
		return QuarantineInfo{}, fmt.Errorf("%w: no quarantine %q", ErrNotFound, id)
	case errors.Is(err, index.ErrLifted):
		return QuarantineInfo{}, fmt.Errorf("%w: quarantine %s was lifted already", ErrInvalid, id)
	case err != nil:
		return QuarantineInfo{}, fmt.Errorf("%w: store the lift: %w", ErrUnavailable, err)
	}
	q.log.WarnContext(ctx, "quarantine lifted", "quarantine_id", x.ID, "kind", x.Kind, "subject", x.Subject, "by", p.Name)
	return q.sequence(ctx, x, ie)
}

// QuarantineFilter selects quarantines to list.
type QuarantineFilter struct {
	// Lifted lists lifted quarantines too.
	Lifted bool
	// Kind is "digest", "key" or "" for both.
	Kind string
	// Cursor is the previous page's NextCursor.
	Cursor string
	// Limit caps the page (at most 1000; 0 means 100).
	Limit int
}

// QuarantinePage is one page of quarantines, oldest first.
type QuarantinePage struct {
	Quarantines []index.Quarantine
	NextCursor  string
}

// List lists quarantines (roles admin, auditor): those in force, or with
// Lifted all of them.
func (q *Quarantines) List(ctx context.Context, p Principal, f QuarantineFilter) (QuarantinePage, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return QuarantinePage{}, err
	}
	if f.Limit < 0 || f.Limit > maxQuarantinePage {
		return QuarantinePage{}, fmt.Errorf("%w: limit is at most %d", ErrInvalid, maxQuarantinePage)
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Kind != "" && f.Kind != index.QuarantineDigest && f.Kind != index.QuarantineKey {
		return QuarantinePage{}, fmt.Errorf("%w: kind is digest or key", ErrInvalid)
	}
	filter := index.QuarantineFilter{Active: !f.Lifted, Kind: f.Kind, Limit: f.Limit}
	if f.Cursor != "" {
		at, id, err := decodeDecisionCursor(f.Cursor)
		if err != nil {
			return QuarantinePage{}, err
		}
		filter.AfterAt, filter.AfterID = at, id
	}
	list, err := q.store.Quarantines(ctx, filter)
	if err != nil {
		return QuarantinePage{}, fmt.Errorf("%w: read quarantines: %w", ErrUnavailable, err)
	}
	out := QuarantinePage{Quarantines: append([]index.Quarantine{}, list...)}
	if len(list) == f.Limit {
		last := list[len(list)-1]
		out.NextCursor = encodeDecisionCursor(last.CreatedAt, last.ID)
	}
	return out, nil
}

// SignersNotQuarantined hands out signing keys from Set, but refuses a key
// a quarantine holds (ErrNotSigning: 403), or any key while the quarantine
// list is not known: what it signed would not count.
type SignersNotQuarantined struct {
	Set interface {
		Signer(name string) (*keys.Key, error)
	}
	Quarantines *Quarantines
}

// Signer returns the signing key called name ("" for the default).
func (s SignersNotQuarantined) Signer(name string) (*keys.Key, error) {
	k, err := s.Set.Signer(name)
	if err != nil {
		return nil, err
	}
	x, err := s.Quarantines.Key(k.ID())
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", keys.ErrNotSigning, err)
	case x != nil:
		return nil, fmt.Errorf("%w: %s", keys.ErrNotSigning, quarantineReason(x))
	}
	return k, nil
}
