package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

type replayIndex interface {
	SearchDecisions(ctx context.Context, f index.DecisionFilter) ([]index.Decision, error)
	ReusesOf(ctx context.Context, ids []string) (map[string][]index.Reuse, error)
}

// Replay re-judges recorded gate decisions with a candidate policy,
// against the evidence now in the registry, and reports which would flip
// and why. It changes nothing: no decision, event or cached verdict is
// written, and the candidate is not loaded.
type Replay struct {
	gate    *Gate
	index   replayIndex
	timeout time.Duration
	// maxDecisions and maxSubjects bound one replay: the decisions read
	// from the window, and the images judged again.
	maxDecisions, maxSubjects int
}

// NewReplay returns the replay service: gate judges (its requirement
// checks, without its cache or record), ix lists the recorded decisions.
// timeout bounds the reading of one subject's evidence.
func NewReplay(gate *Gate, ix replayIndex, timeout time.Duration) *Replay {
	return &Replay{gate: gate, index: ix, timeout: timeout, maxDecisions: maxReplayDecisions, maxSubjects: maxReplaySubjects}
}

// Bounds of one replay.
const (
	maxReplayDecisions = 10_000
	maxReplaySubjects  = 500
)

// ReplayRequest is a candidate policy document (YAML) and a window.
type ReplayRequest struct {
	Policy       []byte
	Since, Until time.Time
}

// ReplayReport says what the candidate would have decided.
type ReplayReport struct {
	Policy, Revision, Mode string
	Since, Until           time.Time
	KeySetRevision         int64
	// Decisions counts the decisions recorded in the window; Judged those
	// the candidate covers (its images, and its namespaces for admission),
	// over Subjects distinct repository and digest pairs.
	Decisions, Judged, Subjects int
	// Unchanged counts judged decisions whose outcome would stay.
	Unchanged int
	// Flips are the decisions whose outcome would change, oldest first.
	Flips []ReplayFlip
}

// ReplayFlip is one decision the candidate would decide the other way.
type ReplayFlip struct {
	Decision DecisionRecord
	// Allow is the candidate's outcome (the recorded one is Decision.Allowed).
	Allow bool
	// Reasons are the candidate's failed requirements, with why.
	Reasons      []string
	Requirements []Requirement
}

// Replay runs req (roles auditor, admin): each recorded decision in the
// window whose image the candidate covers is judged again. A decision
// named by policy (POST /v1/verify) is judged whatever its namespace; an
// admission only if the candidate covers its namespace. Evidence that
// cannot be read is a deny with the reason, as at the gate. CEL conditions
// see now as the time.
func (r *Replay) Replay(ctx context.Context, p Principal, req ReplayRequest) (ReplayReport, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return ReplayReport{}, err
	}
	pol, err := policy.Parse(req.Policy)
	if err != nil {
		return ReplayReport{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if req.Since.IsZero() {
		return ReplayReport{}, fmt.Errorf("%w: give the window's start (since)", ErrInvalid)
	}
	if req.Until.IsZero() {
		req.Until = r.gate.now().UTC()
	}
	if err := checkWindow(req.Since, req.Until); err != nil {
		return ReplayReport{}, err
	}
	rep := ReplayReport{Policy: pol.Name, Revision: pol.Revision(), Mode: string(pol.Mode), Since: req.Since.UTC(), Until: req.Until.UTC(), Flips: []ReplayFlip{}}

	var all []index.Decision
	f := index.DecisionFilter{Since: req.Since, Until: req.Until, Limit: 1000}
	for {
		page, err := r.index.SearchDecisions(ctx, f)
		if err != nil {
			return ReplayReport{}, fmt.Errorf("%w: read decisions: %w", ErrUnavailable, err)
		}
		all = append(all, page...)
		if len(all) > r.maxDecisions {
			return ReplayReport{}, fmt.Errorf("%w: more than %d decisions in the window: narrow it", ErrInvalid, r.maxDecisions)
		}
		if len(page) < f.Limit {
			break
		}
		f.AfterAt, f.AfterID = page[len(page)-1].At, page[len(page)-1].ID
	}
	rep.Decisions = len(all)

	type verdict struct {
		reqs []Requirement
		err  error
	}
	judged := map[string]*verdict{}
	var covered []index.Decision
	var subjects []name.Digest
	for _, d := range all {
		ref, ok := r.subject(d)
		if !ok || !pol.CoversImage(ref.Context().Name()) || (d.Namespace != "" && !pol.CoversNamespace(d.Namespace)) {
			continue
		}
		covered = append(covered, d)
		if _, ok := judged[ref.String()]; !ok {
			judged[ref.String()] = nil
			subjects = append(subjects, ref)
		}
	}
	if len(subjects) > r.maxSubjects {
		return ReplayReport{}, fmt.Errorf("%w: the window holds %d images the candidate covers, more than %d: narrow it", ErrInvalid, len(subjects), r.maxSubjects)
	}
	rep.Judged, rep.Subjects = len(covered), len(subjects)
	rep.KeySetRevision = r.gate.keys.Revision()
	for _, d := range subjects {
		if err := ctx.Err(); err != nil {
			return ReplayReport{}, fmt.Errorf("%w: replay: %w", ErrUnavailable, err)
		}
		cctx, cancel := context.WithTimeout(oci.WithReadMemo(ctx), r.timeout)
		reqs, err := r.gate.check(cctx, pol, d)
		cancel()
		judged[d.String()] = &verdict{reqs: reqs, err: err}
	}

	var flipped []index.Decision
	var flips []ReplayFlip
	for _, d := range covered {
		ref, _ := r.subject(d)
		v := judged[ref.String()]
		f := ReplayFlip{Allow: true, Requirements: v.reqs}
		if v.err != nil {
			f.Allow, f.Reasons = false, []string{"could not decide: " + v.err.Error()}
		}
		for _, q := range v.reqs {
			if !q.Pass {
				f.Reasons = append(f.Reasons, q.Name+": "+q.Reason)
			}
		}
		if len(f.Reasons) > 0 && v.err == nil && pol.Mode == policy.Enforce {
			f.Allow = false
		}
		if f.Allow == d.Allowed {
			rep.Unchanged++
			continue
		}
		flipped = append(flipped, d)
		flips = append(flips, f)
	}
	recs, err := decisionRecords(ctx, r.index, flipped)
	if err != nil {
		return ReplayReport{}, err
	}
	for i := range flips {
		flips[i].Decision = recs[i]
	}
	rep.Flips = append(rep.Flips, flips...)
	return rep, nil
}

// subject is the repository and digest a decision judged; decisions made
// before a digest was known (a tag that did not resolve) have none.
func (r *Replay) subject(d index.Decision) (name.Digest, bool) {
	if d.Digest == "" {
		return name.Digest{}, false
	}
	repo := d.Repository
	if repo == "" { // decisions from before the record kept it
		repo, _, _ = strings.Cut(d.Image, "@")
	}
	ref, err := r.gate.resolve.Parse(repo + "@" + d.Digest)
	if err != nil {
		return name.Digest{}, false
	}
	dg, ok := ref.(name.Digest)
	return dg, ok
}
