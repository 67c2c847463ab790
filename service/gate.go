package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

// decisionRecorder records fresh decisions durably and counts allows
// served again from the verdict cache; *Recorder is one.
type decisionRecorder interface {
	Record(ctx context.Context, evs ...Event) (Recorded, error)
	Reused(decisionID, namespace, workloadKind, workloadName string)
}

// gateQuarantine says which digests are quarantined; *Quarantines is one.
// An error means the list in force is not known: deny.
type gateQuarantine interface {
	Digest(digest string) (*index.Quarantine, error)
	Revision() int64
}

type gateKeys interface {
	Get(name string) (*keys.Key, keys.Status, error)
	Revision() int64
}

// Gate decides whether a digest may run, from verified evidence and a
// policy. It fails closed: an error, a timeout, a panic, or nothing that
// matched is a deny, with the reason. Verdicts are cached by digest, policy
// revision and key-set revision, never by tag; identical concurrent
// requests are verified once; denies and failures are not cached. A
// cached allow still in use near the end of its TTL is checked afresh by
// one request while the others are served it; none is served past its TTL.
type Gate struct {
	resolve  resolver
	evidence *Evidence
	keys     gateKeys
	policies *policy.Set
	rec      decisionRecorder
	quar     gateQuarantine
	log      *slog.Logger
	now      func() time.Time
	timeout  time.Duration
	ttl      time.Duration

	flight singleflight.Group
	mu     sync.RWMutex
	cache  map[string]cached
	// refreshing holds the keys of cached allows being checked afresh
	// before they expire (claimRefresh).
	refreshing map[string]struct{}

	// refs memoizes references that parsed: parsing is a pure function of
	// the string and the configured registries, and costs more than the
	// rest of a warm decision. Failures are parsed again every time.
	refsMu sync.RWMutex
	refs   map[string]name.Reference

	// vsa, if set, is asked for a VSA of each fresh allow.
	vsa *VSAs
}

// IssueVSAs makes the gate ask v for a signed VSA of each fresh allow of a
// policy evaluated in full (not of an allow by breakglass, by a warn or
// audit mode over failed requirements, or by another VSA). The ask never
// blocks the decision. Call it before the gate serves.
func (g *Gate) IssueVSAs(v *VSAs) { g.vsa = v }

type cached struct {
	reqs    []Requirement
	expires time.Time
	// decision is the recorded decision whose allow this is: a reuse
	// counts against it.
	decision string
}

// GateOption configures a Gate.
type GateOption func(*Gate)

// WithQuarantine makes the gate deny every digest q holds quarantined,
// whatever the policy, its mode or a breakglass, and key its cached
// verdicts by q's revision too.
func WithQuarantine(q gateQuarantine) GateOption {
	return func(g *Gate) { g.quar = q }
}

// NewGate returns the gate. timeout bounds one decision; ttl is how long a
// verdict is reused.
// Fresh decisions are recorded through rec before they are answered.
func NewGate(r resolver, ev *Evidence, ks gateKeys, ps *policy.Set, rec decisionRecorder, timeout, ttl time.Duration, log *slog.Logger, opts ...GateOption) *Gate {
	g := &Gate{resolve: r, evidence: ev, keys: ks, policies: ps, rec: rec, log: log, now: time.Now,
		timeout: timeout, ttl: ttl, cache: map[string]cached{}, refreshing: map[string]struct{}{}, refs: map[string]name.Reference{}}
	for _, o := range opts {
		o(g)
	}
	return g
}

// VerifyRequest asks whether an image may run.
type VerifyRequest struct {
	Image string
	// Policy names the policy; or else Namespace selects every policy
	// covering the image there (admission), and each must pass.
	Policy    string
	Namespace string
	// RequireDigest denies an image given by tag unless every policy
	// judging it allows tags (the validating admission webhook: a tag
	// admitted unpinned can move after admission).
	RequireDigest bool
	// WorkloadKind and WorkloadName say what is being admitted, for the record.
	WorkloadKind, WorkloadName string
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
	// Policy names the policy, where several judged the image.
	Policy string `json:"policy,omitempty"`
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason"`
}

