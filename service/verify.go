package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

// errNotBound means a signature verifies but is for another digest or
// another kind of statement: it proves nothing about this image.
var errNotBound = errors.New("signed content is not about this digest")

// errBadContent means a signature verifies but what it signs is malformed
// (a statement without a predicate, a payload that does not parse): it
// proves nothing, and the reason says what is wrong with it.
var errBadContent = errors.New("signed content is malformed")

// reportable reports whether a check error says something about the
// evidence itself (and so belongs in the reason), rather than only that
// this key did not verify it.
func reportable(err error) bool {
	return errors.Is(err, errNotBound) || errors.Is(err, errBadContent)
}

// checkLegacy verifies a cosign simple-signing signature with v and checks
// that it signs d. It returns the signed metadata.
func checkLegacy(sg oci.StoredSignature, d name.Digest, v signature.Verifier) error {
	_, err := legacyMeta(sg, d, v)
	return err
}

func legacyMeta(sg oci.StoredSignature, d name.Digest, v signature.Verifier) (attest.SignMeta, error) {
	if err := v.VerifySignature(bytes.NewReader(sg.Signature), bytes.NewReader(sg.Payload)); err != nil {
		return attest.SignMeta{}, err
	}
	dg, meta, err := attest.ParseSimpleSigning(sg.Payload)
	if err != nil {
		return attest.SignMeta{}, fmt.Errorf("%w: %w", errBadContent, err)
	}
	if dg != d.DigestStr() {
		return attest.SignMeta{}, fmt.Errorf("%w: it signs %s", errNotBound, dg)
	}
	return meta, nil
}

// checkBundle verifies a bundle's DSSE envelope with v (when its hint
// matches) and checks that its statement is of predicateType about d.
func checkBundle(b []byte, d name.Digest, hint string, v signature.Verifier, predicateType string) (*attest.Statement, error) {
	env, err := attest.ParseBundle(b)
	if err != nil {
		return nil, err
	}
	if env.Hint != "" && env.Hint != hint {
		return nil, errors.New("bundle names another key")
	}
	return checkDSSE(env, d, v, predicateType)
}

// checkDSSE verifies a DSSE envelope with v and checks that its statement
// is of predicateType ("" for any) about d. The statement returned is parsed
// from the exact payload bytes that verified.
func checkDSSE(env *attest.BundleEnvelope, d name.Digest, v signature.Verifier, predicateType string) (*attest.Statement, error) {
	if env.PayloadType != attest.InTotoPayloadType {
		return nil, fmt.Errorf("payload type %q", env.PayloadType)
	}
	pae := attest.PAE(env.PayloadType, env.Payload)
	ok := false
	for _, sig := range env.Signatures {
		if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pae)) == nil {
			ok = true
			break
		}
	}
	if !ok {
		return nil, errors.New("no signature in the envelope verifies")
	}
	st, err := attest.ParseStatement(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadContent, err)
	}
	if predicateType != "" && st.PredicateType != predicateType {
		return nil, fmt.Errorf("%w: predicate type %s", errNotBound, st.PredicateType)
	}
	for _, s := range st.Subjects {
		if s == d.DigestStr() {
			return st, nil
		}
	}
	return nil, fmt.Errorf("%w: subjects %v", errNotBound, st.Subjects)
}

// keyScope refuses evidence about d made by a key scoped to other
// repositories: a key that may not sign in a repository proves nothing there,
// even when its signature was copied along with the image.
func keyScope(k *keys.Key, d name.Digest) error {
	if repo := d.Context().Name(); !k.Allows(repo) {
		return fmt.Errorf("key %s is scoped to %s, not %s", k.Name(), strings.Join(k.Repositories(), ", "), repo)
	}
	return nil
}

type verifySet interface {
	All() []keys.Entry
	Accept(k *keys.Key, signedAt time.Time) error
	Revision() int64
}

// Verification checks the signatures stored for an image against the key
// set, with each key's state and validity window. It needs no KMS: keys are
// known by their cached public keys.
type Verification struct {
	resolve resolver
	read    signatureReader
	keys    verifySet
}

// NewVerification returns the verification service.
func NewVerification(r resolver, rd signatureReader, ks verifySet) *Verification {
	return &Verification{resolve: r, read: rd, keys: ks}
}

