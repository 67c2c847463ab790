package attest

import (
	"encoding/json"
	"strings"
)

// Provenance is what a SLSA provenance predicate says about a build, for
// auditors and the artifact index: where the source came from, who built it
// and how. Fields the predicate does not give are empty.
type Provenance struct {
	SourceRepo string `json:"source_repo,omitempty"`
	Commit     string `json:"commit,omitempty"`
	Ref        string `json:"ref,omitempty"`
	Builder    string `json:"builder,omitempty"`
	BuildType  string `json:"build_type,omitempty"`
	// ReportedBuildType is the build type CI reported, in the provenance
	// attestd writes (BuildType is then attestd's ci-report type).
	ReportedBuildType string `json:"reported_build_type,omitempty"`
	Invocation        string `json:"invocation,omitempty"`
	StartedOn         string `json:"started_on,omitempty"`
	FinishedOn        string `json:"finished_on,omitempty"`
}

// SummarizeProvenance reads a SLSA provenance v1 or v0.2 predicate. It
// reports false for any other type, or a predicate that is not a JSON
// object. It reads what the predicate says; it checks nothing, so it MUST be
// given only predicates that verified.
func SummarizeProvenance(predicateType string, predicate []byte) (Provenance, bool) {
	switch predicateType {
	case PredicateSLSAProvenanceV1:
		return slsa1Summary(predicate)
	case PredicateSLSAProvenanceV02:
		return slsa02Summary(predicate)
	}
	return Provenance{}, false
}

type slsaDep struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest"`
}