// PolicyVerdict is one policy's verdict within a decision.
type PolicyVerdict struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Mode     string `json:"mode"`
	Allow    bool   `json:"allow"`
	Reason   string `json:"reason"`
}

// Decision is the gate's answer.
type Decision struct {
	ID     string `json:"id"`
	Allow  bool   `json:"allow"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// Policy, Revision and Mode name the policies that judged the image,
	// comma-separated where several did.
	Policy         string          `json:"policy"`
	Revision       string          `json:"policy_revision"`
	KeySetRevision int64           `json:"key_set_revision"`
	Mode           string          `json:"mode"`
	Policies       []PolicyVerdict `json:"policies,omitempty"`
	Requirements   []Requirement   `json:"requirements"`
	Warnings       []string        `json:"warnings,omitempty"`
	Reason         string          `json:"reason"`
	Breakglass     string          `json:"breakglass,omitempty"`
	// Cached is true when the allow was served from the verdict cache; ID
	// is then the recorded decision it reused.
	Cached bool `json:"cached"`
	// LogIndex is the decision event's index in the audit log; nil for an
	// allow served from the cache (no new decision).
	LogIndex *uint64 `json:"-"`

	reusedFrom []string
	// passed are the policies evaluated in full whose every requirement
	// holds: the VSAs this decision may ask for.
	passed []*policy.Policy
}

// Verify decides on req. It returns an error only for a request that is
// malformed or not allowed (a reference that does not parse or names an
// unconfigured registry, an unknown policy, no role); every failure to
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
	ref, err := g.parse(req.Image)
	if err != nil {
		return Decision{}, registryErr(err)
	}
	d = Decision{ID: newID(), Image: req.Image, Requirements: []Requirement{}}
	defer func() {
		if r := recover(); r != nil {
			g.log.ErrorContext(ctx, "panic in the gate", "panic", fmt.Sprint(r))
			d.ID, d.Allow, d.Reason, d.Cached, d.reusedFrom = newID(), false, "deny: internal error while deciding", false, nil
			err = nil
		}
		li, rerr := g.record(ctx, p, req, ref, d)
		if rerr != nil {
			d, err = Decision{}, rerr
			return
		}
		d.LogIndex = li
		g.requestVSAs(d)
	}()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	d = g.decide(ctx, req, ref, d)
	return d, nil
}

// maxMemoRefs caps the memo of parsed references; past it, it starts over.
const maxMemoRefs = 10_000

// parse is the resolver's Parse, memoized for the references that parse.
func (g *Gate) parse(image string) (name.Reference, error) {
	g.refsMu.RLock()
	ref, ok := g.refs[image]
	g.refsMu.RUnlock()
	if ok {
		return ref, nil
	}
	ref, err := g.resolve.Parse(image)
	if err != nil {
		return nil, err
	}
	g.refsMu.Lock()
	if len(g.refs) >= maxMemoRefs {
		clear(g.refs)
	}
	g.refs[image] = ref
	g.refsMu.Unlock()
	return ref, nil
}

// judged is one policy's outcome before the decision combines them.
type judged struct {
	pol       *policy.Policy
	reqs      []Requirement
	failed    []string
	verdict   PolicyVerdict
	fromCache string
}

func (g *Gate) decide(ctx context.Context, req VerifyRequest, ref name.Reference, d Decision) Decision {
	deny := func(reason string) Decision {
		d.Allow, d.Reason = false, "deny: "+reason
		return d
	}
	repo := ref.Context().Name()
	var pols []*policy.Policy
	if req.Policy != "" {
		pol, _ := g.policies.Get(req.Policy)
		if !pol.CoversImage(repo) {
			return deny(fmt.Sprintf("policy %s does not cover %s", pol.Name, repo))
		}
		pols = []*policy.Policy{pol}
	} else if pols = g.policies.Covering(req.Namespace, repo); len(pols) == 0 {
		return deny(fmt.Sprintf("no policy covers %s in namespace %q (the default is deny)", repo, req.Namespace))
	}
	var names, revs, modes []string
	for _, pol := range pols {
		names, revs, modes = append(names, pol.Name), append(revs, pol.Revision()), append(modes, string(pol.Mode))
	}
	d.Policy, d.Revision, d.Mode = strings.Join(names, ","), strings.Join(revs, ","), strings.Join(modes, ",")
	dg, pinned := ref.(name.Digest)
	if req.RequireDigest && !pinned {
		for _, pol := range pols {
			if !pol.AllowTags {
				return deny(fmt.Sprintf("%s is a tag, not pinned by digest: the mutating webhook pins tags, or policy %s may set allowTags", req.Image, pol.Name))
			}
		}
	}
	// One read memo for the whole decision: each registry object is read
	// once, however many policies and requirements need it.
	ctx = oci.WithReadMemo(ctx)
	var subj oci.Resolved
	var err error
	if pinned && g.allCachedAllow(dg, pols) {
		// A digest is its own content address, and its evidence was
		// verified within the TTL: no registry round trip.
		subj.Digest = dg
	} else {
		if pinned {
			// The evidence's first reads need only the digest: they run
			// while the manifest is resolved.
			g.evidence.Prefetch(ctx, dg)
		}
		if subj, err = g.resolve.Resolve(ctx, ref); err != nil {
			return deny(err.Error())
		}
	}
	d.Image, d.Digest = subj.Digest.String(), subj.Digest.DigestStr()
	d.KeySetRevision = g.keys.Revision()
	if reason, ok := g.quarantined(d.Digest); ok {
		// Incident response: no policy, mode or breakglass admits it.
		return deny(reason)
	}

	var results []judged
	var reused []string
	for _, pol := range pols {
		reqs, from, err := g.requirements(ctx, pol, subj, d.ID)
		if err != nil {
			return deny(err.Error())
		}
		if from != "" && !slices.Contains(reused, from) {
			reused = append(reused, from)
		}
		j := judged{pol: pol, reqs: reqs, fromCache: from, verdict: PolicyVerdict{Name: pol.Name, Revision: pol.Revision(), Mode: string(pol.Mode)}}
		for _, r := range reqs {
			if len(pols) > 1 {
				r.Policy = pol.Name
			}
			d.Requirements = append(d.Requirements, r)
			if !r.Pass {
				j.failed = append(j.failed, r.Name+": "+r.Reason)
			}
		}
		results = append(results, j)
	}
	for _, j := range results {
		if len(j.failed) == 0 && !fromVSA(j.reqs) {
			d.passed = append(d.passed, j.pol)
		}
	}
	if len(reused) > 0 && len(results) == len(pols) && allFromCache(results, reused) {
		d.Cached, d.reusedFrom, d.ID = true, reused, reused[0]
	}
	return g.combine(req, d, results)
}

// combine turns the policies' outcomes into one decision: every policy
// must allow, each by its own mode or breakglass.
func (g *Gate) combine(req VerifyRequest, d Decision, results []judged) Decision {
	d.Allow = true
	var denials, audits, glassed []string
	for i := range results {
		j := &results[i]
		v := &j.verdict
		prefix := ""
		if len(results) > 1 {
			prefix = j.pol.Name + ": "
		}
		switch {
		case len(j.failed) == 0:
			v.Allow, v.Reason = true, "every requirement holds"
		case req.Breakglass != nil:
			b := req.Breakglass
			if err := j.pol.BreakglassFor(b.Justification, b.Duration); err != nil {
				v.Reason = strings.Join(j.failed, "; ") + "; breakglass refused: " + err.Error()
				denials = append(denials, prefix+v.Reason)
			} else {
				v.Allow, v.Reason = true, "allowed by breakglass: "+strings.Join(j.failed, "; ")
				glassed = append(glassed, prefix+strings.Join(j.failed, "; "))
			}
		case j.pol.Mode == policy.Warn:
			v.Allow, v.Reason = true, "allow with warnings (mode warn)"
			for _, f := range j.failed {
				d.Warnings = append(d.Warnings, prefix+f)
			}
		case j.pol.Mode == policy.Audit:
			v.Allow, v.Reason = true, "allow (mode audit); would deny: "+strings.Join(j.failed, "; ")
			audits = append(audits, prefix+strings.Join(j.failed, "; "))
		default:
			v.Reason = strings.Join(j.failed, "; ")
			denials = append(denials, prefix+v.Reason)
		}
		d.Policies = append(d.Policies, *v)
	}
	switch {
	case len(denials) > 0:
		d.Allow, d.Reason = false, "deny: "+strings.Join(denials, "; ")
	case len(glassed) > 0:
		b := req.Breakglass
		d.Breakglass = fmt.Sprintf("%s (until %s)", b.Justification, g.now().Add(b.Duration).UTC().Format(time.RFC3339))
		d.Reason = "allow by breakglass: " + strings.Join(glassed, "; ")
	case len(audits) > 0:
		d.Reason = "allow (mode audit); would deny: " + strings.Join(audits, "; ")
	case len(d.Warnings) > 0:
		d.Reason = "allow with warnings (mode warn)"
	default:
		names := make([]string, 0, len(results))
		for _, j := range results {
			names = append(names, j.pol.Name)
		}
		d.Reason = "allow: every requirement of " + strings.Join(names, " and ") + " holds"
	}
	return d
}

// allFromCache reports whether every policy's requirements came from the
// cache (each cached verdict is an allow).
func allFromCache(results []judged, reused []string) bool {
	for _, j := range results {
		if len(j.failed) > 0 || j.fromCache == "" {
			return false
		}
	}
	return len(reused) > 0
}

// quarantined says why digest is denied by a quarantine, if it is: one in
// force on it, or a quarantine list that could not be read (fail closed).
func (g *Gate) quarantined(digest string) (string, bool) {
	if g.quar == nil {
		return "", false
	}
	x, err := g.quar.Digest(digest)
	switch {
	case err != nil:
		return err.Error(), true
	case x != nil:
		return quarantineReason(x), true
	}
	return "", false
}

// quarantineRevision is the revision of the quarantines in force.
func (g *Gate) quarantineRevision() int64 {
	if g.quar == nil {
		return 0
	}
	return g.quar.Revision()
}

// cacheKey keys a verdict by repository and digest, policy revision,
// key-set revision and quarantine revision: never by tag, and never across
// repositories, since evidence and key scopes belong to a repository.
func (g *Gate) cacheKey(d name.Digest, pol *policy.Policy) string {
	return fmt.Sprintf("%s|%s|%s|%s|%d|%d", d.Context().Name(), d.DigestStr(), pol.Name, pol.Revision(), g.keys.Revision(), g.quarantineRevision())
}

// allCachedAllow reports whether an unexpired allow is cached for d under
// every policy of pols.
func (g *Gate) allCachedAllow(d name.Digest, pols []*policy.Policy) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, pol := range pols {
		c, ok := g.cache[g.cacheKey(d, pol)]
		if !ok || !g.now().Before(c.expires) {
			return false
		}
	}
	return true
}

// requirements checks the policy's requirements on subj, from the cache
// when the same repository, digest, policy revision and key-set revision
// were checked lately; it then returns the decision that checked them.
// Identical concurrent checks run once. A failure to read evidence is an
// error and is not cached. decision is the id of the decision asking: an
// allow it computes is cached under it.
func (g *Gate) requirements(ctx context.Context, pol *policy.Policy, subj oci.Resolved, decision string) ([]Requirement, string, error) {
	key := g.cacheKey(subj.Digest, pol)
	g.mu.RLock()
	c, ok := g.cache[key]
	g.mu.RUnlock()
	if now := g.now(); ok && now.Before(c.expires) {
		if !g.claimRefresh(key, c, now) {
			return slices.Clone(c.reqs), c.decision, nil
		}
		// This request checks afresh; the others are served the
		// cached allow until it expires, never past.
		defer g.releaseRefresh(key)
	}
	v, err, _ := g.flight.Do(key, func() (any, error) {
		reqs, err := g.checkOrVSA(ctx, pol, subj.Digest)
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
		g.cache[key] = cached{reqs: reqs, expires: g.now().Add(g.ttl), decision: decision}
		g.mu.Unlock()
		return reqs, nil
	})
	if err != nil {
		return nil, "", err
	}
	return slices.Clone(v.([]Requirement)), "", nil
}

// claimRefresh reports whether the request holding c, an unexpired
// allow cached under key, is the one to check it afresh: the first to ask
// in the last tenth of its TTL, while no other is checking it. A verdict
// in use is thus renewed before it expires, rather than expiring under
// every request at once (which would all wait for one cold check).
// releaseRefresh MUST follow a claim.
func (g *Gate) claimRefresh(key string, c cached, now time.Time) bool {
	if c.expires.Sub(now) > g.ttl/10 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, busy := g.refreshing[key]; busy {
		return false
	}
	g.refreshing[key] = struct{}{}
	return true
}

func (g *Gate) releaseRefresh(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.refreshing, key)
}

// rejudge decides afresh whether d may run in namespace under today's
// policies, key states and quarantines, as the gate would without a
// breakglass: the quarantine first, then every covering policy's
// requirements, combined by their modes. It reads no cached verdict and
// records nothing (re-validation); evidence that cannot be read is a deny
// with the reason. It returns the outcome and the reason.
func (g *Gate) rejudge(ctx context.Context, namespace string, d name.Digest) (bool, string) {
	repo := d.Context().Name()
	if reason, ok := g.quarantined(d.DigestStr()); ok {
		return false, "deny: " + reason
	}
	pols := g.policies.Covering(namespace, repo)
	if len(pols) == 0 {
		return false, fmt.Sprintf("deny: no policy covers %s in namespace %q (the default is deny)", repo, namespace)
	}
	ctx = oci.WithReadMemo(ctx)
	results := make([]judged, 0, len(pols))
	for _, pol := range pols {
		reqs, err := g.checkOrVSA(ctx, pol, d)
		if err != nil {
			return false, "deny: could not decide: " + err.Error()
		}
		j := judged{pol: pol, reqs: reqs, verdict: PolicyVerdict{Name: pol.Name, Revision: pol.Revision(), Mode: string(pol.Mode)}}
		for _, r := range reqs {
			if !r.Pass {
				j.failed = append(j.failed, r.Name+": "+r.Reason)
			}
		}
		results = append(results, j)
	}
	out := g.combine(VerifyRequest{}, Decision{}, results)
	return out.Allow, out.Reason
}

// checkOrVSA is one requirement met by a VSA the policy accepts, if one
// is stored for d; otherwise the policy's requirements, checked in full.
func (g *Gate) checkOrVSA(ctx context.Context, pol *policy.Policy, d name.Digest) ([]Requirement, error) {
	if pol.AcceptVSA != nil {
		r, ok, _, err := g.acceptedVSA(ctx, pol, d)
		if err != nil {
			return nil, err
		}
		if ok {
			return []Requirement{r}, nil
		}
	}
	return g.check(ctx, pol, d)
}

// requestVSAs asks for a VSA of each policy d passed in full, if d is a
// fresh allow that no breakglass made.
func (g *Gate) requestVSAs(d Decision) {
	if g.vsa == nil || !d.Allow || d.Cached || d.Breakglass != "" || d.Digest == "" {
		return
	}
	dg, err := name.NewDigest(d.Image)
	if err != nil {
		return
	}
	for _, pol := range d.passed {
		g.vsa.Request(dg, pol, d.KeySetRevision)
	}
}

// check runs the policy's requirements on d, concurrently; any failure to
// read evidence fails the whole check.
func (g *Gate) check(ctx context.Context, pol *policy.Policy, d name.Digest) ([]Requirement, error) {
	n := len(pol.Attestations)
	if pol.Signatures != nil {
		n++
	}
	reqs := make([]Requirement, n)
	eg, ctx := errgroup.WithContext(ctx)
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
		rep, err := g.evidence.Signatures(ctx, d)
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
		list, err := g.evidence.Attestations(ctx, d, a.PredicateType)
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
			if !a.Accepts(at.Origin) {
				origin := at.Origin
				if origin == "" {
					origin = "unstated"
				}
				reasons = append(reasons, fmt.Sprintf("origin %s; the policy accepts only origin %s", origin, a.Origin))
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
			ok, err := pol.Eval(i, policy.Input{Predicate: pred, PredicateType: a.PredicateType, Digest: d.DigestStr(), SignedAt: signedAt, Now: g.now().UTC(), Origin: at.Origin})
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

// record logs the decision and records it. A fresh decision is recorded
// durably before it is answered: if it cannot be, the answer is an error
// (503), never an unrecorded decision. An allow served from the cache
// counts against the decision it reused, and is logged at debug level.
func (g *Gate) record(ctx context.Context, p Principal, req VerifyRequest, ref name.Reference, d Decision) (*uint64, error) {
	wouldDeny := !d.Allow || d.Breakglass != "" || len(d.Warnings) > 0 || strings.Contains(d.Reason, "would deny")
	level := slog.LevelInfo
	switch {
	case wouldDeny:
		level = slog.LevelWarn
	case d.Cached:
		// No new decision: the one it reuses was logged, and the reuse
		// is counted against it in the record.
		level = slog.LevelDebug
	}
	g.log.Log(ctx, level, "gate decision", "decision_id", d.ID, "allow", d.Allow, "image", d.Image, "digest", d.Digest,
		"policy", d.Policy, "policy_revision", d.Revision, "mode", d.Mode, "reason", d.Reason, "breakglass", d.Breakglass,
		"namespace", req.Namespace, "workload", req.WorkloadKind+"/"+req.WorkloadName, "caller", p.Name, "cached", d.Cached)
	if d.Cached {
		for _, id := range d.reusedFrom {
			g.rec.Reused(id, req.Namespace, req.WorkloadKind, req.WorkloadName)
		}
		return nil, nil
	}
	detail, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	repo := ref.Context().Name()
	var tags []string
	if t, ok := ref.(name.Tag); ok {
		tags = []string{t.TagStr()}
	}
	rec, err := g.rec.Record(ctx, Event{
		Kind: EventDecisionMade, Actor: p, Repository: repo, Digest: d.Digest, Tags: tags,
		Detail: map[string]any{"allow": d.Allow, "policy": d.Policy, "policy_revision": d.Revision, "mode": d.Mode, "key_set_revision": d.KeySetRevision,
			"namespace": req.Namespace, "workload_kind": req.WorkloadKind, "workload_name": req.WorkloadName, "breakglass": d.Breakglass, "reason": d.Reason, "decision_id": d.ID},
		Decision: &index.Decision{
			ID: d.ID, At: g.now().UTC(), Image: d.Image, Digest: d.Digest, Policy: d.Policy, Revision: d.Revision, Mode: d.Mode,
			Allowed: d.Allow, WouldDeny: wouldDeny, Breakglass: d.Breakglass, Caller: p.Name, Detail: string(detail),
			Repository: repo, Namespace: req.Namespace, WorkloadKind: req.WorkloadKind, WorkloadName: req.WorkloadName, RequestID: RequestID(ctx),
		},
	})
	return rec.FirstLogIndex(), err
}
