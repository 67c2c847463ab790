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
	EventQuarantineAdded    = "quarantine.added"
	EventQuarantineLifted   = "quarantine.lifted"
	EventVSAIssued          = "vsa.issued"
)

// EventKinds lists every event kind.
var EventKinds = []string{
	EventArtifactUploaded, EventArtifactRegistered, EventSignatureCreated, EventAttestationCreated, EventProvenanceCreated,
	EventSBOMCreated, EventDecisionMade, EventKeyActivated, EventKeyRevoked, EventTokenCreated, EventTokenRevoked,
	EventPolicyPut, EventPolicyDeleted, EventEvidenceReindexed, EventQuarantineAdded, EventQuarantineLifted, EventVSAIssued,
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
	Record(ctx context.Context, evs ...Event) (Recorded, error)
}

// preparer turns an event into its index form, for stores that write it
// in the same transaction as the state change it records; once that
// transaction has committed, Sequence puts it in the audit log.
type preparer interface {
	Prepare(ctx context.Context, e Event) (index.Event, error)
	Sequence(ctx context.Context, evs ...index.Event) ([]uint64, error)
}

// Recorded is what a record wrote: the index's counts and ids, and each
// written event's index in the audit log (empty when there is no log).
type Recorded struct {
	index.Appended
	LogIndex []uint64
}

// FirstLogIndex is the audit log index of the first event written, or nil.
func (r Recorded) FirstLogIndex() *uint64 {
	if len(r.LogIndex) == 0 {
		return nil
	}
	i := r.LogIndex[0]
	return &i
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
	SetLogIndexes(ctx context.Context, ids []string, indexes []int64) error
}

// auditLog is the tamper-evident log events are appended to
// (storage/auditlog). Append returns once every entry is durably
// sequenced, with the entries' indices in order.
type auditLog interface {
	Append(ctx context.Context, entries [][]byte) ([]uint64, error)
}

// Recorder is the one way state changes are recorded: each write and
// decision becomes an event in the index, then an entry in the audit log,
// and only then is it answered. Concurrent records share one index
// transaction and one log batch (group commit, pipelined: a batch goes to
// the log while the next commits to the index). Allows served again from
// the verdict cache are counted against the decision they reused, and the
// counts flushed at least every second.
//
// Record MUST NOT return nil unless the event is durable in the index and
// durably sequenced in the log (index assigned; the checkpoint covering it
// follows within the checkpoint interval). A failure is an error wrapping
// ErrUnavailable, never swallowed. An event committed to the index whose
// log append failed keeps a NULL log index and is appended later by the
// LogOutbox; its request was answered 503 and nothing was acknowledged.
type Recorder struct {
	store eventStore
	alog  auditLog
	log   *slog.Logger
	now   func() time.Time

	queue    chan *pending
	logQueue chan *pending
	marks    chan marked
	done     chan struct{}
	logStop  chan struct{}
	markStop chan struct{}
	wg       sync.WaitGroup
	logWG    sync.WaitGroup
	markWG   sync.WaitGroup
	closing  sync.Once

	mu       sync.Mutex
	inflight map[string]struct{}

	// reuseMu guards reuses alone: every warm decision counts under it.
	reuseMu sync.Mutex
	reuses  map[reuseKey]*index.Reuse
}

type pending struct {
	evs []index.Event
	err chan error
	// logIdx is set by the log stage before it sends nil on err.
	logIdx []uint64
}

// marked are events sequenced in the log, to note in the index before
// their records are answered.
type marked struct {
	ids     []string
	idx     []int64
	pending []*pending
}

// RecorderOption configures a Recorder.
type RecorderOption func(*Recorder)

// WithAuditLog makes the recorder append every event to l after the index
// commit, and answer only once it is sequenced there.
func WithAuditLog(l auditLog) RecorderOption {
	return func(r *Recorder) { r.alog = l }
}

type reuseKey struct{ decision, ns, kind, name string }

// Batching bounds: events per index transaction and per log batch, and
// how long a record waits.
const (
	maxBatch      = 256
	maxLogBatch   = 4096
	recordTimeout = 10 * time.Second
	reuseFlush    = time.Second
)

// NewRecorder starts a recorder over store. Close it to flush.
func NewRecorder(store eventStore, log *slog.Logger, opts ...RecorderOption) *Recorder {
	r := &Recorder{store: store, log: log, now: time.Now, queue: make(chan *pending, 1024), logQueue: make(chan *pending, 1024),
		marks: make(chan marked, 1024), done: make(chan struct{}), logStop: make(chan struct{}), markStop: make(chan struct{}),
		reuses: map[reuseKey]*index.Reuse{}, inflight: map[string]struct{}{}}
	for _, o := range opts {
		o(r)
	}
	r.wg.Add(2)
	go r.commitLoop()
	go r.flushLoop()
	r.logWG.Add(1)
	go r.logLoop()
	r.markWG.Add(1)
	go r.markLoop()
	return r
}

