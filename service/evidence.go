package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

// evidenceStore reads what a registry holds about a digest, in both of
// cosign's layouts. The bytes are as stored: nothing is trusted yet.
type evidenceStore interface {
	LegacySignatures(ctx context.Context, subject name.Digest, max int) (string, []oci.StoredSignature, error)
	LegacyAttestations(ctx context.Context, subject name.Digest, predicateType string, max int) ([]oci.StoredEnvelope, error)
	Bundles(ctx context.Context, subject name.Digest, mediaType, predicateType string, max int) ([]oci.StoredBundle, error)
}

// prefetcher is an evidenceStore that can start a digest's first reads
// ahead of need (oci.Registries.Prefetch).
type prefetcher interface {
	Prefetch(ctx context.Context, subject name.Digest)
}

// Prefetch starts reading d's evidence into ctx's read memo, where the
// store can, and returns at once.
func (e *Evidence) Prefetch(ctx context.Context, d name.Digest) {
	if e == nil {
		return
	}
	if p, ok := e.read.(prefetcher); ok {
		p.Prefetch(ctx, d)
	}
}

type verifySet interface {
	All() []keys.Entry
	Accept(k *keys.Key, signedAt time.Time) error
	Revision() int64
}

// Evidence is the one reader of verified evidence about a digest: the
// signatures and attestations stored for it in both layouts, each checked
// against the key set (signature, binding to the digest, the key's
// repository scope, state and validity window) with its key, key version,
// signed time, origin and verdict. Signing, attestations, the gate and SBOMs
// read evidence only through it.
//
// It fails closed: a registry error is an error, never "verified"; a copy
// that does not verify is listed with the reason.
type Evidence struct {
	read evidenceStore
	keys verifySet
	quar keyQuarantine
}

// keyQuarantine says which keys are quarantined; *Quarantines is one. An
// error means the list in force is not known: nothing verifies.
type keyQuarantine interface {
	Key(keyID string) (*index.Quarantine, error)
}

// EvidenceOption configures the evidence reader.
type EvidenceOption func(*Evidence)

// WithKeyQuarantine makes signatures and attestations by a key q holds
// quarantined invalid, with the quarantine as the reason.
func WithKeyQuarantine(q keyQuarantine) EvidenceOption {
	return func(e *Evidence) { e.quar = q }
}

