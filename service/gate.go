package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

type decisionStore interface {
	InsertDecision(ctx context.Context, d index.Decision) error
}

type gateKeys interface {
	Get(name string) (*keys.Key, keys.Status, error)
	Revision() int64
}

// Gate decides whether a digest may run, from verified evidence and a
// policy. It fails closed: an error, a timeout, a panic, or nothing that
// matched is a deny, with the reason. Verdicts are cached by digest, policy
// revision and key-set revision, never by tag; identical concurrent
// requests are verified once; denies and failures are not cached.
type Gate struct {
	resolve  resolver
	sigs     *Verification
	atts     *Attestations
	keys     gateKeys
	policies *policy.Set
	store    decisionStore
	log      *slog.Logger
	now      func() time.Time
	timeout  time.Duration
	ttl      time.Duration

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]cached
}

type cached struct {
	reqs    []Requirement
	expires time.Time
}

// NewGate returns the gate. timeout bounds one decision; ttl is how long a
// verdict is reused.
func NewGate(r resolver, sigs *Verification, atts *Attestations, ks gateKeys, ps *policy.Set, store decisionStore, timeout, ttl time.Duration, log *slog.Logger) *Gate {
	return &Gate{resolve: r, sigs: sigs, atts: atts, keys: ks, policies: ps, store: store, log: log, now: time.Now,
		timeout: timeout, ttl: ttl, cache: map[string]cached{}}
}

// VerifyRequest asks whether an image may run.
type VerifyRequest struct {
	Image string
	// Policy names the policy; or else Namespace selects one (admission).
	Policy    string
	Namespace string
	// Breakglass, if set, asks to allow despite the policy.
	Breakglass *BreakglassRequest
}

// BreakglassRequest is a justified, time-boxed override.
type BreakglassRequest struct {
	Justification string
	Duration      time.Duration
}

// Requirement is one checked requirement of a policy.
type Requirement struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason"`
}

// Decision is the gate's answer.
type Decision struct {
	ID             string        `json:"id"`
	Allow          bool          `json:"allow"`
	Image          string        `json:"image"`
	Digest         string        `json:"digest"`
	Policy         string        `json:"policy"`
	Revision       string        `json:"policy_revision"`
	KeySetRevision int64         `json:"key_set_revision"`
	Mode           string        `json:"mode"`
	Requirements   []Requirement `json:"requirements"`
	Warnings       []string      `json:"warnings,omitempty"`
	Reason         string        `json:"reason"`
	Breakglass     string        `json:"breakglass,omitempty"`
	Cached         bool          `json:"cached"`
}

// Verify decides on req. It returns an error only for a request that is
// malformed or not allowed (unknown policy, no role); every failure to
// decide is a deny decision with the reason.
func (g *Gate) Verify(ctx context.Context, p Principal, req VerifyRequest) (d Decision, err error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return Decision{}, err
	}
	if req.Policy == "" && req.Namespace == "" {
		return Decision{}, fmt.Errorf("%w: give a policy or a namespace", ErrInvalid)
	}
	if req.Policy != "" {
		if _, ok := g.policies.Get(req.Policy); !ok {
			return Decision{}, fmt.Errorf("%w: no policy %q", ErrNotFound, req.Policy)
		}
	}
	d = Decision{ID: newID(), Image: req.Image, Requirements: []Requirement{}}
	defer func() {
		if r := recover(); r != nil {
			g.log.ErrorContext(ctx, "panic in the gate", "panic", fmt.Sprint(r))
			d.Allow, d.Reason = false, "deny: internal error while deciding"
			err = nil
		}
		g.record(ctx, p, req, d)
	}()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	d = g.decide(ctx, req, d)
	return d, nil
}

