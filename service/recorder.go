package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

// Event kinds: every state change attestd makes is one of these.
const (
	EventArtifactUploaded   = "artifact.uploaded"
	EventArtifactRegistered = "artifact.registered"
	EventSignatureCreated   = "signature.created"
	EventAttestationCreated = "attestation.created"
	EventProvenanceCreated  = "provenance.created"
	EventSBOMCreated        = "sbom.created"
	EventDecisionMade       = "decision.made"
	EventKeyActivated       = "key.activated"
	EventKeyRevoked         = "key.revoked"
	EventTokenCreated       = "token.created"
	EventTokenRevoked       = "token.revoked"
	EventPolicyPut          = "policy.put"
	EventPolicyDeleted      = "policy.deleted"
	EventEvidenceReindexed  = "evidence.reindexed"
)

// EventKinds lists every event kind.
var EventKinds = []string{
	EventArtifactUploaded, EventArtifactRegistered, EventSignatureCreated, EventAttestationCreated, EventProvenanceCreated,
	EventSBOMCreated, EventDecisionMade, EventKeyActivated, EventKeyRevoked, EventTokenCreated, EventTokenRevoked,
	EventPolicyPut, EventPolicyDeleted, EventEvidenceReindexed,
}

// Event is a state change to record. The recorder adds its id, time,
// request id and actor kind.
type Event struct {
	Kind               string
	Actor              Principal
	Repository, Digest string
	Tags               []string
	// KeyID, KeyName and KeyVersion name the key that signed, if one did.
	KeyID, KeyName, KeyVersion string
	PredicateType              string
	// Locations are the registry locations written or found.
	Locations []oci.Location
	// Evidence are the copies in the registry this event is about.
	Evidence []index.Evidence
	// Decision is the gate decision, for decision.made.
	Decision *index.Decision
	// Detail is anything else, marshalled to a JSON object. It MUST NOT
	// hold a secret.
	Detail any
	// OnlyIfNew skips the event when all its evidence is recorded already.
	OnlyIfNew bool
	// Provenance and SBOMs are what the event's attestations tell the
	// artifact and package index; they are written in the event's
	// transaction, idempotently (see index.Event).
	Provenance []index.Provenance
	SBOMs      []index.SBOMDoc
}

// recorder records events; *Recorder is one.
type recorder interface {
	Record(ctx context.Context, evs ...Event) (index.Appended, error)
}

// preparer turns an event into its index form, for stores that write it
// in the same transaction as the state change it records.
type preparer interface {
	Prepare(ctx context.Context, e Event) (index.Event, error)
}

// evidenceRows turns the registry locations written or found for d into
// evidence rows.
func evidenceRows(d name.Digest, kind, keyID, predicateType, origin string, signedAt *time.Time, locs []oci.Location) []index.Evidence {
	out := make([]index.Evidence, 0, len(locs))
	for _, l := range locs {
		if l.Content == "" {
			continue
		}
		var at *time.Time
		if signedAt != nil && !signedAt.IsZero() && !l.Existed {
			t := signedAt.UTC()
			at = &t
		}
		out = append(out, index.Evidence{Repository: d.Context().Name(), Digest: d.DigestStr(), Format: l.Kind, Content: l.Content,
			Kind: kind, Ref: l.Ref, KeyID: keyID, PredicateType: predicateType, Origin: origin, SignedAt: at})
	}
	return out
}

// refTags returns the tag a reference names, if it names one.
func refTags(ref name.Reference) []string {
	if t, ok := ref.(name.Tag); ok {
		return []string{t.TagStr()}
	}
	return nil
}

type eventStore interface {
	AppendEvents(ctx context.Context, evs []index.Event) (index.Appended, error)
	AddReuse(ctx context.Context, rs []index.Reuse) error
}

// Recorder is the one way state changes are recorded: each write and
// decision becomes an event in the index, durable before the caller
// answers. Concurrent records share one transaction (group commit).
// Allows served again from the verdict cache are counted against the
// decision they reused, and the counts flushed at least every second.
//
// Record MUST NOT return nil unless the event is durable; a failure is an
// error wrapping ErrUnavailable, never swallowed.
type Recorder struct {
	store eventStore
	log   *slog.Logger
	now   func() time.Time

	queue chan *pending
	done  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	reuses map[reuseKey]*index.Reuse
}

