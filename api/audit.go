package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
)

// queryLimit reads the limit parameter; 0 when absent.
func queryLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "limit: want a number")
	}
	return n, nil
}

// queryBool reads a true/false parameter; nil when absent.
func queryBool(c echo.Context, name string) (*bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest, name+": want true or false")
	}
	return &b, nil
}

func queryWindow(c echo.Context) (since, until time.Time, err error) {
	if since, err = queryTime(c, "since"); err != nil {
		return
	}
	until, err = queryTime(c, "until")
	return
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func wireAdmissions(as []service.Admitted) []wire.Admission {
	out := make([]wire.Admission, 0, len(as))
	for _, a := range as {
		out = append(out, wire.Admission{Digest: a.Digest, Namespace: a.Namespace, WorkloadKind: a.WorkloadKind, WorkloadName: a.WorkloadName,
			First: a.First, Last: a.Last, Count: a.Count, Breakglass: a.Breakglass})
	}
	return out
}

func wireDecision(d service.DecisionRecord) wire.DecisionRecord {
	w := wire.DecisionRecord{ID: d.ID, At: d.At, Image: d.Image, Digest: d.Digest, Repository: d.Repository, Policy: d.Policy, Revision: d.Revision,
		Mode: d.Mode, Allowed: d.Allowed, WouldDeny: d.WouldDeny, Breakglass: d.Breakglass, Caller: d.Caller, Namespace: d.Namespace,
		WorkloadKind: d.WorkloadKind, WorkloadName: d.WorkloadName, RequestID: d.RequestID, Reason: d.Reason}
	for _, r := range d.Requirements {
		w.Requirements = append(w.Requirements, wire.Requirement{Policy: r.Policy, Name: r.Name, Pass: r.Pass, Reason: r.Reason})
	}
	for _, r := range d.Reuses {
		w.Reuses = append(w.Reuses, wire.Admission{Namespace: r.Namespace, WorkloadKind: r.WorkloadKind, WorkloadName: r.WorkloadName, First: r.First, Last: r.Last, Count: r.Count})
	}
	return w
}

func wirePackage(p index.Package) wire.Package {
	return wire.Package{PURL: p.PURL, Type: p.Type, Namespace: p.Namespace, Name: p.Name, Version: p.Version, Licenses: p.Licenses}
}

func artifactReport(r *service.Reports) echo.HandlerFunc {
	return func(c echo.Context) error {
		rep, err := r.Artifact(c.Request().Context(), principal(c), service.ReportQuery{Digest: c.Param("digest"), Repository: c.QueryParam("repository")})
		if err != nil {
			return err
		}
		out := wire.ArtifactReport{Digest: rep.Digest, KeySetRevision: rep.KeySetRevision, Notes: rep.Notes,
			Repositories: []wire.RepositorySeen{}, Writes: []wire.ArtifactWrite{}, Signatures: []wire.ReportSignature{}, Attestations: []wire.ReportAttestation{},
			Provenance: []wire.ReportProvenance{}, SBOMs: []wire.ReportSBOM{}, Vulnerabilities: []wire.ReportVulnerabilities{}, Decisions: []wire.DecisionRecord{},
			Admissions: wireAdmissions(rep.Admissions)}
		for _, x := range rep.Repositories {
			out.Repositories = append(out.Repositories, wire.RepositorySeen{Repository: x.Repository, Tags: x.Tags, FirstSeen: timePtr(x.FirstAt)})
		}
		for _, w := range rep.Writes {
			out.Writes = append(out.Writes, wire.ArtifactWrite{Kind: w.Kind, Actor: w.Actor, Repository: w.Repository, Tags: w.Tags, At: w.At, RequestID: w.RequestID})
		}
		for _, s := range rep.Signatures {
			out.Signatures = append(out.Signatures, wire.ReportSignature{Repository: s.Repository, Format: s.Format, Ref: s.Ref, KeyID: s.KeyID, KeyName: s.KeyName,
				KeyVersion: s.KeyVersion, SignedAt: s.SignedAt, Signer: s.Signer, Valid: s.Valid, Reason: s.Reason})
		}
		for _, a := range rep.Attestations {
			out.Attestations = append(out.Attestations, wire.ReportAttestation{Repository: a.Repository, Format: a.Format, Ref: a.Ref, PredicateType: a.PredicateType,
				KeyID: a.KeyID, KeyName: a.KeyName, KeyVersion: a.KeyVersion, SignedAt: a.SignedAt, Origin: a.Origin, Signer: a.Signer, Valid: a.Valid, Reason: a.Reason})
		}
		for _, p := range rep.Provenance {
			out.Provenance = append(out.Provenance, wire.ReportProvenance{SourceRepo: p.SourceRepo, Commit: p.Commit, Ref: p.Ref, Builder: p.Builder, BuildType: p.BuildType,
				ReportedBuildType: p.ReportedBuildType, Invocation: p.Invocation, StartedOn: p.StartedOn, FinishedOn: p.FinishedOn, Evidence: wire.EvidenceOf(p.EvidenceOf)})
		}
		for _, s := range rep.SBOMs {
			out.SBOMs = append(out.SBOMs, wire.ReportSBOM{Format: s.Format, Packages: s.Packages, Evidence: wire.EvidenceOf(s.EvidenceOf)})
		}
		for _, v := range rep.Vulnerabilities {
			out.Vulnerabilities = append(out.Vulnerabilities, wire.ReportVulnerabilities{Scanner: v.Scanner, ScannedAt: v.ScannedAt, Statements: v.Statements,
				Affected: v.Affected, Evidence: wire.EvidenceOf(v.EvidenceOf)})
		}
		for _, d := range rep.Decisions {
			out.Decisions = append(out.Decisions, wireDecision(d))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func searchArtifacts(s *service.Search) echo.HandlerFunc {
	return func(c echo.Context) error {
		q := service.ArtifactSearch{Repository: c.QueryParam("repository"), SourceRepo: c.QueryParam("source_repo"), Commit: c.QueryParam("commit"),
			SignedBy: c.QueryParam("signed_by"), Key: c.QueryParam("key"), PredicateType: c.QueryParam("predicate_type"), Cursor: c.QueryParam("cursor")}
		var err error
		if q.Since, q.Until, err = queryWindow(c); err != nil {
			return err
		}
		if q.Limit, err = queryLimit(c); err != nil {
			return err
		}
		page, err := s.Artifacts(c.Request().Context(), principal(c), q)
		if err != nil {
			return err
		}
		out := wire.ArtifactsResponse{Artifacts: []wire.ArtifactSummary{}, NextCursor: page.Next}
		for _, a := range page.Artifacts {
			w := wire.ArtifactSummary{Repository: a.Repository, Digest: a.Digest, FirstSeen: a.FirstAt}
			for _, p := range a.Provenance {
				w.Provenance = append(w.Provenance, wire.ProvenanceFact{SourceRepo: p.SourceRepo, Commit: p.Commit, Builder: p.Builder, BuildType: p.BuildType})
			}
			out.Artifacts = append(out.Artifacts, w)
		}
		return c.JSON(http.StatusOK, out)
	}
}

func searchDecisions(s *service.Search) echo.HandlerFunc {
	return func(c echo.Context) error {
		q := service.DecisionSearch{Digest: c.QueryParam("digest"), Namespace: c.QueryParam("namespace"), Policy: c.QueryParam("policy"), Cursor: c.QueryParam("cursor")}
		var err error
		if q.Allowed, err = queryBool(c, "allowed"); err != nil {
			return err
		}
		if q.Breakglass, err = queryBool(c, "breakglass"); err != nil {
			return err
		}
		if q.Since, q.Until, err = queryWindow(c); err != nil {
			return err
		}
		if q.Limit, err = queryLimit(c); err != nil {
			return err
		}
		page, err := s.Decisions(c.Request().Context(), principal(c), q)
		if err != nil {
			return err
		}
		out := wire.DecisionsResponse{Decisions: []wire.DecisionRecord{}, NextCursor: page.Next}
		for _, d := range page.Decisions {
			out.Decisions = append(out.Decisions, wireDecision(d))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func findPackages(p *service.Packages) echo.HandlerFunc {
	return func(c echo.Context) error {
		q := service.PackageQuery{PURL: c.QueryParam("purl"), Name: c.QueryParam("name"), Type: c.QueryParam("type"), Range: c.QueryParam("range"),
			License: c.QueryParam("license"), Cursor: c.QueryParam("cursor")}
		var err error
		if q.Limit, err = queryLimit(c); err != nil {
			return err
		}
		page, err := p.Find(c.Request().Context(), principal(c), q)
		if err != nil {
			return err
		}
		out := wire.PackagesResponse{Range: page.Range, Matches: []wire.PackageMatch{}, NextCursor: page.Next}
		for _, m := range page.Matches {
			w := wire.PackageMatch{Repository: m.Repository, Digest: m.Digest, FirstSeen: m.FirstAt, More: m.More, Packages: []wire.Package{}, Admissions: wireAdmissions(m.Admissions)}
			for _, pk := range m.Packages {
				w.Packages = append(w.Packages, wirePackage(pk))
			}
			out.Matches = append(out.Matches, w)
		}
		return c.JSON(http.StatusOK, out)
	}
}

func outcome(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

func replayPolicy(r *service.Replay) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.ReplayRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		sr := service.ReplayRequest{Policy: []byte(req.Policy), Since: req.Since}
		if req.Until != nil {
			sr.Until = *req.Until
		}
		rep, err := r.Replay(c.Request().Context(), principal(c), sr)
		if err != nil {
			return err
		}
		out := wire.ReplayReport{Policy: rep.Policy, Revision: rep.Revision, Mode: rep.Mode, Since: rep.Since, Until: rep.Until, KeySetRevision: rep.KeySetRevision,
			Decisions: rep.Decisions, Judged: rep.Judged, Subjects: rep.Subjects, Unchanged: rep.Unchanged, Flips: []wire.ReplayFlip{}}
		for _, f := range rep.Flips {
			w := wire.ReplayFlip{Decision: wireDecision(f.Decision), Recorded: outcome(f.Decision.Allowed), Candidate: outcome(f.Allow), Reasons: f.Reasons}
			for _, q := range f.Requirements {
				w.Requirements = append(w.Requirements, wire.Requirement{Name: q.Name, Pass: q.Pass, Reason: q.Reason})
			}
			out.Flips = append(out.Flips, w)
		}
		return c.JSON(http.StatusOK, out)
	}
}