// NewEvidence returns the evidence reader.
func NewEvidence(read evidenceStore, ks verifySet, opts ...EvidenceOption) *Evidence {
	e := &Evidence{read: read, keys: ks}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Caps on the evidence read back for one digest.
const (
	maxStoredSignatures   = 256
	maxStoredAttestations = 512
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

const noKeyVerifies = "no key in the key set verifies it"

// SignatureCheck is the verdict on one stored signature.
type SignatureCheck struct {
	// Format is "legacy-tag" or "referrer".
	Format string
	// Ref is where the signature is stored.
	Ref string
	// Content identifies the copy within its layout.
	Content string
	// KeyID and KeyName name the key it verified with; empty if none did.
	KeyID, KeyName string
	// KeyVersion is the KMS key version the signature records, if any.
	KeyVersion string
	// SignedAt is the signed time, if the signature carries one.
	SignedAt *time.Time
	// Valid is true when the signature verifies, is bound to the digest and
	// its key's scope, state and window accept it.
	Valid bool
	// Reason says why it is not valid.
	Reason string

	// raw is the copy's original bytes, for evidence export.
	raw rawCopy
}

// rawCopy is a stored copy's original bytes: a legacy signature's payload
// and signature, or a referrer's sigstore bundle.
type rawCopy struct {
	payload, signature, bundle []byte
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

// Attestation is one stored attestation, checked against the key set.
type Attestation struct {
	Format string
	Ref    string
	// Content identifies the copy within its layout.
	Content       string
	PredicateType string
	KeyID         string
	KeyName       string
	KeyVersion    string
	SignedAt      *time.Time
	// Origin is who wrote the predicate, as signed: attest.OriginAttestd,
	// attest.OriginCaller, or "" where the statement does not say.
	Origin string
	Valid  bool
	Reason string
	// Envelope is the DSSE envelope JSON, as stored (legacy) or as carried
	// in the bundle.
	Envelope json.RawMessage
	// statement is the statement parsed from the exact bytes that verified.
	statement *attest.Statement
	// bundle is a referrer's sigstore bundle as stored, for evidence export.
	bundle []byte
}

// AttestationList is what is stored for a digest.
type AttestationList struct {
	Digest         string
	KeySetRevision int64
	Attestations   []Attestation
}

// verdict is what judging one copy found: the key it verified with (nil if
// none), its signed metadata, and why it does not count.
type verdict struct {
	key    *keys.Key
	meta   attest.SignMeta
	st     *attest.Statement
	valid  bool
	reason string
}

// judge tries every key of entries on one copy with try, which verifies the
// copy with a key's verifier and checks it is bound to d. The first key that
// verifies it decides: then the signed key id, the key's repository scope,
// state and window apply.
func (e *Evidence) judge(entries []keys.Entry, d name.Digest, hint string, try func(v signature.Verifier) (attest.SignMeta, *attest.Statement, error)) verdict {
	out := verdict{reason: noKeyVerifies}
	for _, en := range entries {
		if hint != "" && string(en.Key.Hint()) != hint {
			continue
		}
		v, err := en.Key.Verifier()
		if err != nil {
			continue
		}
		meta, st, err := try(v)
		if err != nil {
			if reportable(err) {
				out.reason = err.Error()
			}
			continue
		}
		out = verdict{key: en.Key, meta: meta, st: st}
		switch {
		case meta.KeyID != "" && meta.KeyID != en.Key.ID():
			out.reason = fmt.Sprintf("signed content names key %s, verified with %s", meta.KeyID, en.Key.ID())
		case !en.Key.Allows(d.Context().Name()):
			out.reason = fmt.Sprintf("key %s is scoped to %s, not %s", en.Key.Name(), strings.Join(en.Key.Repositories(), ", "), d.Context().Name())
		default:
			if err := e.keys.Accept(en.Key, meta.SignedAt); err != nil {
				out.reason = err.Error()
			} else if reason, ok := e.keyQuarantined(en.Key.ID()); ok {
				out.reason = reason
			} else {
				out.valid = true
			}
		}
		return out
	}
	return out
}

func signedAt(m attest.SignMeta) *time.Time {
	if m.SignedAt.IsZero() {
		return nil
	}
	t := m.SignedAt
	return &t
}

// Signatures reads and checks every image signature stored for d.
func (e *Evidence) Signatures(ctx context.Context, d name.Digest) (SignatureReport, error) {
	rep := SignatureReport{Image: d.String(), Digest: d.DigestStr(), KeySetRevision: e.keys.Revision(), Signatures: []SignatureCheck{}}
	entries := e.keys.All()
	add := func(format, ref, content string, raw rawCopy, v verdict) {
		c := SignatureCheck{Format: format, Ref: ref, Content: content, Valid: v.valid, Reason: v.reason, raw: raw}
		if v.key != nil {
			c.KeyID, c.KeyName, c.KeyVersion, c.SignedAt = v.key.ID(), v.key.Name(), v.meta.KeyVersion, signedAt(v.meta)
		}
		if c.Valid {
			c.Reason = ""
		}
		rep.Signatures = append(rep.Signatures, c)
		rep.Verified = rep.Verified || c.Valid
	}

	// Both layouts are read at once; they are judged in a fixed order.
	var (
		sigRef  string
		sigs    []oci.StoredSignature
		bundles []oci.StoredBundle
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		sigRef, sigs, err = e.read.LegacySignatures(gctx, d, maxStoredSignatures)
		return err
	})
	g.Go(func() (err error) {
		bundles, err = e.read.Bundles(gctx, d, attest.BundleMediaType, attest.CosignSignPredicateType, maxStoredSignatures)
		return err
	})
	if err := g.Wait(); err != nil {
		return SignatureReport{}, registryErr(err)
	}
	for _, sg := range sigs {
		add("legacy-tag", sigRef, oci.LegacySignatureContent(sg.Payload, sg.Signature), rawCopy{payload: sg.Payload, signature: sg.Signature}, e.judge(entries, d, "", func(v signature.Verifier) (attest.SignMeta, *attest.Statement, error) {
			m, err := legacyMeta(sg, d, v)
			return m, nil, err
		}))
	}
	for _, b := range bundles {
		env, err := attest.ParseBundle(b.Bundle)
		if err != nil {
			add("referrer", b.Ref, oci.RefContent(b.Ref), rawCopy{bundle: b.Bundle}, verdict{reason: err.Error()})
			continue
		}
		add("referrer", b.Ref, oci.RefContent(b.Ref), rawCopy{bundle: b.Bundle}, e.judge(entries, d, env.Hint, func(v signature.Verifier) (attest.SignMeta, *attest.Statement, error) {
			st, err := checkDSSE(env, d, v, attest.CosignSignPredicateType)
			if err != nil {
				return attest.SignMeta{}, nil, err
			}
			return st.Meta, st, nil
		}))
	}
	return rep, nil
}

// Attestations reads and checks the attestations stored for d, of one
// predicate type ("" for every type but image signatures).
func (e *Evidence) Attestations(ctx context.Context, d name.Digest, predicateType string) (AttestationList, error) {
	out := AttestationList{Digest: d.DigestStr(), KeySetRevision: e.keys.Revision(), Attestations: []Attestation{}}
	entries := e.keys.All()
	add := func(at Attestation, v verdict) {
		at.Valid, at.Reason = v.valid, v.reason
		if v.key != nil {
			at.KeyID, at.KeyName, at.KeyVersion, at.SignedAt = v.key.ID(), v.key.Name(), v.meta.KeyVersion, signedAt(v.meta)
			at.PredicateType, at.Origin, at.statement = v.st.PredicateType, v.meta.Origin, v.st
		}
		if at.Valid {
			at.Reason = ""
		}
		out.Attestations = append(out.Attestations, at)
	}
	check := func(env *attest.BundleEnvelope) func(v signature.Verifier) (attest.SignMeta, *attest.Statement, error) {
		return func(v signature.Verifier) (attest.SignMeta, *attest.Statement, error) {
			st, err := checkDSSE(env, d, v, predicateType)
			if err != nil {
				return attest.SignMeta{}, nil, err
			}
			return st.Meta, st, nil
		}
	}

	// Both layouts are read at once; they are judged in a fixed order.
	var (
		envs    []oci.StoredEnvelope
		bundles []oci.StoredBundle
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		envs, err = e.read.LegacyAttestations(gctx, d, predicateType, maxStoredAttestations)
		return err
	})
	g.Go(func() (err error) {
		bundles, err = e.read.Bundles(gctx, d, attest.BundleMediaType, predicateType, maxStoredAttestations)
		return err
	})
	if err := g.Wait(); err != nil {
		return AttestationList{}, registryErr(err)
	}
	for _, s := range envs {
		at := Attestation{Format: "legacy-tag", Ref: s.Ref, Content: oci.EnvelopeContent(s.Envelope), PredicateType: s.PredicateType, Envelope: s.Envelope}
		env, err := attest.ParseEnvelope(s.Envelope)
		if err != nil {
			at.Envelope = nil
			add(at, verdict{reason: err.Error()})
			continue
		}
		add(at, e.judge(entries, d, "", check(env)))
	}
	for _, b := range bundles {
		at := Attestation{Format: "referrer", Ref: b.Ref, Content: oci.RefContent(b.Ref), bundle: b.Bundle}
		env, err := attest.ParseBundle(b.Bundle)
		if err != nil {
			add(at, verdict{reason: err.Error()})
			continue
		}
		if ej, err := attest.Envelope(env.PayloadType, env.Payload, env.Signatures[0]); err == nil {
			at.Envelope = ej
		}
		v := e.judge(entries, d, env.Hint, check(env))
		if predicateType == "" && v.st != nil && v.st.PredicateType == attest.CosignSignPredicateType {
			continue // image signatures are read by Signatures
		}
		add(at, v)
	}
	return out, nil
}

// legacyMeta verifies a cosign simple-signing signature with v and checks
// that it signs d. It returns the signed metadata.
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

// keyQuarantined says why copies by the key with id keyID do not count, if
// a quarantine holds it or the quarantine list could not be read.
func (e *Evidence) keyQuarantined(keyID string) (string, bool) {
	if e.quar == nil {
		return "", false
	}
	x, err := e.quar.Key(keyID)
	switch {
	case err != nil:
		return err.Error(), true
	case x != nil:
		return quarantineReason(x), true
	}
	return "", false
}