// SignatureCheck is the verdict on one stored signature.
type SignatureCheck struct {
	// Format is "legacy-tag" or "referrer".
	Format string
	// Ref is where the signature is stored.
	Ref string
	// KeyID and KeyName name the key it verified with; empty if none did.
	KeyID, KeyName string
	// KeyVersion is the KMS key version the signature records, if any.
	KeyVersion string
	// SignedAt is the signed time, if the signature carries one.
	SignedAt *time.Time
	// Valid is true when the signature verifies, is bound to the digest and
	// its key's state and window accept it.
	Valid bool
	// Reason says why it is not valid.
	Reason string
}

// SignatureReport is what is stored for a digest, checked.
type SignatureReport struct {
	Image          string
	Digest         string
	KeySetRevision int64
	// Verified is true when at least one signature is valid.
	Verified   bool
	Signatures []SignatureCheck
}

// Signatures resolves image to a digest and checks every signature stored
// for it. It fails closed: a registry error is an error, never "verified".
func (s *Verification) Signatures(ctx context.Context, p Principal, image string) (SignatureReport, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return SignatureReport{}, err
	}
	ref, err := s.resolve.Parse(image)
	if err != nil {
		return SignatureReport{}, registryErr(err)
	}
	subj, err := s.resolve.Resolve(ctx, ref)
	if err != nil {
		return SignatureReport{}, registryErr(err)
	}
	return s.report(ctx, subj.Digest)
}

// report checks every signature stored for d.
func (s *Verification) report(ctx context.Context, d name.Digest) (SignatureReport, error) {
	rep := SignatureReport{Image: d.String(), Digest: d.DigestStr(), KeySetRevision: s.keys.Revision(), Signatures: []SignatureCheck{}}
	entries := s.keys.All()

	sigRef, sigs, err := s.read.LegacySignatures(ctx, d, maxStoredSignatures)
	if err != nil {
		return SignatureReport{}, registryErr(err)
	}
	for _, sg := range sigs {
		c := SignatureCheck{Format: "legacy-tag", Ref: sigRef, Reason: "no key in the key set verifies it"}
		for _, e := range entries {
			v, err := e.Key.Verifier()
			if err != nil {
				continue
			}
			meta, err := legacyMeta(sg, d, v)
			if err != nil {
				if reportable(err) {
					c.Reason = err.Error()
				}
				continue
			}
			s.judge(&c, e.Key, meta, d)
			break
		}
		rep.Signatures = append(rep.Signatures, c)
	}

	bundles, err := s.read.Bundles(ctx, d, attest.BundleMediaType, attest.CosignSignPredicateType, maxStoredSignatures)
	if err != nil {
		return SignatureReport{}, registryErr(err)
	}
	for _, b := range bundles {
		c := SignatureCheck{Format: "referrer", Ref: b.Ref, Reason: "no key in the key set verifies it"}
		for _, e := range entries {
			v, err := e.Key.Verifier()
			if err != nil {
				continue
			}
			st, err := checkBundle(b.Bundle, d, string(e.Key.Hint()), v, attest.CosignSignPredicateType)
			if err != nil {
				if reportable(err) {
					c.Reason = err.Error()
				}
				continue
			}
			s.judge(&c, e.Key, st.Meta, d)
			break
		}
		rep.Signatures = append(rep.Signatures, c)
	}
	for _, c := range rep.Signatures {
		rep.Verified = rep.Verified || c.Valid
	}
	return rep, nil
}

// judge applies the key's repository scope, state and window to a
// signature that verified for d.
func (s *Verification) judge(c *SignatureCheck, k *keys.Key, meta attest.SignMeta, d name.Digest) {
	c.KeyID, c.KeyName, c.KeyVersion, c.Reason = k.ID(), k.Name(), meta.KeyVersion, ""
	if !meta.SignedAt.IsZero() {
		t := meta.SignedAt
		c.SignedAt = &t
	}
	if meta.KeyID != "" && meta.KeyID != k.ID() {
		c.Reason = fmt.Sprintf("signed content names key %s, verified with %s", meta.KeyID, k.ID())
		return
	}
	if err := keyScope(k, d); err != nil {
		c.Reason = err.Error()
		return
	}
	if err := s.keys.Accept(k, meta.SignedAt); err != nil {
		c.Reason = err.Error()
		return
	}
	c.Valid = true
}
