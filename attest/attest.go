// Package attest builds and checks the byte formats attestd signs: cosign
// simple-signing payloads, in-toto Statements v1, DSSE envelopes and sigstore
// bundles v0.3.
//
// It is bytes in, bytes out. It MUST NOT do I/O: no network, no files, no
// signing calls. Callers sign the bytes it returns and hand the signature back.
package attest

import "errors"

// ErrInvalid means input does not have the shape of the format it claims.
var ErrInvalid = errors.New("invalid attestation input")

// Media and predicate types written by attestd, as cosign writes them.
const (
	// InTotoPayloadType is the DSSE payload type of an in-toto Statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// BundleMediaType is the media type of a sigstore bundle v0.3.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// CosignSignPredicateType is the predicate type cosign v3 uses for an
	// image signature stored as a bundle.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
)