func (g *Gate) decide(ctx context.Context, req VerifyRequest, d Decision) Decision {
	deny := func(reason string) Decision {
		d.Allow, d.Reason = false, "deny: "+reason
		return d
	}
	ref, err := g.resolve.Parse(req.Image)
	if err != nil {
		return deny(err.Error())
	}
	var pol *policy.Policy
	if req.Policy != "" {
		pol, _ = g.policies.Get(req.Policy)
		if !pol.CoversImage(ref.Context().Name()) {
			return deny(fmt.Sprintf("policy %s does not cover %s", pol.Name, ref.Context().Name()))
		}
	} else {
		var ok bool
		if pol, ok = g.policies.ForAdmission(req.Namespace, ref.Context().Name()); !ok {
			return deny(fmt.Sprintf("no policy covers %s in namespace %q (the default is deny)", ref.Context().Name(), req.Namespace))
		}
	}
	d.Policy, d.Revision, d.Mode = pol.Name, pol.Revision(), string(pol.Mode)
	var subj oci.Resolved
	if dg, ok := ref.(name.Digest); ok && g.cachedAllow(dg, pol) {
		// A digest is its own content address, and its evidence was
		// verified within the TTL: no registry round trip.
		subj.Digest = dg
	} else if subj, err = g.resolve.Resolve(ctx, ref); err != nil {
		return deny(err.Error())
	}
	d.Image, d.Digest = subj.Digest.String(), subj.Digest.DigestStr()
	d.KeySetRevision = g.keys.Revision()

	reqs, cachedHit, err := g.requirements(ctx, pol, subj)
	if err != nil {
		return deny(err.Error())
	}
	d.Requirements, d.Cached = reqs, cachedHit
	var failed []string
	for _, r := range reqs {
		if !r.Pass {
			failed = append(failed, r.Name+": "+r.Reason)
		}
	}
	if len(failed) == 0 {
		d.Allow, d.Reason = true, "allow: every requirement of "+pol.Name+" holds"
		return d
	}
	if b := req.Breakglass; b != nil {
		if err := pol.BreakglassFor(b.Justification, b.Duration); err != nil {
			return deny(strings.Join(failed, "; ") + "; breakglass refused: " + err.Error())
		}
		d.Allow, d.Breakglass = true, fmt.Sprintf("%s (until %s)", b.Justification, g.now().Add(b.Duration).UTC().Format(time.RFC3339))
		d.Reason = "allow by breakglass: " + strings.Join(failed, "; ")
		return d
	}
	switch pol.Mode {
	case policy.Warn:
		d.Allow, d.Warnings, d.Reason = true, failed, "allow with warnings (mode warn)"
	case policy.Audit:
		d.Allow, d.Reason = true, "allow (mode audit); would deny: "+strings.Join(failed, "; ")
	default:
		d = deny(strings.Join(failed, "; "))
	}
	return d
}

// requirements checks the policy's requirements on subj, from the cache
// when the same digest, policy revision and key-set revision were checked
// lately. Identical concurrent checks run once. A failure to read evidence
// is an error and is not cached.
func (g *Gate) cacheKey(d name.Digest, pol *policy.Policy) string {
	return fmt.Sprintf("%s|%s|%s|%d", d.DigestStr(), pol.Name, pol.Revision(), g.keys.Revision())
}

// cachedAllow reports whether an unexpired allow is cached for d and pol.
func (g *Gate) cachedAllow(d name.Digest, pol *policy.Policy) bool {
	key := g.cacheKey(d, pol)
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.cache[key]
	return ok && g.now().Before(c.expires)
}

