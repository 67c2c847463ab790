package wire

import "time"

// ArtifactReport is the body of GET /v1/artifacts/{digest}: everything
// known about a digest. Evidence is read from the registry and verified
// under the key states of KeySetRevision; the rest is the record.
type ArtifactReport struct {
	Digest          string                  `json:"digest"`
	KeySetRevision  int64                   `json:"key_set_revision"`
	Repositories    []RepositorySeen        `json:"repositories"`
	Writes          []ArtifactWrite         `json:"writes"`
	Signatures      []ReportSignature       `json:"signatures"`
	Attestations    []ReportAttestation     `json:"attestations"`
	Provenance      []ReportProvenance      `json:"provenance"`
	SBOMs           []ReportSBOM            `json:"sboms"`
	Vulnerabilities []ReportVulnerabilities `json:"vulnerabilities"`
	Decisions       []DecisionRecord        `json:"decisions"`
	// Admissions is the admission inventory: where the digest was admitted.
	Admissions []Admission `json:"admissions"`
	Notes      []string    `json:"notes,omitempty"`
}

// RepositorySeen is a repository the digest is in, with the tags events
// named it by, and when the record first named it there.
type RepositorySeen struct {
	Repository string     `json:"repository"`
	Tags       []string   `json:"tags,omitempty"`
	FirstSeen  *time.Time `json:"first_seen,omitempty"`
}

// ArtifactWrite is an upload or registration: who, when, where.
type ArtifactWrite struct {
	Kind       string    `json:"kind"`
	Actor      string    `json:"actor"`
	Repository string    `json:"repository"`
	Tags       []string  `json:"tags,omitempty"`
	At         time.Time `json:"at"`
	RequestID  string    `json:"request_id,omitempty"`
}

// ReportSignature is a stored image signature, verified now. Signer is the
// actor whose request wrote it, from the record.
type ReportSignature struct {
	Repository string     `json:"repository"`
	Format     string     `json:"format"`
	Ref        string     `json:"ref"`
	KeyID      string     `json:"key_id,omitempty"`
	KeyName    string     `json:"key_name,omitempty"`
	KeyVersion string     `json:"key_version,omitempty"`
	SignedAt   *time.Time `json:"signed_at,omitempty"`
	Signer     string     `json:"signer,omitempty"`
	Valid      bool       `json:"valid"`
	Reason     string     `json:"reason,omitempty"`
}

// ReportAttestation is a stored attestation, verified now.
type ReportAttestation struct {
	Repository    string     `json:"repository"`
	Format        string     `json:"format"`
	Ref           string     `json:"ref"`
	PredicateType string     `json:"predicate_type,omitempty"`
	KeyID         string     `json:"key_id,omitempty"`
	KeyName       string     `json:"key_name,omitempty"`
	KeyVersion    string     `json:"key_version,omitempty"`
	SignedAt      *time.Time `json:"signed_at,omitempty"`
	Origin        string     `json:"origin,omitempty"`
	Signer        string     `json:"signer,omitempty"`
	Valid         bool       `json:"valid"`
	Reason        string     `json:"reason,omitempty"`
}

// EvidenceOf says which attestation a summary was read from: the verdict of
// its best copy, and every copy's location.
type EvidenceOf struct {
	Repository    string     `json:"repository"`
	PredicateType string     `json:"predicate_type"`
	Origin        string     `json:"origin,omitempty"`
	KeyName       string     `json:"key_name,omitempty"`
	KeyVersion    string     `json:"key_version,omitempty"`
	SignedAt      *time.Time `json:"signed_at,omitempty"`
	Signer        string     `json:"signer,omitempty"`
	Valid         bool       `json:"valid"`
	Locations     []string   `json:"locations"`
}

// ReportProvenance is what a verified SLSA provenance predicate says.
type ReportProvenance struct {
	SourceRepo        string     `json:"source_repo,omitempty"`
	Commit            string     `json:"commit,omitempty"`
	Ref               string     `json:"ref,omitempty"`
	Builder           string     `json:"builder,omitempty"`
	BuildType         string     `json:"build_type,omitempty"`
	ReportedBuildType string     `json:"reported_build_type,omitempty"`
	Invocation        string     `json:"invocation,omitempty"`
	StartedOn         string     `json:"started_on,omitempty"`
	FinishedOn        string     `json:"finished_on,omitempty"`
	Evidence          EvidenceOf `json:"evidence"`
}

// ReportSBOM is an SBOM attestation in brief; Packages is -1 where the
// document does not read.
type ReportSBOM struct {
	Format   string     `json:"format"`
	Packages int        `json:"packages"`
	Evidence EvidenceOf `json:"evidence"`
}

// ReportVulnerabilities is a vulnerability scan or VEX document in brief.
type ReportVulnerabilities struct {
	Scanner    string     `json:"scanner,omitempty"`
	ScannedAt  string     `json:"scanned_at,omitempty"`
	Statements int        `json:"statements,omitempty"`
	Affected   int        `json:"affected,omitempty"`
	Evidence   EvidenceOf `json:"evidence"`
}

