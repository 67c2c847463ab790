package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/service/policy"
)

// VSAQueue is the river queue VSA jobs run on, apart from SBOM jobs.
const VSAQueue = "vsa"

// VSAArgs is the job of signing one VSA: for a digest, a policy revision
// and a key-set revision. Identical jobs not yet finished are one job.
type VSAArgs struct {
	Image          string `json:"image"`
	Policy         string `json:"policy"`
	Revision       string `json:"revision"`
	KeySetRevision int64  `json:"key_set_revision"`
}

// Kind names the job kind.
func (VSAArgs) Kind() string { return "vsa" }

// InsertOpts makes identical unfinished jobs one job, on the VSA queue.
func (VSAArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: VSAQueue, MaxAttempts: 5, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

type jobInserter interface {
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// vsaActor is who signs VSAs: attestd itself, for the record.
var vsaActor = Principal{TokenID: "internal", Name: "attestd"}

// VSAs signs SLSA verification summaries of the gate's allows, off the
// gate's request path: the gate hands (digest, policy) to Request, which
// never blocks; a river job re-checks the policy in full against the
// evidence and, if every requirement holds, signs a VSA with the default key
// (origin attestd) and stores it in both layouts through the attestation
// write path, recorded as a vsa.issued event.
//
// There is one VSA per (digest, policy revision, key-set revision): a job
// finds a fresh one (younger than half of maxAge, so that one younger than
// maxAge is always there for gates that accept it) and does nothing.
type VSAs struct {
	gate      *Gate
	evidence  *Evidence
	atts      *Attestations
	policies  *policy.Set
	keys      gateKeys
	client    jobInserter
	maxAge    time.Duration
	builderID string
	log       *slog.Logger
	now       func() time.Time

	queue  chan VSAArgs
	stop   context.CancelFunc
	mu     sync.Mutex
	recent map[VSAArgs]time.Time
}

// NewVSAs returns the VSA service. builderID is the verifier id VSAs
// name. Its jobs run on the process's one river client: Jobs registers its
// worker and queue there, UseQueue gives it the client to enqueue on.
func NewVSAs(g *Gate, ev *Evidence, atts *Attestations, ks gateKeys, ps *policy.Set, maxAge time.Duration, builderID string, log *slog.Logger) *VSAs {
	return &VSAs{gate: g, evidence: ev, atts: atts, policies: ps, keys: ks, maxAge: maxAge, builderID: builderID, log: log, now: time.Now,
		queue: make(chan VSAArgs, 256), recent: map[VSAArgs]time.Time{}}
}

// Jobs registers the VSA worker and its queue (one job at a time) on the
// river client.
func (v *VSAs) Jobs() JobsOption {
	return func(w *river.Workers, cfg *river.Config) {
		river.AddWorker(w, &vsaWorker{v: v})
		if cfg.Queues == nil {
			cfg.Queues = map[string]river.QueueConfig{}
		}
		cfg.Queues[VSAQueue] = river.QueueConfig{MaxWorkers: 1}
	}
}

// UseQueue sets the river client jobs are enqueued on; call it before Start.
func (v *VSAs) UseQueue(c JobClient) { v.client = c }

// Start starts the enqueuer; the river client (started by its owner)
// works the jobs. Stop ends it.
func (v *VSAs) Start(ctx context.Context) {
	pctx, cancel := context.WithCancel(ctx)
	v.stop = cancel
	go v.pump(pctx)
}

// Stop stops the enqueuer: requests still buffered are dropped (the next
// allow asks again).
func (v *VSAs) Stop() {
	if v.stop != nil {
		v.stop()
	}
}

// recentWindow is how long a request for the same VSA is not enqueued again
// by this process.
const recentWindow = 10 * time.Minute

// Request asks for a VSA of an allow by policy pol for d. It never blocks:
// the job is enqueued by another goroutine; a full buffer drops the request
// (the next allow asks again).
func (v *VSAs) Request(d name.Digest, pol *policy.Policy, keySetRevision int64) {
	args := VSAArgs{Image: d.String(), Policy: pol.Name, Revision: pol.Revision(), KeySetRevision: keySetRevision}
	now := v.now()
	v.mu.Lock()
	if t, ok := v.recent[args]; ok && now.Sub(t) < recentWindow {
		v.mu.Unlock()
		return
	}
	if len(v.recent) > 10_000 {
		v.recent = map[VSAArgs]time.Time{}
	}
	v.recent[args] = now
	v.mu.Unlock()
	select {
	case v.queue <- args:
	default:
		v.log.Warn("VSA request dropped: the enqueue buffer is full", "image", args.Image, "policy", args.Policy)
		v.mu.Lock()
		delete(v.recent, args)
		v.mu.Unlock()
	}
}

func (v *VSAs) pump(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case args := <-v.queue:
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := v.client.Insert(ictx, args, nil); err != nil {
				v.log.WarnContext(ctx, "enqueue VSA", "image", args.Image, "policy", args.Policy, "error", err)
				v.mu.Lock()
				delete(v.recent, args)
				v.mu.Unlock()
			}
			cancel()
		}
	}
}

