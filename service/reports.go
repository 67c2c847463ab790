package service

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/sbom/inventory"
	"github.com/attestd/attestd/storage/index"
)

// artifactRecord is what the record holds about artifacts.
type artifactRecord interface {
	ArtifactsByDigest(ctx context.Context, digest string) ([]index.Artifact, error)
	Events(ctx context.Context, f index.EventFilter) ([]index.Event, error)
	EvidenceRows(ctx context.Context, f index.EvidenceFilter) ([]index.Evidence, error)
}

// decisionRecord is what the record holds about gate decisions.
type decisionRecord interface {
	DecisionsFor(ctx context.Context, digest string, limit int) ([]index.Decision, error)
	ReusesOf(ctx context.Context, ids []string) (map[string][]index.Reuse, error)
	Admissions(ctx context.Context, digests []string) ([]index.Admission, error)
}

// Reports answers an auditor's "everything about this digest": the record
// (who uploaded, registered, signed and attested it, its decisions and
// where it was admitted) and the evidence in the registry, read and
// verified now through Evidence, under today's key states.
type Reports struct {
	parse     resolver
	evidence  *Evidence
	artifacts artifactRecord
	decisions decisionRecord
}

// NewReports returns the artifact report service.
func NewReports(r resolver, ev *Evidence, artifacts artifactRecord, decisions decisionRecord) *Reports {
	return &Reports{parse: r, evidence: ev, artifacts: artifacts, decisions: decisions}
}

// Bounds of one report.
const (
	maxReportEvents    = 1000
	maxReportDecisions = 200
	maxReportRepos     = 16
)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ReportQuery names the artifact: a digest, and the repository to read
// evidence in ("" for every repository the record knows the digest in).
type ReportQuery struct {
	Digest, Repository string
}

// ArtifactReport is everything known about a digest.
type ArtifactReport struct {
	Digest         string
	KeySetRevision int64
	Repositories   []RepositorySeen
	// Writes are the uploads and registrations of the digest.
	Writes          []Write
	Signatures      []ReportSignature
	Attestations    []ReportAttestation
	Provenance      []ReportProvenance
	SBOMs           []ReportSBOM
	Vulnerabilities []ReportVulnerabilities
	Decisions       []DecisionRecord
	Admissions      []Admitted
	// Notes say what the report could not include.
	Notes []string
}

// RepositorySeen is a repository the digest is in, with the tags events
// named it by.
type RepositorySeen struct {
	Repository string
	Tags       []string
	FirstAt    time.Time
}

// Write is an upload or registration of the digest.
type Write struct {
	Kind, Actor, Repository, RequestID string
	Tags                               []string
	At                                 time.Time
}

// ReportSignature is a stored image signature, verified now; Signer is the
// actor whose request wrote it, from the record.
type ReportSignature struct {
	Repository string
	SignatureCheck
	Signer string
}

// ReportAttestation is a stored attestation, verified now.
type ReportAttestation struct {
	Repository    string
	Format, Ref   string
	PredicateType string
	KeyID         string
	KeyName       string
	KeyVersion    string
	SignedAt      *time.Time
	Origin        string
	Valid         bool
	Reason        string
	Signer        string
}

// EvidenceOf says which attestation a summary was read from: the best
// copy's verdict, and every copy's location.
type EvidenceOf struct {
	Repository    string
	PredicateType string
	Origin        string
	KeyName       string
	KeyVersion    string
	SignedAt      *time.Time
	Signer        string
	Valid         bool
	Locations     []string
}

// ReportProvenance is what a provenance attestation says.
type ReportProvenance struct {
	attest.Provenance
	EvidenceOf
}

// ReportSBOM is an SBOM attestation in brief.
type ReportSBOM struct {
	Format   string
	Packages int
	EvidenceOf
}

// ReportVulnerabilities is a vulnerability scan or VEX document in brief.
type ReportVulnerabilities struct {
	attest.Vulnerabilities
	EvidenceOf
}

// Admitted is where a digest was admitted (the admission inventory):
// namespace and workload, the first and last time, how many allows.
type Admitted struct {
	Digest                                string
	Namespace, WorkloadKind, WorkloadName string
	First, Last                           time.Time
	Count                                 int64
	Breakglass                            bool
}

func admissions(as []index.Admission) []Admitted {
	out := make([]Admitted, 0, len(as))
	for _, a := range as {
		out = append(out, Admitted(a))
	}
	return out
}

// DecisionRecord is a recorded gate decision.
type DecisionRecord struct {
	index.Decision
	// Reason and Requirements are read from the recorded decision.
	Reason       string
	Requirements []Requirement
	// Reuses are the allows served again from this decision's verdict.
	Reuses []index.Reuse
}

type reuseReader interface {
	ReusesOf(ctx context.Context, ids []string) (map[string][]index.Reuse, error)
}

