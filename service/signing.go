package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

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

type keySet interface {
	Get(name string) (*keys.Key, error)
}

// Signing signs container images by digest and stores each signature twice:
// as cosign's legacy `.sig` tag and as a sigstore bundle referrer.
type Signing struct {
	resolve resolver
	write   signatureWriter
	keys    keySet
	log     *slog.Logger
}

// NewSigning returns the signing service.
func NewSigning(r resolver, w signatureWriter, ks keySet, log *slog.Logger) *Signing {
	return &Signing{resolve: r, write: w, keys: ks, log: log}
}

// SignRequest asks for an image signature.
type SignRequest struct {
	// Image is a reference by tag or digest. A tag is resolved once.
	Image string
	// Key names the key to sign with; empty means the default key.
	Key string
}

// SignResult says what was signed and where it is stored.
type SignResult struct {
	// Image is the pinned reference that was signed: repo@sha256:...
	Image string `json:"image"`
	// Digest is the manifest digest that was signed.
	Digest string `json:"digest"`
	// KeyID is the id of the key that signed.
	KeyID string `json:"key_id"`
	// KeyName is the configured name of the key that signed.
	KeyName string `json:"key_name"`
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
	key, err := s.keys.Get(req.Key)
	if err != nil {
		return SignResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ref, err := s.resolve.Parse(req.Image)
	if err != nil {
		return SignResult{}, registryErr(err)
	}
	if repo := ref.Context().Name(); !key.Allows(repo) {
		return SignResult{}, fmt.Errorf("%w: key %s may not sign in %s (allowed: %s)", ErrForbidden, key.Name(), repo, strings.Join(key.Repositories(), ", "))
	}
	subj, err := s.resolve.Resolve(ctx, ref)
	if err != nil {
		return SignResult{}, registryErr(err)
	}
	d := subj.Digest
	v, err := key.Verifier()
	if err != nil {
		return SignResult{}, err
	}

	// Legacy cosign v2 layout.
	payload, err := attest.SimpleSigning(d)
	if err != nil {
		return SignResult{}, err
	}
	sig, err := key.Sign(ctx, payload)
	if err != nil {
		return SignResult{}, signErr(err)
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
	dsig, err := key.Sign(ctx, pae)
	if err != nil {
		return SignResult{}, signErr(err)
	}
	bundle, err := attest.Bundle(attest.InTotoPayloadType, stmt, dsig, key.Hint())
	if err != nil {
		return SignResult{}, err
	}
	referrer, err := s.write.WriteBundleReferrer(ctx, subj, bundle, attest.BundleMediaType, attest.CosignSignPredicateType, sameBundle(key, stmt, v))
	if err != nil {
		return SignResult{}, registryErr(fmt.Errorf("store bundle referrer for %s: %w (the legacy signature %s is stored)", d, err, legacy.Ref))
	}

	s.log.InfoContext(ctx, "signed image", "digest", d.DigestStr(), "repo", d.Context().String(), "key", key.Name(), "key_id", key.ID(), "caller", p.Name,
		"legacy_existed", legacy.Existed, "referrer_existed", referrer.Existed)
	return SignResult{
		Image:     d.String(),
		Digest:    d.DigestStr(),
		KeyID:     key.ID(),
		KeyName:   key.Name(),
		Locations: []oci.Location{legacy, referrer},
	}, nil
}

// sameBundle accepts a stored bundle as a duplicate when it carries the same
// statement, made by this key, with a signature that verifies.
// signErr maps a signing failure: a KMS that is down or slow is retryable
// (503); a signature that does not verify is the key's fault (502).
func signErr(err error) error {
	if errors.Is(err, keys.ErrBadSignature) {
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func sameBundle(key *keys.Key, stmt []byte, v signature.Verifier) oci.SameFunc {
	hint := string(key.Hint())
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
	ID           string
	Name         string
	Ref          string
	State        string
	Default      bool
	Repositories []string
	PublicKey    string
}

// Keys lists the public keys of the key set.
type Keys struct {
	set *keys.Set
}

// NewKeys returns the key listing for set.
func NewKeys(set *keys.Set) *Keys { return &Keys{set: set} }

// List returns every key with its PEM public key, the default first.
func (k *Keys) List() []KeyInfo {
	all := k.set.All()
	out := make([]KeyInfo, 0, len(all))
	for _, x := range all {
		out = append(out, KeyInfo{ID: x.ID(), Name: x.Name(), Ref: x.Ref(), State: "active", Default: x.Name() == k.set.Default(),
			Repositories: x.Repositories(), PublicKey: string(x.PublicKeyPEM())})
	}
	return out
}
