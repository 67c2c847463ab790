// Package wire holds the JSON shapes of attestd's HTTP API, shared by the
// server (package api) and the Go client (package api/client). It holds no
// logic.
package wire

import (
	"encoding/json"
	"time"
)

// Error is the body of every error response.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody describes one error.
type ErrorBody struct {
	// Code is a stable, machine-readable error code.
	Code string `json:"code"`
	// Message is a human-readable explanation.
	Message string `json:"message"`
	// RequestID correlates the error with the server log.
	RequestID string `json:"request_id,omitempty"`
}

// SignRequest is the body of POST /v1/signatures.
type SignRequest struct {
	// Image is an image reference by tag or digest.
	Image string `json:"image"`
	// Key names the key to sign with; empty means the default key.
	Key string `json:"key,omitempty"`
}

// Location is where one copy of a signature is stored.
type Location struct {
	Kind    string `json:"kind"`
	Ref     string `json:"ref"`
	Tag     string `json:"tag,omitempty"`
	Existed bool   `json:"existed"`
	// Content identifies the copy within its layout: the referrer's
	// manifest digest, or the hash of a legacy layer's content. Evidence
	// rows and events name copies by it.
	Content string `json:"content,omitempty"`
}

// SignResponse is the body of a successful POST /v1/signatures.
type SignResponse struct {
	Image      string     `json:"image"`
	Digest     string     `json:"digest"`
	KeyID      string     `json:"key_id"`
	KeyName    string     `json:"key_name"`
	KeyVersion string     `json:"key_version,omitempty"`
	Locations  []Location `json:"locations"`
	// LogIndex is the signature event's index in the audit log.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// Key is one public key of GET /v1/keys.
type Key struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Ref          string     `json:"ref,omitempty"`
	Version      string     `json:"version,omitempty"`
	State        string     `json:"state"`
	Default      bool       `json:"default"`
	CanSign      bool       `json:"can_sign"`
	Repositories []string   `json:"repositories,omitempty"`
	NotBefore    time.Time  `json:"not_before"`
	NotAfter     *time.Time `json:"not_after,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	Reason       string     `json:"revocation_reason,omitempty"`
	PublicKey    string     `json:"public_key"`
}

// KeysResponse is the body of GET /v1/keys and of key changes.
type KeysResponse struct {
	// Revision changes whenever a key's state or the default changes.
	Revision int64 `json:"revision"`
	Keys     []Key `json:"keys"`
	// LogIndex is the audit log index of a rotation's or revocation's
	// event, in its answer.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// RevokeKeyRequest is the body of POST /v1/keys/{name}/revoke.
type RevokeKeyRequest struct {
	Reason string `json:"reason"`
}

// SignatureCheck is the verdict on one stored signature.
type SignatureCheck struct {
	Format     string     `json:"format"`
	Ref        string     `json:"ref"`
	KeyID      string     `json:"key_id,omitempty"`
	KeyName    string     `json:"key_name,omitempty"`
	KeyVersion string     `json:"key_version,omitempty"`
	SignedAt   *time.Time `json:"signed_at,omitempty"`
	Valid      bool       `json:"valid"`
	Reason     string     `json:"reason,omitempty"`
}

// SignaturesResponse is the body of GET /v1/signatures.
type SignaturesResponse struct {
	Image          string           `json:"image"`
	Digest         string           `json:"digest"`
	KeySetRevision int64            `json:"key_set_revision"`
	Verified       bool             `json:"verified"`
	Signatures     []SignatureCheck `json:"signatures"`
}

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Repositories are the patterns the token may write to ("**": all);
	// required for the signer role.
	Repositories []string `json:"repositories,omitempty"`
}

// Token describes a token; Secret is set only in the response to its creation.
type Token struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Repositories are the patterns the token may write to; "**" is all.
	Repositories []string   `json:"repositories"`
	CreatedAt    time.Time  `json:"created_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	Secret       string     `json:"secret,omitempty"`
	// LogIndex is the creation event's audit log index, in the answer to
	// a creation.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// TokensResponse is the body of GET /v1/tokens.
type TokensResponse struct {
	Tokens []Token `json:"tokens"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Subject names an artifact: an image reference, or a repository and a digest.
type Subject struct {
	Image      string `json:"image,omitempty"`
	Repository string `json:"repository,omitempty"`
	Digest     string `json:"digest,omitempty"`
}

// AttestRequest is the body of POST /v1/attestations.
type AttestRequest struct {
	Subject       Subject         `json:"subject"`
	PredicateType string          `json:"predicate_type"`
	Predicate     json.RawMessage `json:"predicate"`
	Key           string          `json:"key,omitempty"`
}

// AttestResponse is the body of a successful POST /v1/attestations or /v1/provenance.
type AttestResponse struct {
	Digest        string     `json:"digest"`
	Subjects      []string   `json:"subjects"`
	PredicateType string     `json:"predicate_type"`
	KeyID         string     `json:"key_id"`
	KeyName       string     `json:"key_name"`
	SignedAt      time.Time  `json:"signed_at"`
	Locations     []Location `json:"locations"`
	// LogIndex is the audit log index of the first subject's event;
	// LogIndexes has one per subject, in order.
	LogIndex   *uint64  `json:"log_index,omitempty"`
	LogIndexes []uint64 `json:"log_indexes,omitempty"`
}

// Source is the source a build used, as CI reports it.
type Source struct {
	Repository string `json:"repository"`
	Commit     string `json:"commit"`
	Ref        string `json:"ref,omitempty"`
}

// Material is an input of a build, as CI reports it.
type Material struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest,omitempty"`
}

// ProvenanceRequest is the body of POST /v1/provenance. Everything in it is
// the caller's claim and goes into the predicate's externalParameters.
type ProvenanceRequest struct {
	Subjects   []Subject       `json:"subjects"`
	Source     Source          `json:"source"`
	BuildType  string          `json:"build_type,omitempty"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
	Materials  []Material      `json:"materials,omitempty"`
	StartedOn  string          `json:"started_on,omitempty"`
	FinishedOn string          `json:"finished_on,omitempty"`
	Key        string          `json:"key,omitempty"`
}

// Attestation is one stored attestation with its verdict.
type Attestation struct {
	Format        string     `json:"format"`
	Ref           string     `json:"ref"`
	PredicateType string     `json:"predicate_type,omitempty"`
	KeyID         string     `json:"key_id,omitempty"`
	KeyName       string     `json:"key_name,omitempty"`
	KeyVersion    string     `json:"key_version,omitempty"`
	SignedAt      *time.Time `json:"signed_at,omitempty"`
	// Origin is who wrote the predicate, as signed: "attestd" (attestd's
	// own provenance and SBOMs) or "caller" (submitted through the API).
	Origin   string          `json:"origin,omitempty"`
	Valid    bool            `json:"valid"`
	Reason   string          `json:"reason,omitempty"`
	Envelope json.RawMessage `json:"envelope,omitempty"`
}

// AttestationsResponse is the body of GET /v1/artifacts/{digest}/attestations.
type AttestationsResponse struct {
	Digest         string        `json:"digest"`
	KeySetRevision int64         `json:"key_set_revision"`
	Attestations   []Attestation `json:"attestations"`
}

// RegisterRequest is the JSON body of POST /v1/artifacts: an existing image to pin.
type RegisterRequest struct {
	Image string `json:"image"`
}

// ArtifactResponse is the body of a successful POST /v1/artifacts.
type ArtifactResponse struct {
	Image     string `json:"image"`
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
	// LogIndex is the upload or registration event's audit log index.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	Image      string             `json:"image"`
	Policy     string             `json:"policy,omitempty"`
	Namespace  string             `json:"namespace,omitempty"`
	Breakglass *BreakglassRequest `json:"breakglass,omitempty"`
}

// BreakglassRequest asks to allow despite the policy: justified, time-boxed, recorded.
type BreakglassRequest struct {
	Justification string `json:"justification"`
	// Duration is a Go duration such as "2h", at most the policy's maxDuration.
	Duration string `json:"duration"`
}

// Requirement is one checked requirement.
type Requirement struct {
	// Policy names the policy, where several judged the image.
	Policy string `json:"policy,omitempty"`
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason"`
}

// PolicyVerdict is one policy's verdict within a decision: where several
// policies cover an image, each must allow.
type PolicyVerdict struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Mode     string `json:"mode"`
	Allow    bool   `json:"allow"`
	Reason   string `json:"reason"`
}