func decisionRecords(ctx context.Context, dr reuseReader, ds []index.Decision) ([]DecisionRecord, error) {
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	reuses, err := dr.ReusesOf(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("%w: read decisions: %w", ErrUnavailable, err)
	}
	out := make([]DecisionRecord, 0, len(ds))
	for _, d := range ds {
		r := DecisionRecord{Decision: d, Reuses: reuses[d.ID]}
		var detail struct {
			Reason       string        `json:"reason"`
			Requirements []Requirement `json:"requirements"`
		}
		if json.Unmarshal([]byte(d.Detail), &detail) == nil {
			r.Reason, r.Requirements = detail.Reason, detail.Requirements
		}
		r.Detail = ""
		out = append(out, r)
	}
	return out, nil
}

// checkDigest checks a digest given by a caller.
func checkDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("%w: digest %q: want sha256:<64 hex digits>", ErrInvalid, d)
	}
	return nil
}

// Artifact reports everything known about a digest (roles auditor, admin).
// Evidence is read from the registry and verified now; a registry that
// cannot be read makes the report fail (503), never a report without it.
func (r *Reports) Artifact(ctx context.Context, p Principal, q ReportQuery) (ArtifactReport, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return ArtifactReport{}, err
	}
	if err := checkDigest(q.Digest); err != nil {
		return ArtifactReport{}, err
	}
	rep := ArtifactReport{Digest: q.Digest}
	known, err := r.artifacts.ArtifactsByDigest(ctx, q.Digest)
	if err != nil {
		return ArtifactReport{}, fmt.Errorf("%w: read artifacts: %w", ErrUnavailable, err)
	}
	repos := []string{}
	first := map[string]time.Time{}
	for _, a := range known {
		repos, first[a.Repository] = append(repos, a.Repository), a.FirstAt
	}
	if q.Repository != "" {
		ref, err := r.parse.Parse(q.Repository + "@" + q.Digest)
		if err != nil {
			return ArtifactReport{}, registryErr(err)
		}
		repos = []string{ref.Context().Name()}
	}
	if len(repos) == 0 {
		return ArtifactReport{}, fmt.Errorf("%w: nothing is recorded about %s; give its repository to read the registry", ErrNotFound, q.Digest)
	}
	if len(repos) > maxReportRepos {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the digest is in %d repositories; the first %d are read", len(repos), maxReportRepos))
		repos = repos[:maxReportRepos]
	}

	// The record: events name who wrote what; evidence rows tie each copy
	// in the registry to the event that wrote it.
	evs, err := r.artifacts.Events(ctx, index.EventFilter{Digest: q.Digest, Limit: maxReportEvents})
	if err != nil {
		return ArtifactReport{}, fmt.Errorf("%w: read events: %w", ErrUnavailable, err)
	}
	if len(evs) == maxReportEvents {
		rep.Notes = append(rep.Notes, fmt.Sprintf("more than %d events: the first %d are read (attestctl audit events --digest lists all)", maxReportEvents, maxReportEvents))
	}
	byID := map[string]index.Event{}
	tags := map[string][]string{}
	for _, e := range evs {
		byID[e.ID] = e
		for _, t := range e.Tags {
			if !slices.Contains(tags[e.Repository], t) {
				tags[e.Repository] = append(tags[e.Repository], t)
			}
		}
		if e.Kind == EventArtifactUploaded || e.Kind == EventArtifactRegistered {
			rep.Writes = append(rep.Writes, Write{Kind: e.Kind, Actor: actorName(e), Repository: e.Repository, RequestID: e.RequestID, Tags: e.Tags, At: e.At})
		}
	}
	rows, err := r.artifacts.EvidenceRows(ctx, index.EvidenceFilter{Digest: q.Digest})
	if err != nil {
		return ArtifactReport{}, fmt.Errorf("%w: read evidence rows: %w", ErrUnavailable, err)
	}
	signer := map[string]string{}
	for _, x := range rows {
		if e, ok := byID[x.EventID]; ok {
			signer[x.Repository+"|"+x.Format+"|"+x.Content] = actorName(e)
		}
	}

	// The registry: every copy, verified now.
	summaries := map[[32]byte]summaryAt{}
	for _, repo := range repos {
		rep.Repositories = append(rep.Repositories, RepositorySeen{Repository: repo, Tags: tags[repo], FirstAt: first[repo]})
		ref, err := r.parse.Parse(repo + "@" + q.Digest)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: not read: %v", repo, err))
			continue
		}
		d, ok := ref.(name.Digest)
		if !ok {
			return ArtifactReport{}, fmt.Errorf("%w: %s is not a digest reference", ErrInvalid, ref)
		}
		sigs, err := r.evidence.Signatures(ctx, d)
		if err != nil {
			return ArtifactReport{}, fmt.Errorf("read signatures in %s: %w", repo, err)
		}
		rep.KeySetRevision = sigs.KeySetRevision
		for _, c := range sigs.Signatures {
			rep.Signatures = append(rep.Signatures, ReportSignature{Repository: repo, SignatureCheck: c, Signer: signer[repo+"|"+c.Format+"|"+c.Content]})
		}
		atts, err := r.evidence.Attestations(ctx, d, "")
		if err != nil {
			return ArtifactReport{}, fmt.Errorf("read attestations in %s: %w", repo, err)
		}
		for _, a := range atts.Attestations {
			who := signer[repo+"|"+a.Format+"|"+a.Content]
			rep.Attestations = append(rep.Attestations, ReportAttestation{Repository: repo, Format: a.Format, Ref: a.Ref, PredicateType: a.PredicateType,
				KeyID: a.KeyID, KeyName: a.KeyName, KeyVersion: a.KeyVersion, SignedAt: a.SignedAt, Origin: a.Origin, Valid: a.Valid, Reason: a.Reason, Signer: who})
			if a.statement == nil {
				continue // no key verifies it: it says nothing
			}
			rep.summarize(summaries, repo, a, who)
		}
	}

	ds, err := r.decisions.DecisionsFor(ctx, q.Digest, maxReportDecisions)
	if err != nil {
		return ArtifactReport{}, fmt.Errorf("%w: read decisions: %w", ErrUnavailable, err)
	}
	if len(ds) == maxReportDecisions {
		rep.Notes = append(rep.Notes, fmt.Sprintf("more than %d decisions: the newest %d are listed (attestctl audit decisions --digest lists all)", maxReportDecisions, maxReportDecisions))
	}
	if rep.Decisions, err = decisionRecords(ctx, r.decisions, ds); err != nil {
		return ArtifactReport{}, err
	}
	ad, err := r.decisions.Admissions(ctx, []string{q.Digest})
	if err != nil {
		return ArtifactReport{}, fmt.Errorf("%w: read admissions: %w", ErrUnavailable, err)
	}
	rep.Admissions = admissions(ad)
	return rep, nil
}

