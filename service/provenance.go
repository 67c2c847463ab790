package service

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/service/identity"
	"github.com/attestd/attestd/storage/oci"
)

// ProvenanceBuildType is the SLSA build type of the provenance attestd
// writes: a CI system reported these facts to attestd over its API. What the
// caller claims is under externalParameters; attestd did not observe the build.
const ProvenanceBuildType = "https://attestd.dev/provenance/ci-report/v1"

// Material is an input of a build, as the caller reports it.
type Material struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest,omitempty"`
}

// ProvenanceRequest carries the build facts a CI pipeline reports.
type ProvenanceRequest struct {
	// Subjects are the artifacts built.
	Subjects []SubjectRef
	// Caller-supplied facts; they go only into externalParameters.
	SourceRepository string
	SourceCommit     string
	SourceRef        string
	BuildType        string
	Parameters       json.RawMessage
	Materials        []Material
	StartedOn        string
	FinishedOn       string
	// InvocationID identifies this request; the API sets it from its own
	// request id, never from the body.
	InvocationID string
	// Key names the signing key; empty means the default key.
	Key string
}

// maxProvenanceSubjects caps the artifacts of one provenance.
const maxProvenanceSubjects = 64

// Provenance writes and signs a SLSA provenance v1 predicate for the
// subjects and stores it next to each. The fields that say who built it
// (builder id, caller, invocation) come from attestd's configuration and the
// authenticated caller; what the request says goes only into
// externalParameters.
//
// When the caller is a CI workload identity (an OIDC ID token), the builder
// id, source repository, commit, ref, workflow and run come from its
// verified claims, not from the request: the builder is the CI's own (GitHub:
// the workflow at its ref), the source is resolved from the claims, and the
// identity and the claims used are in internalParameters. What the request
// reports still goes under externalParameters, and it need not repeat what
// the claims say.
func (a *Attestations) Provenance(ctx context.Context, p Principal, req ProvenanceRequest) (AttestResult, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return AttestResult{}, err
	}
	if len(req.Subjects) == 0 || len(req.Subjects) > maxProvenanceSubjects {
		return AttestResult{}, fmt.Errorf("%w: provenance needs 1 to %d subjects", ErrInvalid, maxProvenanceSubjects)
	}
	var build *identity.Build
	if p.Identity != nil {
		b := p.Identity.Build()
		build = &b
	}
	if build == nil && (req.SourceRepository == "" || req.SourceCommit == "") {
		return AttestResult{}, fmt.Errorf("%w: source repository and commit are required", ErrInvalid)
	}
	if len(req.Parameters) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(req.Parameters, &obj); err != nil {
			return AttestResult{}, fmt.Errorf("%w: parameters must be a JSON object", ErrInvalid)
		}
	}
	key, err := a.signer(req.Key)
	if err != nil {
		return AttestResult{}, err
	}
	var subjects []oci.Resolved
	var tags [][]string
	for _, s := range req.Subjects {
		r, err := pin(ctx, a.resolve, s, writeScope(p, ActionSign, key))
		if err != nil {
			return AttestResult{}, err
		}
		subjects, tags = append(subjects, r), append(tags, subjectTags(s))
	}

	external := map[string]any{}
	if req.SourceRepository != "" || req.SourceCommit != "" || req.SourceRef != "" {
		external["source"] = map[string]string{"repository": req.SourceRepository, "commit": req.SourceCommit, "ref": req.SourceRef}
	}
	if req.BuildType != "" {
		external["buildType"] = req.BuildType
	}
	if len(req.Parameters) > 0 {
		external["parameters"] = req.Parameters
	}
	if len(req.Materials) > 0 {
		external["materials"] = req.Materials
	}
	if req.StartedOn != "" || req.FinishedOn != "" {
		external["reportedTimes"] = map[string]string{"startedOn": req.StartedOn, "finishedOn": req.FinishedOn}
	}
	internal := map[string]any{
		"caller": map[string]any{"tokenId": p.TokenID, "name": p.Name, "roles": p.Roles},
	}
	builder, invocation := a.builderID, req.InvocationID
	var resolved []map[string]any
	if build != nil {
		// Facts from the verified claims of the caller's CI identity.
		internal["identity"] = map[string]any{"issuer": p.Identity.Issuer, "subject": p.Identity.Subject, "kind": p.Identity.Kind,
			"claims": build.Claims, "workflow": build.Workflow, "ref": build.Ref, "requestId": req.InvocationID}
		if build.BuilderID != "" {
			builder = build.BuilderID
		}
		if build.Invocation != "" {
			invocation = build.Invocation
		}
		// The workflow that ran, as the claims name it: the build's external
		// input, as the platforms' own provenance puts it.
		external["workflow"] = map[string]string{"repository": build.SourceRepository, "ref": build.Ref, "path": build.Workflow}
		if build.SourceRepository != "" {
			dep := map[string]any{"uri": "git+" + build.SourceRepository}
			if build.Ref != "" {
				dep["uri"] = "git+" + build.SourceRepository + "@" + build.Ref
			}
			if build.Commit != "" {
				dep["digest"] = map[string]string{"gitCommit": build.Commit}
			}
			resolved = append(resolved, dep)
		}
	}
	def := map[string]any{
		"buildType":          ProvenanceBuildType,
		"externalParameters": external,
		"internalParameters": internal,
	}
	if len(resolved) > 0 {
		def["resolvedDependencies"] = resolved
	}
	pred := map[string]any{
		"buildDefinition": def,
		"runDetails": map[string]any{
			"builder": map[string]any{"id": builder},
			"metadata": map[string]any{
				"invocationId": invocation,
				"finishedOn":   a.now().UTC().Format(time.RFC3339),
			},
		},
	}
	b, err := json.Marshal(pred)
	if err != nil {
		return AttestResult{}, err
	}
	res, err := a.attest(ctx, attestWrite{actor: p, kind: EventProvenanceCreated, key: key, subjects: subjects, tags: tags,
		predicateType: attest.PredicateSLSAProvenanceV1, predicate: b, origin: attest.OriginAttestd})
	if err != nil {
		return AttestResult{}, err
	}
	a.log.InfoContext(ctx, "provenance attested", "subjects", len(subjects), "invocation", req.InvocationID, "key", key.Name(), "caller", p.Name)
	return res, nil
}