// Decision is the body of a POST /v1/verify response.
type Decision struct {
	ID             string          `json:"decision_id"`
	Decision       string          `json:"decision"`
	Allow          bool            `json:"allow"`
	Image          string          `json:"image"`
	Digest         string          `json:"digest"`
	Policy         string          `json:"policy"`
	Revision       string          `json:"policy_revision"`
	KeySetRevision int64           `json:"key_set_revision"`
	Mode           string          `json:"mode,omitempty"`
	Policies       []PolicyVerdict `json:"policies,omitempty"`
	Requirements   []Requirement   `json:"requirements"`
	Warnings       []string        `json:"warnings,omitempty"`
	Reason         string          `json:"reason"`
	Breakglass     string          `json:"breakglass,omitempty"`
	Cached         bool            `json:"cached"`
	// LogIndex is the decision event's audit log index; absent for an
	// allow served from the cache, which records no new decision.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// PolicyInfo describes a loaded policy.
type PolicyInfo struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Mode     string `json:"mode"`
	Document string `json:"document"`
	// LogIndex is the audit log index of the put's event, in its answer.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// PoliciesResponse is the body of GET /v1/policies.
type PoliciesResponse struct {
	Policies []PolicyInfo `json:"policies"`
}

// SBOMRequest is the body of POST /v1/sboms.
type SBOMRequest struct {
	Subject Subject  `json:"subject"`
	Formats []string `json:"formats,omitempty"`
}

// SBOMResult is one stored SBOM.
type SBOMResult struct {
	Format        string `json:"format"`
	PredicateType string `json:"predicate_type"`
	Digest        string `json:"digest"`
	ToolVersion   string `json:"tool_version"`
	Packages      int    `json:"packages"`
	Referrer      string `json:"referrer,omitempty"`
	LegacyTag     string `json:"legacy_tag,omitempty"`
}

// Job is the body of GET /v1/jobs/{id} and of a POST /v1/sboms answer.
type Job struct {
	ID       int64        `json:"id"`
	Kind     string       `json:"kind"`
	State    string       `json:"state"`
	Attempt  int          `json:"attempt"`
	Stage    string       `json:"stage,omitempty"`
	Progress float64      `json:"progress"`
	Errors   []string     `json:"errors,omitempty"`
	Results  []SBOMResult `json:"results,omitempty"`
	Image    string       `json:"image,omitempty"`
}

// Actor says who caused an event: a token (id and name), or attestd itself.
type Actor struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// EventKey names the key that signed, in an event.
type EventKey struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// Event is one recorded state change.
type Event struct {
	Seq           int64           `json:"seq"`
	ID            string          `json:"id"`
	Kind          string          `json:"kind"`
	At            time.Time       `json:"at"`
	Repository    string          `json:"repository,omitempty"`
	Digest        string          `json:"digest,omitempty"`
	Tags          []string        `json:"tags,omitempty"`
	Actor         Actor           `json:"actor"`
	Key           *EventKey       `json:"key,omitempty"`
	PredicateType string          `json:"predicate_type,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	Locations     json.RawMessage `json:"locations,omitempty"`
	Detail        json.RawMessage `json:"detail,omitempty"`
	// LogIndex is the event's index in the audit log; absent until it is
	// sequenced there.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// InclusionProof is the body of GET /v1/log/proof/inclusion: the audit
// log hashes (RFC 6962) proving that the entry at Index is in the tree of
// Size.
type InclusionProof struct {
	Index  uint64   `json:"index"`
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"`
}

// ConsistencyProof is the body of GET /v1/log/proof/consistency: the hashes
// proving that the tree of size To extends the tree of size From.
type ConsistencyProof struct {
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Hashes [][]byte `json:"hashes"`
}

// EventsResponse is the body of GET /v1/events: a page of events, oldest
// first, and the cursor of the next page ("" at the end).
type EventsResponse struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}
