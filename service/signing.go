package service

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

type resolver interface {
	Parse(ref string) (name.Reference, error)
	Resolve(ctx context.Context, ref name.Reference) (oci.Resolved, error)
}

type signatureWriter interface {
	WriteLegacySignature(ctx context.Context, subject name.Digest, payload, sig []byte, v signature.Verifier) (oci.Location, error)
	WriteBundleReferrer(ctx context.Context, subject oci.Resolved, bundle []byte, mediaType, predicateType string, same oci.SameFunc) (oci.Location, error)
}

// Signing signs container images by digest and stores each signature twice:
// as cosign's legacy `.sig` tag and as a sigstore bundle referrer.
type Signing struct {
	resolve resolver
	write   signatureWriter
	key     *keys.Key
	log     *slog.Logger
}

// NewSigning returns the signing service.
func NewSigning(r resolver, w signatureWriter, key *keys.Key, log *slog.Logger) *Signing {
	return &Signing{resolve: r, write: w, key: key, log: log}
}

// SignRequest asks for an image signature.
type SignRequest struct {
	// Image is a reference by tag or digest. A tag is resolved once.
	Image string
}

// SignResult says what was signed and where it is stored.
type SignResult struct {
	// Image is the pinned reference that was signed: repo@sha256:...
	Image string `json:"image"`
	// Digest is the manifest digest that was signed.
	Digest string `json:"digest"`
	// KeyID is the id of the key that signed.
	KeyID string `json:"key_id"`
	// Locations lists each stored copy.
	Locations []oci.Location `json:"locations"`
}

// Sign resolves req.Image to a digest, signs the cosign simple-signing
// payload and the cosign v3 sign statement for that digest, and stores both.
//
// Partial success: the legacy tag is written first. If the referrer write
// then fails, the error is returned and the legacy signature stays; a retry
// finds it and writes only the referrer.
func (s *Signing) Sign(ctx context.Context, p Principal, req SignRequest) (SignResult, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return SignResult{}, err
	}
	ref, err := s.resolve.Parse(req.Image)
	if err != nil {
		return SignResult{}, registryErr(err)
	}
	subj, err := s.resolve.Resolve(ctx, ref)
	if err != nil {
		return SignResult{}, registryErr(err)
	}
	d := subj.Digest
	v, err := s.key.Verifier()
	if err != nil {
		return SignResult{}, err
	}

	// Legacy cosign v2 layout.
	payload, err := attest.SimpleSigning(d)
	if err != nil {
		return SignResult{}, err
	}
	sig, err := s.key.Sign(ctx, payload)
	if err != nil {
		return SignResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	legacy, err := s.write.WriteLegacySignature(ctx, d, payload, sig, v)
	if err != nil {
		return SignResult{}, registryErr(fmt.Errorf("store legacy signature for %s: %w", d, err))
	}

	// Cosign v3 layout: a bundle referrer.
	stmt, err := attest.SignStatement(d)
	if err != nil {
		return SignResult{}, err
	}
	pae := attest.PAE(attest.InTotoPayloadType, stmt)
	dsig, err := s.key.Sign(ctx, pae)
	if err != nil {
		return SignResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	bundle, err := attest.Bundle(attest.InTotoPayloadType, stmt, dsig, s.key.Hint())
	if err != nil {
		return SignResult{}, err
	}
	referrer, err := s.write.WriteBundleReferrer(ctx, subj, bundle, attest.BundleMediaType, attest.CosignSignPredicateType, s.sameBundle(stmt, v))
	if err != nil {
		return SignResult{}, registryErr(fmt.Errorf("store bundle referrer for %s: %w (the legacy signature %s is stored)", d, err, legacy.Ref))
	}

	s.log.InfoContext(ctx, "signed image", "digest", d.DigestStr(), "repo", d.Context().String(), "key_id", s.key.ID(), "caller", p.Name,
		"legacy_existed", legacy.Existed, "referrer_existed", referrer.Existed)
	return SignResult{
		Image:     d.String(),
		Digest:    d.DigestStr(),
		KeyID:     s.key.ID(),
		Locations: []oci.Location{legacy, referrer},
	}, nil
}

// sameBundle accepts a stored bundle as a duplicate when it carries the same
// statement, made by this key, with a signature that verifies.
func (s *Signing) sameBundle(stmt []byte, v signature.Verifier) oci.SameFunc {
	hint := string(s.key.Hint())
	return func(b []byte) bool {
		env, err := attest.ParseBundle(b)
		if err != nil || env.Hint != hint || env.PayloadType != attest.InTotoPayloadType || !bytes.Equal(env.Payload, stmt) {
			return false
		}
		pae := attest.PAE(env.PayloadType, env.Payload)
		for _, sig := range env.Signatures {
			if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pae)) == nil {
				return true
			}
		}
		return false
	}
}

// KeyInfo describes a public key.
type KeyInfo struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     string `json:"state"`
	PublicKey string `json:"public_key"`
}

// Keys lists the public keys of the key set.
type Keys struct {
	keys []*keys.Key
}

// NewKeys returns the key listing for ks; the first is the active key.
func NewKeys(ks ...*keys.Key) *Keys { return &Keys{keys: ks} }

// List returns every key with its PEM public key.
func (k *Keys) List() []KeyInfo {
	out := make([]KeyInfo, 0, len(k.keys))
	for i, x := range k.keys {
		state := "retired"
		if i == 0 {
			state = "active"
		}
		out = append(out, KeyInfo{ID: x.ID(), Name: x.Name(), State: state, PublicKey: string(x.PublicKeyPEM())})
	}
	return out
}