func (g *Gate) requirements(ctx context.Context, pol *policy.Policy, subj oci.Resolved) ([]Requirement, bool, error) {
	key := g.cacheKey(subj.Digest, pol)
	g.mu.Lock()
	c, ok := g.cache[key]
	g.mu.Unlock()
	if ok && g.now().Before(c.expires) {
		return c.reqs, true, nil
	}
	v, err, _ := g.flight.Do(key, func() (any, error) {
		reqs, err := g.check(ctx, pol, subj.Digest)
		if err != nil {
			return nil, err
		}
		for _, r := range reqs {
			if !r.Pass {
				// A deny is not cached: the evidence it lacked may be
				// added any moment (CI signs after a first try).
				return reqs, nil
			}
		}
		g.mu.Lock()
		if len(g.cache) > 100_000 {
			g.cache = map[string]cached{} // bounded: start over rather than grow
		}
		g.cache[key] = cached{reqs: reqs, expires: g.now().Add(g.ttl)}
		g.mu.Unlock()
		return reqs, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.([]Requirement), false, nil
}

// check runs the policy's requirements on d, concurrently; any failure to
// read evidence fails the whole check.
func (g *Gate) check(ctx context.Context, pol *policy.Policy, d name.Digest) ([]Requirement, error) {
	n := len(pol.Attestations)
	if pol.Signatures != nil {
		n++
	}
	reqs := make([]Requirement, n)
	eg, ctx := errgroup.WithContext(oci.WithReadMemo(ctx))
	i := 0
	if pol.Signatures != nil {
		eg.Go(func() (err error) { reqs[0], err = g.checkSignatures(ctx, pol.Signatures, d); return err })
		i++
	}
	for j := range pol.Attestations {
		at := i + j
		eg.Go(func() (err error) { reqs[at], err = g.checkAttestation(ctx, pol, j, d); return err })
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return reqs, nil
}

func (g *Gate) checkSignatures(ctx context.Context, s *policy.Signatures, d name.Digest) (Requirement, error) {
	{
		rep, err := g.sigs.report(ctx, d)
		if err != nil {
			return Requirement{}, fmt.Errorf("read signatures: %w", err)
		}
		want := map[string]bool{}
		for _, k := range s.Keys {
			if strings.HasPrefix(k, "sha256:") {
				want[k] = true
			} else if key, _, err := g.keys.Get(k); err == nil && k != "" {
				want[key.ID()] = true
			}
		}
		var signed []string
		var reasons []string
		for _, c := range rep.Signatures {
			switch {
			case c.Valid && want[c.KeyID] && !slices.Contains(signed, c.KeyID):
				signed = append(signed, c.KeyID)
			case !c.Valid:
				reasons = append(reasons, c.Reason)
			}
		}
		r := Requirement{Name: fmt.Sprintf("signatures (%d of %s)", s.Threshold, strings.Join(s.Keys, ", "))}
		r.Pass = len(signed) >= s.Threshold
		if r.Pass {
			r.Reason = fmt.Sprintf("signed by %d required key(s)", len(signed))
		} else {
			r.Reason = fmt.Sprintf("signed by %d distinct required key(s), %d needed", len(signed), s.Threshold)
			if len(reasons) > 0 {
				r.Reason += " (" + strings.Join(uniq(reasons), "; ") + ")"
			}
		}
		return r, nil
	}
}

func (g *Gate) checkAttestation(ctx context.Context, pol *policy.Policy, i int, d name.Digest) (Requirement, error) {
	a := pol.Attestations[i]
	{
		r := Requirement{Name: "attestation " + a.PredicateType}
		list, err := g.atts.list(ctx, d, a.PredicateType)
		if err != nil {
			return Requirement{}, fmt.Errorf("read attestations: %w", err)
		}
		valid := 0
		var reasons []string
		for _, at := range list.Attestations {
			if !at.Valid || at.statement == nil || at.statement.PredicateType != a.PredicateType {
				if at.Reason != "" {
					reasons = append(reasons, at.Reason)
				}
				continue
			}
			valid++
			var pred any
			if err := json.Unmarshal(at.statement.Predicate, &pred); err != nil {
				reasons = append(reasons, "predicate: "+err.Error())
				continue
			}
			var signedAt time.Time
			if at.SignedAt != nil {
				signedAt = *at.SignedAt
			}
			ok, err := pol.Eval(i, policy.Input{Predicate: pred, PredicateType: a.PredicateType, Digest: d.DigestStr(), SignedAt: signedAt, Now: g.now().UTC()})
			switch {
			case err != nil:
				reasons = append(reasons, "condition: "+err.Error())
			case ok:
				r.Pass = true
			default:
				reasons = append(reasons, "condition is false: "+a.Condition)
			}
			if r.Pass {
				break
			}
		}
		switch {
		case r.Pass:
			r.Reason = "a verified attestation satisfies it"
		case valid == 0 && len(reasons) == 0:
			r.Reason = "no attestation of this type for this digest"
		case valid == 0:
			r.Reason = "no valid attestation of this type (" + strings.Join(uniq(reasons), "; ") + ")"
		default:
			r.Reason = strings.Join(uniq(reasons), "; ")
		}
		return r, nil
	}
}

func uniq(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	if len(out) > 5 {
		out = append(out[:5], "…")
	}
	return out
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// record writes the decision to the log and the index. Audit-mode and
// breakglass decisions are logged at warn level.
func (g *Gate) record(ctx context.Context, p Principal, req VerifyRequest, d Decision) {
	wouldDeny := !d.Allow || d.Breakglass != "" || len(d.Warnings) > 0 || strings.Contains(d.Reason, "would deny")
	level := slog.LevelInfo
	if wouldDeny {
		level = slog.LevelWarn
	}
	g.log.Log(ctx, level, "gate decision", "decision_id", d.ID, "allow", d.Allow, "image", d.Image, "digest", d.Digest,
		"policy", d.Policy, "policy_revision", d.Revision, "mode", d.Mode, "reason", d.Reason, "breakglass", d.Breakglass,
		"namespace", req.Namespace, "caller", p.Name, "cached", d.Cached)
	detail, _ := json.Marshal(d)
	err := g.store.InsertDecision(context.WithoutCancel(ctx), index.Decision{
		ID: d.ID, At: g.now(), Image: d.Image, Digest: d.Digest, Policy: d.Policy, Revision: d.Revision, Mode: d.Mode,
		Allowed: d.Allow, WouldDeny: wouldDeny, Breakglass: d.Breakglass, Caller: p.Name, Detail: string(detail),
	})
	if err != nil {
		g.log.ErrorContext(ctx, "decision not recorded", "decision_id", d.ID, "err", err.Error())
	}
}

// errPolicy wraps policy errors as invalid requests.
func policyErr(err error) error {
	if errors.Is(err, policy.ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// Policies manages the gate's policies at run time. Policies put through
// the API are stored in the index and outlive restarts.
type Policies struct {
	set   *policy.Set
	store policyStore
}

type policyStore interface {
	PutPolicy(ctx context.Context, name string, doc []byte) error
	DeletePolicy(ctx context.Context, name string) error
}

// NewPolicies returns the policy service over set.
func NewPolicies(set *policy.Set, store policyStore) *Policies {
	return &Policies{set: set, store: store}
}

// Put validates doc and adds or replaces its policy. A bad policy is
// refused with the reason and changes nothing.
func (s *Policies) Put(ctx context.Context, p Principal, doc []byte) (*policy.Policy, error) {
	if err := Authorize(p, ActionManagePolicies); err != nil {
		return nil, err
	}
	pol, err := policy.Parse(doc)
	if err != nil {
		return nil, policyErr(err)
	}
	if err := s.store.PutPolicy(ctx, pol.Name, doc); err != nil {
		return nil, err
	}
	s.set.Put(pol)
	return pol, nil
}

// Delete removes a policy.
func (s *Policies) Delete(ctx context.Context, p Principal, name string) error {
	if err := Authorize(p, ActionManagePolicies); err != nil {
		return err
	}
	if err := s.store.DeletePolicy(ctx, name); err != nil && !errors.Is(err, index.ErrNotFound) {
		return err
	}
	if !s.set.Delete(name) {
		return fmt.Errorf("%w: no policy %q", ErrNotFound, name)
	}
	return nil
}

// List returns the policies.
func (s *Policies) List(p Principal) ([]*policy.Policy, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return nil, err
	}
	return s.set.All(), nil
}