// summaryAt says where in the report a summary is.
type summaryAt struct {
	kind byte // 'p'rovenance, 's'bom, 'v'ulnerabilities
	i    int
}

func (rep *ArtifactReport) summaryOf(at summaryAt) *EvidenceOf {
	switch at.kind {
	case 'p':
		return &rep.Provenance[at.i].EvidenceOf
	case 's':
		return &rep.SBOMs[at.i].EvidenceOf
	}
	return &rep.Vulnerabilities[at.i].EvidenceOf
}

// summarize adds what a verified attestation says to the report, once per
// repository, predicate type and content: its other copies add their
// locations, and the verdict is the best copy's.
func (rep *ArtifactReport) summarize(seen map[[32]byte]summaryAt, repo string, a Attestation, who string) {
	st := a.statement
	k := sha256.Sum256([]byte(repo + "\n" + st.PredicateType + "\n" + string(st.Predicate)))
	if at, ok := seen[k]; ok {
		e := rep.summaryOf(at)
		e.Locations = append(e.Locations, a.Format+" "+a.Ref)
		if a.Valid && !e.Valid {
			e.Valid, e.KeyName, e.KeyVersion, e.SignedAt = true, a.KeyName, a.KeyVersion, a.SignedAt
		}
		return
	}
	ev := EvidenceOf{Repository: repo, PredicateType: st.PredicateType, Origin: a.Origin, KeyName: a.KeyName, KeyVersion: a.KeyVersion,
		SignedAt: a.SignedAt, Signer: who, Valid: a.Valid, Locations: []string{a.Format + " " + a.Ref}}
	if p, ok := attest.SummarizeProvenance(st.PredicateType, st.Predicate); ok {
		rep.Provenance = append(rep.Provenance, ReportProvenance{Provenance: p, EvidenceOf: ev})
		seen[k] = summaryAt{'p', len(rep.Provenance) - 1}
		return
	}
	if inventory.IsSBOM(st.PredicateType) {
		s := ReportSBOM{EvidenceOf: ev, Packages: -1}
		if doc, err := inventory.Read(st.PredicateType, st.Predicate); err == nil {
			s.Format, s.Packages = doc.Format, len(doc.Packages)
		} else {
			rep.Notes = append(rep.Notes, fmt.Sprintf("an SBOM in %s does not read: %v", repo, err))
		}
		rep.SBOMs = append(rep.SBOMs, s)
		seen[k] = summaryAt{'s', len(rep.SBOMs) - 1}
		return
	}
	if v, ok := attest.SummarizeVulnerabilities(st.PredicateType, st.Predicate); ok {
		rep.Vulnerabilities = append(rep.Vulnerabilities, ReportVulnerabilities{Vulnerabilities: v, EvidenceOf: ev})
		seen[k] = summaryAt{'v', len(rep.Vulnerabilities) - 1}
	}
}

func actorName(e index.Event) string {
	if e.ActorName != "" {
		return e.ActorName
	}
	if e.ActorID != "" {
		return e.ActorID
	}
	return e.ActorKind
}