// Close stops the recorder after writing what is queued, appending it to
// the log, and writing the reuse counts.
func (r *Recorder) Close(ctx context.Context) error {
	closed := false
	r.closing.Do(func() { closed = true })
	if !closed {
		return nil
	}
	close(r.done)
	r.wg.Wait()
	close(r.logStop)
	r.logWG.Wait()
	close(r.markStop)
	r.markWG.Wait()
	return r.flushReuse(ctx)
}

// Logging reports whether records go to an audit log.
func (r *Recorder) Logging() bool { return r.alog != nil }

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
	case p.Identity != nil:
		return "oidc"
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
	// The index keeps microseconds (PostgreSQL rounds finer times); the
	// log entry is built from what the index keeps.
	out := index.Event{
		ID: newEventID(), Kind: e.Kind, At: r.now().UTC().Truncate(time.Microsecond), Repository: e.Repository, Digest: e.Digest, Tags: e.Tags,
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
	if id := e.Actor.Identity; id != nil {
		// The workload identity: issuer, subject and the claims its build
		// facts came from. Added to the detail; never a token.
		d, _ := e.Detail.(map[string]any)
		if d == nil && e.Detail == nil {
			d = map[string]any{}
		}
		if d != nil {
			d["identity"] = map[string]any{"issuer": id.Issuer, "subject": id.Subject, "claims": id.Build().Claims}
			e.Detail = d
		}
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

// Record writes events in one index transaction, shared with concurrent
// records, appends them to the audit log, and returns when they are durable
// in both. Events marked OnlyIfNew are written in a transaction of their
// own, and the counts it returns are theirs: how many were written, and how
// many evidence rows were new.
func (r *Recorder) Record(ctx context.Context, evs ...Event) (Recorded, error) {
	if len(evs) == 0 {
		return Recorded{}, nil
	}
	p := &pending{err: make(chan error, 1)}
	alone := false
	for _, e := range evs {
		ie, err := r.Prepare(ctx, e)
		if err != nil {
			return Recorded{}, err
		}
		p.evs = append(p.evs, ie)
		alone = alone || e.OnlyIfNew
	}
	if alone {
		ctx, cancel := context.WithTimeout(ctx, recordTimeout)
		defer cancel()
		n, err := r.store.AppendEvents(ctx, p.evs)
		if err != nil {
			return Recorded{}, fmt.Errorf("%w: record %s: %w", ErrUnavailable, evs[0].Kind, err)
		}
		written := map[string]bool{}
		for _, id := range n.IDs {
			written[id] = true
		}
		var logged []index.Event
		for _, e := range p.evs {
			if written[e.ID] {
				logged = append(logged, e)
			}
		}
		idx, err := r.Sequence(ctx, logged...)
		if err != nil {
			return Recorded{}, err
		}
		return Recorded{Appended: n, LogIndex: idx}, nil
	}
	select {
	case <-r.done:
		return Recorded{}, fmt.Errorf("%w: recorder closed", ErrUnavailable)
	default:
	}
	r.track(p.evs)
	t := time.NewTimer(recordTimeout)
	defer t.Stop()
	select {
	case r.queue <- p:
	case <-t.C:
		r.untrack(p.evs)
		return Recorded{}, fmt.Errorf("%w: the record is backed up", ErrUnavailable)
	}
	return r.wait(ctx, p, evs[0].Kind, t)
}

// Sequence appends events a store has already committed (with the state
// change they record) to the audit log, and returns their log indices once
// they are durably sequenced. Without a log it does nothing.
func (r *Recorder) Sequence(ctx context.Context, evs ...index.Event) ([]uint64, error) {
	if r.alog == nil || len(evs) == 0 {
		return nil, nil
	}
	select {
	case <-r.done:
		return nil, fmt.Errorf("%w: recorder closed", ErrUnavailable)
	default:
	}
	p := &pending{evs: evs, err: make(chan error, 1)}
	r.track(evs)
	t := time.NewTimer(recordTimeout)
	defer t.Stop()
	select {
	case r.logQueue <- p:
	case <-t.C:
		r.untrack(evs)
		return nil, fmt.Errorf("%w: the audit log is backed up", ErrUnavailable)
	}
	res, err := r.wait(ctx, p, evs[0].Kind, t)
	return res.LogIndex, err
}

func (r *Recorder) wait(ctx context.Context, p *pending, kind string, t *time.Timer) (Recorded, error) {
	ids := make([]string, len(p.evs))
	for i, e := range p.evs {
		ids[i] = e.ID
	}
	select {
	case err := <-p.err:
		if err != nil {
			r.log.ErrorContext(ctx, "event not recorded", "kind", kind, "err", err.Error())
			return Recorded{}, fmt.Errorf("%w: record %s: %w", ErrUnavailable, kind, err)
		}
		return Recorded{Appended: index.Appended{Events: len(p.evs), IDs: ids}, LogIndex: p.logIdx}, nil
	case <-t.C:
		// The transaction or the append may still complete; the caller
		// retries, and retries find what is stored. An event left out of
		// the log is appended by the outbox.
		return Recorded{}, fmt.Errorf("%w: record %s: no answer from the index and the audit log within %s", ErrUnavailable, kind, recordTimeout)
	}
}

// track notes events on their way to the log: the outbox leaves them alone.
func (r *Recorder) track(evs []index.Event) {
	if r.alog == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range evs {
		r.inflight[e.ID] = struct{}{}
	}
}

func (r *Recorder) untrack(evs []index.Event) {
	if r.alog == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range evs {
		delete(r.inflight, e.ID)
	}
}

func (r *Recorder) untrackIDs(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.inflight, id)
	}
}

