package service

import (
	"context"
)

// Verification checks the signatures stored for an image against the key
// set, with each key's scope, state and validity window. It needs no KMS:
// keys are known by their cached public keys.
type Verification struct {
	resolve  resolver
	evidence *Evidence
}

// NewVerification returns the verification service.
func NewVerification(r resolver, ev *Evidence) *Verification {
	return &Verification{resolve: r, evidence: ev}
}

// Signatures resolves image to a digest and checks every signature stored
// for it. It fails closed: a registry error is an error, never "verified".
func (s *Verification) Signatures(ctx context.Context, p Principal, image string) (SignatureReport, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return SignatureReport{}, err
	}
	subj, err := pin(ctx, s.resolve, SubjectRef{Image: image}, nil)
	if err != nil {
		return SignatureReport{}, err
	}
	return s.evidence.Signatures(ctx, subj.Digest)
}
