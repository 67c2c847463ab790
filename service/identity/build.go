package identity

import (
	"strings"
)

// Build is what a CI identity's verified claims say about the build that
// asks: attestd writes these into its provenance instead of what the
// request body says.
type Build struct {
	// BuilderID is the CI's own builder, following the platform's SLSA
	// conventions (GitHub: the workflow that ran, at its ref).
	BuilderID string
	// SourceRepository is the source repository's URL, where the claims name it.
	SourceRepository string
	Commit           string
	Ref              string
	// Workflow is the workflow or pipeline definition that ran.
	Workflow string
	// Invocation identifies the run.
	Invocation string
	// Claims are the claims these facts came from.
	Claims map[string]string
}

// Build derives the build facts of id from its claims, by its issuer's kind.
func (id Identity) Build() Build {
	c := id.Claim
	used := func(names ...string) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			if v := c(n); v != "" {
				m[n] = v
			}
		}
		return m
	}
	switch id.Kind {
	case KindGitHubActions:
		const web = "https://github.com/"
		b := Build{SourceRepository: web + c("repository"), Commit: c("sha"), Ref: c("ref"), Workflow: c("workflow_ref"),
			Claims: used("repository", "repository_id", "ref", "sha", "workflow", "workflow_ref", "job_workflow_ref", "run_id", "run_attempt", "event_name", "actor", "runner_environment")}
		if w := c("job_workflow_ref"); w != "" {
			b.BuilderID = web + w
		} else if w := c("workflow_ref"); w != "" {
			b.BuilderID = web + w
		}
		if r := c("run_id"); r != "" {
			b.Invocation = web + c("repository") + "/actions/runs/" + r
			if a := c("run_attempt"); a != "" {
				b.Invocation += "/attempts/" + a
			}
		}
		return b
	case KindGitLabCI:
		base := strings.TrimSuffix(id.Issuer, "/")
		b := Build{SourceRepository: base + "/" + c("project_path"), Commit: c("sha"), Workflow: c("ci_config_ref_uri"),
			Claims: used("project_path", "project_id", "ref", "ref_type", "sha", "pipeline_id", "pipeline_source", "job_id", "ci_config_ref_uri", "user_login", "runner_environment")}
		switch c("ref_type") {
		case "branch":
			b.Ref = "refs/heads/" + c("ref")
		case "tag":
			b.Ref = "refs/tags/" + c("ref")
		}
		if u := c("ci_config_ref_uri"); u != "" {
			b.BuilderID = "https://" + u
		} else {
			b.BuilderID = base + "/" + c("project_path") + "/-/ci"
		}
		if j := c("job_id"); j != "" {
			b.Invocation = base + "/" + c("project_path") + "/-/jobs/" + j
		}
		return b
	case KindBuildkite:
		pipeline := "https://buildkite.com/" + c("organization_slug") + "/" + c("pipeline_slug")
		b := Build{BuilderID: pipeline, Commit: c("build_commit"), Workflow: pipeline,
			Claims: used("organization_slug", "pipeline_slug", "build_number", "build_branch", "build_commit", "step_key", "job_id", "agent_id")}
		if br := c("build_branch"); br != "" {
			b.Ref = "refs/heads/" + br
		}
		if n := c("build_number"); n != "" {
			b.Invocation = pipeline + "/builds/" + n
			if j := c("job_id"); j != "" {
				b.Invocation += "#" + j
			}
		}
		return b
	case KindCircleCI:
		b := Build{BuilderID: id.Issuer + "/" + c("oidc.circleci.com/project-id"), SourceRepository: c("oidc.circleci.com/vcs-origin"),
			Ref: c("oidc.circleci.com/vcs-ref"), Claims: used("oidc.circleci.com/project-id", "oidc.circleci.com/vcs-origin", "oidc.circleci.com/vcs-ref", "oidc.circleci.com/context-ids")}
		if !strings.HasPrefix(b.SourceRepository, "https://") && b.SourceRepository != "" {
			b.SourceRepository = "https://" + b.SourceRepository
		}
		b.Invocation = id.Issuer + "#" + id.Subject
		return b
	default: // kubernetes, generic
		return Build{BuilderID: strings.TrimSuffix(id.Issuer, "/") + "#" + id.Subject, Invocation: id.Subject, Claims: map[string]string{"sub": id.Subject}}
	}
}