// InFlight reports whether this recorder is still appending the event id
// to the log.
func (r *Recorder) InFlight(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.inflight[id]
	return ok
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
			r.committed(p)
		}
		return
	} else if len(batch) == 1 {
		r.untrack(batch[0].evs)
		batch[0].err <- err
		return
	}
	// One record's failure must not fail the others: write each alone.
	for _, p := range batch {
		if _, err := r.store.AppendEvents(ctx, p.evs); err != nil {
			r.untrack(p.evs)
			p.err <- err
			continue
		}
		r.committed(p)
	}
}

// committed passes a record durable in the index on to the log stage, or
// answers it where there is no log.
func (r *Recorder) committed(p *pending) {
	if r.alog == nil {
		p.err <- nil
		return
	}
	r.logQueue <- p
}

// logLoop appends records committed to the index to the audit log, as many
// as are waiting in one batch each round, and answers them once sequenced.
func (r *Recorder) logLoop() {
	defer r.logWG.Done()
	for {
		var first *pending
		select {
		case first = <-r.logQueue:
		case <-r.logStop:
			for {
				select {
				case p := <-r.logQueue:
					r.appendLog([]*pending{p})
				default:
					return
				}
			}
		}
		batch := []*pending{first}
		n := len(first.evs)
	drain:
		for n < maxLogBatch {
			select {
			case p := <-r.logQueue:
				batch = append(batch, p)
				n += len(p.evs)
			default:
				break drain
			}
		}
		r.appendLog(batch)
	}
}

func (r *Recorder) appendLog(batch []*pending) {
	var entries [][]byte
	var ok []*pending
	for _, p := range batch {
		var es [][]byte
		var err error
		for _, e := range p.evs {
			var b []byte
			if b, err = LogEntry(e); err != nil {
				break
			}
			es = append(es, b)
		}
		if err != nil {
			r.untrack(p.evs)
			p.err <- fmt.Errorf("the audit log entry: %w", err)
			continue
		}
		entries = append(entries, es...)
		ok = append(ok, p)
	}
	if len(ok) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	idx, err := r.alog.Append(ctx, entries)
	if err != nil {
		// The events stay in the index without a log index; the outbox
		// appends them once the log is back.
		for _, p := range ok {
			r.untrack(p.evs)
			p.err <- fmt.Errorf("committed to the index but not to the audit log (it is appended later): %w", err)
		}
		return
	}
	m := marked{pending: ok}
	i := 0
	for _, p := range ok {
		p.logIdx = idx[i : i+len(p.evs)]
		for _, e := range p.evs {
			m.ids = append(m.ids, e.ID)
			m.idx = append(m.idx, int64(idx[i])) //nolint:gosec // a log index is far below 2^63
			i++
		}
	}
	r.marks <- m
}

// markLoop notes in the index where events are in the log, batched, then
// answers their records: an answer's log index is in GET /v1/events. A
// failure to note is logged, not answered with an error (the events are
// durable in the index and the log); the outbox finds them in the log by
// their ids and notes them later.
func (r *Recorder) markLoop() {
	defer r.markWG.Done()
	for {
		var first marked
		select {
		case first = <-r.marks:
		case <-r.markStop:
			for {
				select {
				case m := <-r.marks:
					r.mark(m)
				default:
					return
				}
			}
		}
	drain:
		for len(first.ids) < maxLogBatch {
			select {
			case m := <-r.marks:
				first.ids, first.idx, first.pending = append(first.ids, m.ids...), append(first.idx, m.idx...), append(first.pending, m.pending...)
			default:
				break drain
			}
		}
		r.mark(first)
	}
}

func (r *Recorder) mark(m marked) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := r.store.SetLogIndexes(ctx, m.ids, m.idx); err != nil {
		r.log.ErrorContext(ctx, "log indexes not noted in the index; the outbox will find them in the log", "events", len(m.ids), "err", err.Error())
	}
	r.untrackIDs(m.ids)
	for _, p := range m.pending {
		p.err <- nil
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
	r.reuseMu.Lock()
	defer r.reuseMu.Unlock()
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
	r.reuseMu.Lock()
	if len(r.reuses) == 0 {
		r.reuseMu.Unlock()
		return nil
	}
	batch := r.reuses
	r.reuses = map[reuseKey]*index.Reuse{}
	r.reuseMu.Unlock()
	rs := make([]index.Reuse, 0, len(batch))
	for _, x := range batch {
		rs = append(rs, *x)
	}
	if err := r.store.AddReuse(ctx, rs); err != nil {
		r.reuseMu.Lock()
		for k, x := range batch {
			if cur, ok := r.reuses[k]; ok {
				cur.Count += x.Count
				cur.First = x.First
			} else {
				r.reuses[k] = x
			}
		}
		r.reuseMu.Unlock()
		return err
	}
	return nil
}