type vsaWorker struct {
	river.WorkerDefaults[VSAArgs]
	v *VSAs
}

// Timeout bounds one VSA job: a re-check and one signature.
func (w *vsaWorker) Timeout(*river.Job[VSAArgs]) time.Duration { return 2 * time.Minute }

func (w *vsaWorker) Work(ctx context.Context, job *river.Job[VSAArgs]) error {
	_, err := w.v.Issue(ctx, job.Args)
	if errors.Is(err, ErrForbidden) || errors.Is(err, ErrInvalid) {
		// The default key may not sign there, or the VSA is malformed:
		// retrying changes nothing.
		return river.JobCancel(err)
	}
	return err
}

// Issue signs and stores the VSA args asks for, unless a fresh one is
// stored, the policy or key set has changed since, or the policy no longer
// passes. It returns the attestation written, if one was.
func (v *VSAs) Issue(ctx context.Context, args VSAArgs) (*AttestResult, error) {
	d, err := name.NewDigest(args.Image)
	if err != nil {
		return nil, river.JobCancel(fmt.Errorf("job image %q: %w", args.Image, err))
	}
	pol, ok := v.policies.Get(args.Policy)
	if !ok || pol.Revision() != args.Revision || v.keys.Revision() != args.KeySetRevision {
		v.log.InfoContext(ctx, "VSA not issued: the policy or key set changed since the allow", "image", args.Image, "policy", args.Policy)
		return nil, nil
	}
	// A digest quarantined since the allow gets no VSA: a VSA would let a
	// gate that cannot reach attestd admit it.
	if reason, q := v.gate.quarantined(d.DigestStr()); q {
		v.log.InfoContext(ctx, "VSA not issued: the digest is quarantined", "image", args.Image, "policy", args.Policy, "reason", reason)
		return nil, nil
	}
	key, err := v.atts.signer("")
	if err != nil {
		return nil, err
	}
	if fresh, err := v.fresh(ctx, d, pol, key.ID(), args.KeySetRevision); err != nil || fresh {
		return nil, err
	}
	// The VSA says what attestd verified, so it verifies again, in full
	// (never from another VSA), at the time the VSA names.
	at := v.now().UTC().Truncate(time.Second)
	reqs, err := v.gate.check(ctx, pol, d)
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if !r.Pass {
			v.log.InfoContext(ctx, "VSA not issued: the policy no longer passes", "image", args.Image, "policy", pol.Name, "requirement", r.Name, "reason", r.Reason)
			return nil, nil
		}
	}
	inputs, err := v.inputs(ctx, d, pol)
	if err != nil {
		return nil, err
	}
	pred, err := attest.NewVSA(attest.VSA{Verifier: v.builderID, KeySetRevision: args.KeySetRevision, Resource: d.String(),
		Policy: pol.Name, PolicyDigest: attest.PolicyDigest(pol.Source()), Time: at, Result: attest.VSAPassed, Levels: pol.VerifiedLevels, Inputs: inputs})
	if err != nil {
		return nil, err
	}
	res, err := v.atts.attestGenerated(ctx, vsaActor, EventVSAIssued, d, attest.PredicateVSA, pred)
	if err != nil {
		return nil, err
	}
	v.log.InfoContext(ctx, "VSA issued", "image", args.Image, "policy", pol.Name, "policy_revision", pol.Revision(), "key_set_revision", args.KeySetRevision)
	return &res, nil
}

// fresh reports whether a VSA by keyID for d, this policy revision and
// key-set revision, younger than half of maxAge, is stored.
func (v *VSAs) fresh(ctx context.Context, d name.Digest, pol *policy.Policy, keyID string, ksRev int64) (bool, error) {
	list, err := v.evidence.Attestations(ctx, d, attest.PredicateVSA)
	if err != nil {
		return false, err
	}
	for _, at := range list.Attestations {
		if !at.Valid || at.statement == nil || at.KeyID != keyID || at.Origin != attest.OriginAttestd {
			continue
		}
		s, err := attest.ParseVSA(at.statement.Predicate)
		if err != nil {
			continue
		}
		if s.Policy == pol.Name && s.PolicyRevision() == pol.Revision() && s.KeySetRevision == ksRev && s.Result == attest.VSAPassed &&
			v.now().Sub(s.Time) < v.maxAge/2 {
			return true, nil
		}
	}
	return false, nil
}