func slsa1Summary(b []byte) (Provenance, bool) {
	var p struct {
		BuildDefinition struct {
			BuildType          string                     `json:"buildType"`
			ExternalParameters map[string]json.RawMessage `json:"externalParameters"`
			Resolved           []slsaDep                  `json:"resolvedDependencies"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
			Metadata struct {
				InvocationID string `json:"invocationId"`
				StartedOn    string `json:"startedOn"`
				FinishedOn   string `json:"finishedOn"`
			} `json:"metadata"`
		} `json:"runDetails"`
	}
	if json.Unmarshal(b, &p) != nil {
		return Provenance{}, false
	}
	out := Provenance{
		Builder: p.RunDetails.Builder.ID, BuildType: p.BuildDefinition.BuildType, Invocation: p.RunDetails.Metadata.InvocationID,
		StartedOn: p.RunDetails.Metadata.StartedOn, FinishedOn: p.RunDetails.Metadata.FinishedOn,
	}
	ext := p.BuildDefinition.ExternalParameters
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(ext[k], &s)
		return s
	}
	// attestd's own provenance: {"source": {"repository", "commit", "ref"}, "buildType"}.
	var src struct {
		Repository, Commit, Ref, URI string
	}
	if json.Unmarshal(ext["source"], &src) == nil {
		out.SourceRepo, out.Commit, out.Ref = first(src.Repository, src.URI), src.Commit, src.Ref
	} else {
		out.SourceRepo = str("source")
	}
	out.ReportedBuildType = str("buildType")
	// GitHub Actions: {"workflow": {"repository", "ref"}}.
	var wf struct{ Repository, Ref string }
	if json.Unmarshal(ext["workflow"], &wf) == nil {
		out.SourceRepo, out.Ref = first(out.SourceRepo, wf.Repository), first(out.Ref, wf.Ref)
	}
	out.SourceRepo, out.Ref = first(out.SourceRepo, str("repository")), first(out.Ref, str("ref"))
	// The first resolved dependency is the source, by convention.
	if len(p.BuildDefinition.Resolved) > 0 {
		d := p.BuildDefinition.Resolved[0]
		repo, ref := splitGitURI(d.URI)
		out.SourceRepo, out.Ref = first(out.SourceRepo, repo), first(out.Ref, ref)
		out.Commit = first(out.Commit, d.Digest["gitCommit"], d.Digest["sha1"])
	}
	return out, true
}

func slsa02Summary(b []byte) (Provenance, bool) {
	var p struct {
		Builder struct {
			ID string `json:"id"`
		} `json:"builder"`
		BuildType  string `json:"buildType"`
		Invocation struct {
			ConfigSource struct {
				URI        string            `json:"uri"`
				Digest     map[string]string `json:"digest"`
				EntryPoint string            `json:"entryPoint"`
			} `json:"configSource"`
		} `json:"invocation"`
		Metadata struct {
			InvocationID string `json:"buildInvocationId"`
			StartedOn    string `json:"buildStartedOn"`
			FinishedOn   string `json:"buildFinishedOn"`
		} `json:"metadata"`
		Materials []slsaDep `json:"materials"`
	}
	if json.Unmarshal(b, &p) != nil {
		return Provenance{}, false
	}
	cs := p.Invocation.ConfigSource
	repo, ref := splitGitURI(cs.URI)
	out := Provenance{SourceRepo: repo, Ref: ref, Commit: first(cs.Digest["sha1"], cs.Digest["gitCommit"]), Builder: p.Builder.ID, BuildType: p.BuildType,
		Invocation: p.Metadata.InvocationID, StartedOn: p.Metadata.StartedOn, FinishedOn: p.Metadata.FinishedOn}
	if len(p.Materials) > 0 {
		r, f := splitGitURI(p.Materials[0].URI)
		out.SourceRepo, out.Ref = first(out.SourceRepo, r), first(out.Ref, f)
		out.Commit = first(out.Commit, p.Materials[0].Digest["sha1"], p.Materials[0].Digest["gitCommit"])
	}
	return out, true
}

// splitGitURI turns "git+https://host/repo@refs/heads/main" into the
// repository URL and the ref.
func splitGitURI(u string) (repo, ref string) {
	u = strings.TrimPrefix(u, "git+")
	if i := strings.LastIndex(u, "@"); i > strings.Index(u, "://")+2 && i >= 0 {
		return u[:i], u[i+1:]
	}
	return u, ""
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Vulnerabilities is what a vulnerability scan (cosign vuln) or a VEX
// document (OpenVEX) says, in brief.
type Vulnerabilities struct {
	Scanner   string `json:"scanner,omitempty"`
	ScannedAt string `json:"scanned_at,omitempty"`
	// Statements counts OpenVEX statements; Affected those whose status is
	// affected.
	Statements int `json:"statements,omitempty"`
	Affected   int `json:"affected,omitempty"`
}

// SummarizeVulnerabilities reads a cosign vuln or OpenVEX predicate; it
// reports false for any other type. Like SummarizeProvenance it checks
// nothing.
func SummarizeVulnerabilities(predicateType string, predicate []byte) (Vulnerabilities, bool) {
	switch {
	case predicateType == PredicateCosignVuln:
		var v struct {
			Scanner struct {
				URI     string `json:"uri"`
				Version string `json:"version"`
			} `json:"scanner"`
			Metadata struct {
				ScanFinishedOn string `json:"scanFinishedOn"`
			} `json:"metadata"`
		}
		if json.Unmarshal(predicate, &v) != nil {
			return Vulnerabilities{}, false
		}
		return Vulnerabilities{Scanner: first(v.Scanner.URI, v.Scanner.Version), ScannedAt: v.Metadata.ScanFinishedOn}, true
	case strings.HasPrefix(predicateType, PredicateOpenVEX):
		var v struct {
			Author     string `json:"author"`
			Timestamp  string `json:"timestamp"`
			Statements []struct {
				Status string `json:"status"`
			} `json:"statements"`
		}
		if json.Unmarshal(predicate, &v) != nil {
			return Vulnerabilities{}, false
		}
		out := Vulnerabilities{Scanner: v.Author, ScannedAt: v.Timestamp, Statements: len(v.Statements)}
		for _, s := range v.Statements {
			if s.Status == "affected" {
				out.Affected++
			}
		}
		return out, true
	}
	return Vulnerabilities{}, false
}