// DecisionRecord is a recorded gate decision.
type DecisionRecord struct {
	ID           string        `json:"decision_id"`
	At           time.Time     `json:"at"`
	Image        string        `json:"image"`
	Digest       string        `json:"digest"`
	Repository   string        `json:"repository,omitempty"`
	Policy       string        `json:"policy"`
	Revision     string        `json:"policy_revision"`
	Mode         string        `json:"mode"`
	Allowed      bool          `json:"allowed"`
	WouldDeny    bool          `json:"would_deny"`
	Breakglass   string        `json:"breakglass,omitempty"`
	Caller       string        `json:"caller"`
	Namespace    string        `json:"namespace,omitempty"`
	WorkloadKind string        `json:"workload_kind,omitempty"`
	WorkloadName string        `json:"workload_name,omitempty"`
	RequestID    string        `json:"request_id,omitempty"`
	Reason       string        `json:"reason"`
	Requirements []Requirement `json:"requirements,omitempty"`
	// Reuses are the allows served again from this decision's verdict,
	// where (admission).
	Reuses []Admission `json:"reuses,omitempty"`
}

// Admission is where a digest was admitted: namespace and workload, the
// first and last time, and how many allows.
type Admission struct {
	Digest       string    `json:"digest,omitempty"`
	Namespace    string    `json:"namespace"`
	WorkloadKind string    `json:"workload_kind,omitempty"`
	WorkloadName string    `json:"workload_name,omitempty"`
	First        time.Time `json:"first"`
	Last         time.Time `json:"last"`
	Count        int64     `json:"count"`
	Breakglass   bool      `json:"breakglass,omitempty"`
}

// Package is a package an SBOM lists.
type Package struct {
	PURL      string   `json:"purl,omitempty"`
	Type      string   `json:"type,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Version   string   `json:"version,omitempty"`
	Licenses  []string `json:"licenses,omitempty"`
}

// PackageMatch is an artifact holding the packages asked for: the versions
// found, and where it was admitted.
type PackageMatch struct {
	Repository string    `json:"repository"`
	Digest     string    `json:"digest"`
	FirstSeen  time.Time `json:"first_seen"`
	Packages   []Package `json:"packages"`
	// More counts the matching packages not listed.
	More       int         `json:"more,omitempty"`
	Admissions []Admission `json:"admissions"`
}

// PackagesResponse is the body of GET /v1/packages.
type PackagesResponse struct {
	// Range is the version range in its normal form.
	Range      string         `json:"range,omitempty"`
	Matches    []PackageMatch `json:"matches"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// ProvenanceFact is provenance indexed for an artifact.
type ProvenanceFact struct {
	SourceRepo string `json:"source_repo,omitempty"`
	Commit     string `json:"commit,omitempty"`
	Builder    string `json:"builder,omitempty"`
	BuildType  string `json:"build_type,omitempty"`
}

// ArtifactSummary is an artifact a search found.
type ArtifactSummary struct {
	Repository string           `json:"repository"`
	Digest     string           `json:"digest"`
	FirstSeen  time.Time        `json:"first_seen"`
	Provenance []ProvenanceFact `json:"provenance,omitempty"`
}

// ArtifactsResponse is the body of GET /v1/artifacts.
type ArtifactsResponse struct {
	Artifacts  []ArtifactSummary `json:"artifacts"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// DecisionsResponse is the body of GET /v1/decisions.
type DecisionsResponse struct {
	Decisions  []DecisionRecord `json:"decisions"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// ReplayRequest is the body of POST /v1/policies/replay: a candidate
// policy document (YAML) and the window of recorded decisions to judge
// again (until defaults to now).
type ReplayRequest struct {
	Policy string     `json:"policy"`
	Since  time.Time  `json:"since"`
	Until  *time.Time `json:"until,omitempty"`
}

// ReplayFlip is a recorded decision the candidate would decide the other way.
type ReplayFlip struct {
	Decision DecisionRecord `json:"decision"`
	// Recorded and Candidate are "allow" or "deny".
	Recorded  string `json:"recorded"`
	Candidate string `json:"candidate"`
	// Reasons are the candidate's failed requirements.
	Reasons      []string      `json:"reasons,omitempty"`
	Requirements []Requirement `json:"requirements,omitempty"`
}

// ReplayReport is the body of a POST /v1/policies/replay answer.
type ReplayReport struct {
	Policy         string       `json:"policy"`
	Revision       string       `json:"policy_revision"`
	Mode           string       `json:"mode"`
	Since          time.Time    `json:"since"`
	Until          time.Time    `json:"until"`
	KeySetRevision int64        `json:"key_set_revision"`
	Decisions      int          `json:"decisions"`
	Judged         int          `json:"judged"`
	Subjects       int          `json:"subjects"`
	Unchanged      int          `json:"unchanged"`
	Flips          []ReplayFlip `json:"flips"`
}