// inputs lists the verified attestations the policy's requirements read:
// where each is stored and the SHA-256 of its DSSE envelope as stored.
func (v *VSAs) inputs(ctx context.Context, d name.Digest, pol *policy.Policy) ([]attest.VSAInput, error) {
	var out []attest.VSAInput
	for _, a := range pol.Attestations {
		list, err := v.evidence.Attestations(ctx, d, a.PredicateType)
		if err != nil {
			return nil, err
		}
		for _, at := range list.Attestations {
			if !at.Valid || len(at.Envelope) == 0 || !a.Accepts(at.Origin) {
				continue
			}
			sum := sha256.Sum256(at.Envelope)
			in := attest.VSAInput{URI: at.Ref, SHA256: hex.EncodeToString(sum[:])}
			if !slices.Contains(out, in) {
				out = append(out, in)
			}
		}
	}
	return out, nil
}

// vsaRequirement names the requirement a VSA satisfied in a decision.
const vsaRequirement = "verification summary"

// fromVSA reports whether reqs were met by a VSA, not by evaluation.
func fromVSA(reqs []Requirement) bool {
	return len(reqs) == 1 && strings.HasPrefix(reqs[0].Name, vsaRequirement)
}

// acceptedVSA looks for a VSA that stands in for evaluating pol on d: valid
// (signature, binding to d, the key's scope, state and window), origin
// attestd inside what is signed, by a key of acceptVSA.keys, PASSED, for
// this policy's name, and neither verified nor signed longer than maxAge
// ago. It returns the requirement it meets, or the reasons none does.
func (g *Gate) acceptedVSA(ctx context.Context, pol *policy.Policy, d name.Digest) (Requirement, bool, []string, error) {
	acc := pol.AcceptVSA
	list, err := g.evidence.Attestations(ctx, d, attest.PredicateVSA)
	if err != nil {
		return Requirement{}, false, nil, fmt.Errorf("read verification summaries: %w", err)
	}
	want := map[string]bool{}
	for _, k := range acc.Keys {
		if strings.HasPrefix(k, "sha256:") {
			want[k] = true
		} else if key, _, err := g.keys.Get(k); err == nil {
			want[key.ID()] = true
		}
	}
	now := g.now()
	var reasons []string
	for _, at := range list.Attestations {
		if !at.Valid || at.statement == nil {
			if at.Reason != "" {
				reasons = append(reasons, at.Reason)
			}
			continue
		}
		s, err := attest.ParseVSA(at.statement.Predicate)
		var why string
		switch {
		case at.Origin != attest.OriginAttestd:
			why = fmt.Sprintf("a VSA of origin %q: only attestd's count", at.Origin)
		case !want[at.KeyID]:
			why = fmt.Sprintf("a VSA signed by %s, not a key of acceptVSA", at.KeyName)
		case err != nil:
			why = "a VSA that does not parse: " + err.Error()
		case s.Result != attest.VSAPassed:
			why = "a VSA whose result is " + s.Result
		case s.Policy != pol.Name:
			why = fmt.Sprintf("a VSA for policy %q", s.Policy)
		case !strings.HasSuffix(s.Resource, "@"+d.DigestStr()):
			why = "a VSA about resource " + s.Resource
		case now.Sub(s.Time) > acc.Age() || s.Time.After(now.Add(time.Minute)):
			why = fmt.Sprintf("a VSA verified at %s, outside maxAge %s", s.Time.UTC().Format(time.RFC3339), acc.MaxAge)
		case at.SignedAt == nil || now.Sub(*at.SignedAt) > acc.Age():
			why = "a VSA signed outside maxAge " + acc.MaxAge
		default:
			return Requirement{Name: fmt.Sprintf("%s (%s from %s)", vsaRequirement, pol.Name, at.KeyName), Pass: true,
				Reason: fmt.Sprintf("a PASSED VSA by %s for policy %s revision %s, verified %s, signed by %s", s.Verifier, s.Policy, s.PolicyRevision(),
					s.Time.UTC().Format(time.RFC3339), at.KeyName)}, true, nil, nil
		}
		reasons = append(reasons, why)
	}
	return Requirement{}, false, reasons, nil
}