type pending struct {
	evs []index.Event
	err chan error
}

type reuseKey struct{ decision, ns, kind, name string }

// Batching bounds: events per transaction, and how long a record waits.
const (
	maxBatch      = 256
	recordTimeout = 10 * time.Second
	reuseFlush    = time.Second
)

// NewRecorder starts a recorder over store. Close it to flush.
func NewRecorder(store eventStore, log *slog.Logger) *Recorder {
	r := &Recorder{store: store, log: log, now: time.Now, queue: make(chan *pending, 1024), done: make(chan struct{}), reuses: map[reuseKey]*index.Reuse{}}
	r.wg.Add(2)
	go r.commitLoop()
	go r.flushLoop()
	return r
}

// Close stops the recorder after writing what is queued and the reuse counts.
func (r *Recorder) Close(ctx context.Context) error {
	select {
	case <-r.done:
		return nil
	default:
	}
	close(r.done)
	r.wg.Wait()
	return r.flushReuse(ctx)
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the API request id, which events record.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// actorKind says what kind of caller p is.
func actorKind(p Principal) string {
	switch {
	case p.TokenID == "internal" || p.TokenID == "" && p.Name == "attestd":
		return "attestd"
	case p.TokenID == "":
		return "system"
	}
	return "token"
}

// Prepare turns e into the index event to write: it gets its id, time,
// request id and actor. Stores that change state write it in the same
// transaction as the change.
func (r *Recorder) Prepare(ctx context.Context, e Event) (index.Event, error) {
	out := index.Event{
		ID: newEventID(), Kind: e.Kind, At: r.now().UTC(), Repository: e.Repository, Digest: e.Digest, Tags: e.Tags,
		ActorID: e.Actor.TokenID, ActorName: e.Actor.Name, ActorKind: actorKind(e.Actor),
		KeyID: e.KeyID, KeyName: e.KeyName, KeyVersion: e.KeyVersion, PredicateType: e.PredicateType,
		RequestID: RequestID(ctx), Evidence: e.Evidence, Decision: e.Decision, OnlyIfNew: e.OnlyIfNew,
	}
	out.Provenance, out.SBOMs = e.Provenance, e.SBOMs
	if len(e.Locations) > 0 {
		b, err := json.Marshal(e.Locations)
		if err != nil {
			return index.Event{}, err
		}
		out.Locations = b
	}
	if e.Detail != nil {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return index.Event{}, err
		}
		if len(b) == 0 || b[0] != '{' {
			return index.Event{}, fmt.Errorf("event detail must be a JSON object, not %s", b)
		}
		out.Detail = b
	}
	for i := range out.Evidence {
		out.Evidence[i].RecordedAt = out.At
	}
	return out, nil
}

// Record writes events in one transaction, shared with concurrent
// records, and returns when they are durable. Events marked OnlyIfNew are
// written in a transaction of their own, and the counts it returns are
// theirs: how many were written, and how many evidence rows were new.
func (r *Recorder) Record(ctx context.Context, evs ...Event) (index.Appended, error) {
	if len(evs) == 0 {
		return index.Appended{}, nil
	}
	p := &pending{err: make(chan error, 1)}
	alone := false
	for _, e := range evs {
		ie, err := r.Prepare(ctx, e)
		if err != nil {
			return index.Appended{}, err
		}
		p.evs = append(p.evs, ie)
		alone = alone || e.OnlyIfNew
	}
	if alone {
		ctx, cancel := context.WithTimeout(ctx, recordTimeout)
		defer cancel()
		n, err := r.store.AppendEvents(ctx, p.evs)
		if err != nil {
			return index.Appended{}, fmt.Errorf("%w: record %s: %w", ErrUnavailable, evs[0].Kind, err)
		}
		return n, nil
	}
	select {
	case <-r.done:
		return index.Appended{}, fmt.Errorf("%w: recorder closed", ErrUnavailable)
	default:
	}
	t := time.NewTimer(recordTimeout)
	defer t.Stop()
	select {
	case r.queue <- p:
	case <-t.C:
		return index.Appended{}, fmt.Errorf("%w: the record is backed up", ErrUnavailable)
	}
	select {
	case err := <-p.err:
		if err != nil {
			r.log.ErrorContext(ctx, "event not recorded", "kind", evs[0].Kind, "err", err.Error())
			return index.Appended{}, fmt.Errorf("%w: record %s: %w", ErrUnavailable, evs[0].Kind, err)
		}
		return index.Appended{Events: len(p.evs)}, nil
	case <-t.C:
		// The transaction may still commit; the caller retries, and
		// retries find what is stored.
		return index.Appended{}, fmt.Errorf("%w: record %s: no answer from the index within %s", ErrUnavailable, evs[0].Kind, recordTimeout)
	}
}

