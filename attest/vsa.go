package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	vsa1 "github.com/in-toto/attestation/go/predicates/vsa/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PredicateVSA is the SLSA Verification Summary Attestation v1.
const PredicateVSA = "https://slsa.dev/verification_summary/v1"

// VSA results.
const (
	VSAPassed = "PASSED"
	VSAFailed = "FAILED"
)

// vsaPolicyPrefix names an attestd gate policy in a VSA's policy.uri:
// "urn:attestd:policy:<name>[#key-set=<n>]". The policy's revision is the first 16 hex
// digits of policy.digest.sha256, the SHA-256 of its document.
const vsaPolicyPrefix = "urn:attestd:policy:"

// vsaKeySet is the f-component of policy.uri that records the key-set
// revision a VSA was issued under: "urn:attestd:policy:prod#key-set=3".
// (in-toto's VSA v1 type has no verifier.version to hold it.)
const vsaKeySet = "#key-set="

// VSAInput is one attestation a verification used: where it is stored and
// the SHA-256 of its bytes as stored.
type VSAInput struct {
	URI    string
	SHA256 string
}

// VSA is what a verification summary says, in attestd's terms.
type VSA struct {
	// Verifier is the verifier's id (attestd's builder id).
	Verifier string
	// KeySetRevision is the key-set revision it was verified under (0 if unsaid).
	KeySetRevision int64
	// Resource is the verified artifact's URI (repository@digest).
	Resource string
	// Policy is the policy's name; PolicyDigest the SHA-256 (hex) of its
	// document, whose first 16 digits are its revision.
	Policy, PolicyDigest string
	Time                 time.Time
	Result               string
	Levels               []string
	Inputs               []VSAInput
}

// PolicyRevision is the policy's revision (attestd's short form of the
// document's digest).
func (v VSA) PolicyRevision() string {
	if len(v.PolicyDigest) < 16 {
		return ""
	}
	return v.PolicyDigest[:16]
}

// PolicyDigest returns the digest of a policy document as a VSA names it.
func PolicyDigest(doc []byte) string {
	s := sha256.Sum256(doc)
	return hex.EncodeToString(s[:])
}

// NewVSA builds a VSA predicate (JSON) with in-toto's type and validates it.
func NewVSA(v VSA) ([]byte, error) {
	p := &vsa1.VerificationSummary{
		Verifier:           &vsa1.VerificationSummary_Verifier{Id: v.Verifier},
		TimeVerified:       timestamppb.New(v.Time.UTC()),
		ResourceUri:        v.Resource,
		Policy:             &vsa1.VerificationSummary_Policy{Uri: vsaPolicyPrefix + v.Policy, Digest: map[string]string{"sha256": v.PolicyDigest}},
		VerificationResult: v.Result,
		VerifiedLevels:     v.Levels,
		SlsaVersion:        "1.0",
	}
	if v.KeySetRevision != 0 {
		p.Policy.Uri += vsaKeySet + strconv.FormatInt(v.KeySetRevision, 10)
	}
	for _, in := range v.Inputs {
		p.InputAttestations = append(p.InputAttestations, &vsa1.VerificationSummary_InputAttestation{Uri: in.URI, Digest: map[string]string{"sha256": in.SHA256}})
	}
	b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(p)
	if err != nil {
		return nil, err
	}
	if err := ValidatePredicate(PredicateVSA, b); err != nil {
		return nil, err
	}
	return Canonical(b)
}

// ParseVSA reads a VSA predicate. It checks shape only; it MUST be given
// only predicates that verified. A policy.uri that is not attestd's leaves
// Policy empty.
func ParseVSA(b []byte) (VSA, error) {
	var p vsa1.VerificationSummary
	if err := protojson.Unmarshal(b, &p); err != nil {
		return VSA{}, fmt.Errorf("%w: %w", ErrPredicate, err)
	}
	if err := validateVSAMsg(&p); err != nil {
		return VSA{}, fmt.Errorf("%w: %w", ErrPredicate, err)
	}
	out := VSA{Verifier: p.GetVerifier().GetId(), Resource: p.GetResourceUri(), Time: p.GetTimeVerified().AsTime(),
		Result: p.GetVerificationResult(), Levels: p.GetVerifiedLevels()}
	if u, ok := strings.CutPrefix(p.GetPolicy().GetUri(), vsaPolicyPrefix); ok {
		name, ks, _ := strings.Cut(u, vsaKeySet)
		out.Policy = name
		out.KeySetRevision, _ = strconv.ParseInt(ks, 10, 64)
	}
	out.PolicyDigest = p.GetPolicy().GetDigest()["sha256"]
	for _, in := range p.GetInputAttestations() {
		out.Inputs = append(out.Inputs, VSAInput{URI: in.GetUri(), SHA256: in.GetDigest()["sha256"]})
	}
	return out, nil
}

func validateVSA(b []byte) error {
	var p vsa1.VerificationSummary
	if err := protojson.Unmarshal(b, &p); err != nil {
		return err
	}
	return validateVSAMsg(&p)
}

// validateVSAMsg checks the fields SLSA VSA v1 requires: the library type
// has no Validate.
func validateVSAMsg(p *vsa1.VerificationSummary) error {
	var errs []error
	if p.GetVerifier().GetId() == "" {
		errs = append(errs, errors.New("verifier.id is required"))
	}
	if p.GetTimeVerified() == nil || p.GetTimeVerified().CheckValid() != nil {
		errs = append(errs, errors.New("timeVerified is required"))
	}
	if p.GetResourceUri() == "" {
		errs = append(errs, errors.New("resourceUri is required"))
	}
	if u, err := url.Parse(p.GetPolicy().GetUri()); err != nil || !u.IsAbs() {
		errs = append(errs, errors.New("policy.uri: want an absolute URI"))
	}
	switch p.GetVerificationResult() {
	case VSAPassed, VSAFailed:
	default:
		errs = append(errs, fmt.Errorf("verificationResult %q: want PASSED or FAILED", p.GetVerificationResult()))
	}
	return errors.Join(errs...)
}