// commitLoop writes queued records, as many as are waiting, in one
// transaction each round.
func (r *Recorder) commitLoop() {
	defer r.wg.Done()
	for {
		var first *pending
		select {
		case first = <-r.queue:
		case <-r.done:
			// Write what is left, then stop.
			for {
				select {
				case p := <-r.queue:
					r.commit([]*pending{p})
				default:
					return
				}
			}
		}
		batch := []*pending{first}
		n := len(first.evs)
	drain:
		for n < maxBatch {
			select {
			case p := <-r.queue:
				batch = append(batch, p)
				n += len(p.evs)
			default:
				break drain
			}
		}
		r.commit(batch)
	}
}

func (r *Recorder) commit(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	var all []index.Event
	for _, p := range batch {
		all = append(all, p.evs...)
	}
	if _, err := r.store.AppendEvents(ctx, all); err == nil {
		for _, p := range batch {
			p.err <- nil
		}
		return
	} else if len(batch) == 1 {
		batch[0].err <- err
		return
	}
	// One record's failure must not fail the others: write each alone.
	for _, p := range batch {
		_, err := r.store.AppendEvents(ctx, p.evs)
		p.err <- err
	}
}

// Reused counts one more allow served from the verdict cache against the
// decision it reused, where it was used (admission). Counts are written at
// least every second; a crash loses at most that second's counts.
func (r *Recorder) Reused(decisionID, namespace, workloadKind, workloadName string) {
	if decisionID == "" {
		return
	}
	k := reuseKey{decisionID, namespace, workloadKind, workloadName}
	now := r.now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.reuses[k]
	if !ok {
		x = &index.Reuse{DecisionID: decisionID, Namespace: namespace, WorkloadKind: workloadKind, WorkloadName: workloadName, First: now}
		r.reuses[k] = x
	}
	x.Count++
	x.Last = now
}

func (r *Recorder) flushLoop() {
	defer r.wg.Done()
	t := time.NewTicker(reuseFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
			if err := r.flushReuse(ctx); err != nil {
				r.log.Error("decision reuse counts not recorded; kept for the next flush", "err", err.Error())
			}
			cancel()
		case <-r.done:
			return
		}
	}
}

// flushReuse writes the counts gathered since the last flush. On failure
// they are kept and added to the next flush.
func (r *Recorder) flushReuse(ctx context.Context) error {
	r.mu.Lock()
	if len(r.reuses) == 0 {
		r.mu.Unlock()
		return nil
	}
	batch := r.reuses
	r.reuses = map[reuseKey]*index.Reuse{}
	r.mu.Unlock()
	rs := make([]index.Reuse, 0, len(batch))
	for _, x := range batch {
		rs = append(rs, *x)
	}
	if err := r.store.AddReuse(ctx, rs); err != nil {
		r.mu.Lock()
		for k, x := range batch {
			if cur, ok := r.reuses[k]; ok {
				cur.Count += x.Count
				cur.First = x.First
			} else {
				r.reuses[k] = x
			}
		}
		r.mu.Unlock()
		return err
	}
	return nil
}
