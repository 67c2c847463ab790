package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

type attestationWriter interface {
	WriteLegacyAttestation(ctx context.Context, subject name.Digest, envelope []byte, predicateType string) (oci.Location, error)
	WriteBundleReferrer(ctx context.Context, subject oci.Resolved, bundle []byte, mediaType, predicateType string) (oci.Location, error)
}

type attestationReader interface {
	LegacyAttestations(ctx context.Context, subject name.Digest, predicateType string, max int) ([]oci.StoredEnvelope, error)
	Bundles(ctx context.Context, subject name.Digest, mediaType, predicateType string, max int) ([]oci.StoredBundle, error)
}

type attestKeys interface {
	signerSet
	verifySet
}

// Attestations signs in-toto attestations about artifacts and stores them
// next to each artifact as cosign's legacy `.att` tag and as a sigstore
// bundle referrer; it lists them back, verified.
type Attestations struct {
	resolve   resolver
	write     attestationWriter
	read      attestationReader
	keys      attestKeys
	locks     writeLocker
	log       *slog.Logger
	now       func() time.Time
	builderID string
}

// NewAttestations returns the attestation service. builderID is the SLSA
// builder id attestd writes into the provenance it generates.
// locks serializes writes of one subject, shared with the signing service.
func NewAttestations(r resolver, w attestationWriter, rd attestationReader, ks attestKeys, locks writeLocker, builderID string, log *slog.Logger) *Attestations {
	return &Attestations{resolve: r, write: w, read: rd, keys: ks, locks: locks, log: log, now: time.Now, builderID: builderID}
}

// AttestRequest asks for a signed attestation.
type AttestRequest struct {
	Subject       SubjectRef
	PredicateType string
	Predicate     []byte
	// Key names the signing key; empty means the default key.
	Key string
}

// AttestResult says what was attested and where it is stored.
type AttestResult struct {
	Digest        string
	Subjects      []string
	PredicateType string
	KeyID         string
	KeyName       string
	SignedAt      time.Time
	Locations     []oci.Location
}

// maxStoredAttestations caps the attestations read back for one digest.
const maxStoredAttestations = 512

// Attest validates the predicate against its type, builds an in-toto
// Statement v1 about the subject's digest, signs its DSSE envelope once and
// stores it in both layouts. An identical predicate of the same type,
// already attested by the same key for the digest, is not stored again; a
// different one is appended, and earlier ones stay readable.
//
// The statement says, inside what is signed, that the caller wrote the
// predicate (origin "caller"). A caller may not submit provenance that
// claims attestd as its builder: only attestd's own provenance path
// writes that.
//
// Partial success: the legacy `.att` is written first; if the referrer
// write fails the error is returned, and a retry writes only the referrer.
func (a *Attestations) Attest(ctx context.Context, p Principal, req AttestRequest) (AttestResult, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return AttestResult{}, err
	}
	if err := attest.ValidatePredicate(req.PredicateType, req.Predicate); err != nil {
		return AttestResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := a.refuseImpersonation(req.PredicateType, req.Predicate); err != nil {
		return AttestResult{}, err
	}
	key, err := a.signer(req.Key)
	if err != nil {
		return AttestResult{}, err
	}
	subj, err := pin(ctx, a.resolve, req.Subject, writeScope(p, ActionSign, key))
	if err != nil {
		return AttestResult{}, err
	}
	res, err := a.attest(ctx, key, []oci.Resolved{subj}, req.PredicateType, req.Predicate, attest.OriginCaller)
	if err != nil {
		return AttestResult{}, err
	}
	a.log.InfoContext(ctx, "attested", "digest", res.Digest, "predicate_type", res.PredicateType, "key", key.Name(), "caller", p.Name)
	return res, nil
}

// attestGenerated signs a predicate attestd wrote itself (an SBOM it
// cataloged) about a digest already pinned and authorized, with origin
// "attestd" and the default key.
func (a *Attestations) attestGenerated(ctx context.Context, d name.Digest, predicateType string, predicate []byte) (AttestResult, error) {
	key, err := a.signer("")
	if err != nil {
		return AttestResult{}, err
	}
	if !key.Allows(d.Context().Name()) {
		return AttestResult{}, fmt.Errorf("%w: key %s may not sign in %s", ErrForbidden, key.Name(), d.Context().Name())
	}
	subj, err := pin(ctx, a.resolve, SubjectRef{Image: d.String()}, nil)
	if err != nil {
		return AttestResult{}, err
	}
	return a.attest(ctx, key, []oci.Resolved{subj}, predicateType, predicate, attest.OriginAttestd)
}

// refuseImpersonation refuses caller-submitted SLSA provenance that names
// attestd's builder id (or anything under it, in any letter case) or
// attestd's own build type: that provenance is attestd's to write.
func (a *Attestations) refuseImpersonation(predicateType string, predicate []byte) error {
	if !strings.HasPrefix(predicateType, "https://slsa.dev/provenance/") {
		return nil
	}
	var p struct {
		Builder    struct{ ID string } `json:"builder"` // v0.1, v0.2
		BuildType  string              `json:"buildType"`
		RunDetails struct {
			Builder struct{ ID string } `json:"builder"`
		} `json:"runDetails"` // v1
		BuildDefinition struct {
			BuildType string `json:"buildType"`
		} `json:"buildDefinition"`
	}
	if err := json.Unmarshal(predicate, &p); err != nil {
		return fmt.Errorf("%w: provenance: %w", ErrInvalid, err)
	}
	own := strings.ToLower(strings.TrimRight(a.builderID, "/"))
	for _, id := range []string{p.Builder.ID, p.RunDetails.Builder.ID} {
		if id != "" && strings.HasPrefix(strings.ToLower(strings.TrimSpace(id)), own) {
			return fmt.Errorf("%w: provenance naming attestd's builder id %s is written only by attestd (POST /v1/provenance); a caller may not submit it", ErrForbidden, a.builderID)
		}
	}
	for _, bt := range []string{p.BuildType, p.BuildDefinition.BuildType} {
		if strings.EqualFold(strings.TrimSpace(bt), ProvenanceBuildType) {
			return fmt.Errorf("%w: provenance of build type %s is written only by attestd (POST /v1/provenance)", ErrForbidden, ProvenanceBuildType)
		}
	}
	return nil
}

func (a *Attestations) signer(name string) (*keys.Key, error) {
	key, err := a.keys.Signer(name)
	switch {
	case errors.Is(err, keys.ErrNotSigning):
		return nil, fmt.Errorf("%w: %w", ErrForbidden, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return key, nil
}

// attest signs one statement about subjects and stores it next to each.
// origin says who wrote the predicate; it is signed with the statement.
func (a *Attestations) attest(ctx context.Context, key *keys.Key, subjects []oci.Resolved, predicateType string, predicate []byte, origin string) (AttestResult, error) {
	v, err := key.Verifier()
	if err != nil {
		return AttestResult{}, err
	}
	canon, err := attest.Canonical(predicate)
	if err != nil {
		return AttestResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	meta := attest.SignMeta{SignedAt: a.now().UTC().Truncate(time.Second), KeyID: key.ID(), KeyVersion: key.Version(), Origin: origin}
	var ss []attest.Subject
	for _, s := range subjects {
		ss = append(ss, attest.Subject{Name: s.Digest.Context().Name(), Digest: s.Digest.DigestStr()})
	}
	stmt, err := attest.NewStatement(ss, predicateType, predicate, meta)
	if err != nil {
		return AttestResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	res := AttestResult{Digest: subjects[0].Digest.DigestStr(), PredicateType: predicateType, KeyID: key.ID(), KeyName: key.Name(), SignedAt: meta.SignedAt}
	var sig []byte // signed once, on first need
	for _, subj := range subjects {
		res.Subjects = append(res.Subjects, subj.Digest.String())
		locs, err := a.store(ctx, subj, key, v, stmt, &sig, predicateType, canon, origin)
		if err != nil {
			return AttestResult{}, err
		}
		res.Locations = append(res.Locations, locs...)
	}
	return res, nil
}

// store makes sure the statement is stored about subj in both layouts,
// holding subj's write lock: what is already there is kept, and the
// statement is signed (*sig) on first need only.
func (a *Attestations) store(ctx context.Context, subj oci.Resolved, key *keys.Key, v signature.Verifier, stmt []byte, sig *[]byte, predicateType string, canon []byte, origin string) ([]oci.Location, error) {
	unlock, err := a.locks.Lock(ctx, subjectKey(subj.Digest))
	if err != nil {
		return nil, err
	}
	defer unlock()
	legacy, referrer, err := a.existing(ctx, subj.Digest, key, v, predicateType, canon, origin)
	if err != nil {
		return nil, registryErr(err)
	}
	if (legacy == nil || referrer == nil) && *sig == nil {
		if *sig, err = key.Sign(ctx, attest.PAE(attest.InTotoPayloadType, stmt)); err != nil {
			return nil, signErr(err)
		}
	}
	if legacy == nil {
		env, err := attest.Envelope(attest.InTotoPayloadType, stmt, *sig)
		if err != nil {
			return nil, err
		}
		loc, err := a.write.WriteLegacyAttestation(ctx, subj.Digest, env, predicateType)
		if err != nil {
			return nil, registryErr(fmt.Errorf("store attestation for %s: %w", subj.Digest, err))
		}
		legacy = &loc
	}
	if referrer == nil {
		bundle, err := attest.Bundle(attest.InTotoPayloadType, stmt, *sig, key.Hint())
		if err != nil {
			return nil, err
		}
		loc, err := a.write.WriteBundleReferrer(ctx, subj, bundle, attest.BundleMediaType, predicateType)
		if err != nil {
			return nil, registryErr(fmt.Errorf("store attestation referrer for %s: %w (the legacy attestation %s is stored)", subj.Digest, err, legacy.Ref))
		}
		referrer = &loc
	}
	return []oci.Location{*legacy, *referrer}, nil
}

// existing finds, in each layout, an attestation of predicateType by key
// for d whose predicate is canon, of the same origin.
func (a *Attestations) existing(ctx context.Context, d name.Digest, key *keys.Key, v signature.Verifier, predicateType string, canon []byte, origin string) (legacy, referrer *oci.Location, err error) {
	same := func(st *attest.Statement) bool {
		if st.Meta.Origin != origin {
			return false
		}
		c, err := attest.Canonical(st.Predicate)
		return err == nil && bytes.Equal(c, canon)
	}
	envs, err := a.read.LegacyAttestations(ctx, d, predicateType, maxStoredAttestations)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range envs {
		if st, err := checkEnvelope(e.Envelope, d, v, predicateType); err == nil && same(st) {
			tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".att")
			legacy = &oci.Location{Kind: "legacy-tag", Ref: e.Ref, Tag: tag.String(), Existed: true}
			break
		}
	}
	bundles, err := a.read.Bundles(ctx, d, attest.BundleMediaType, predicateType, maxStoredAttestations)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bundles {
		if st, err := checkBundle(b.Bundle, d, string(key.Hint()), v, predicateType); err == nil && same(st) {
			referrer = &oci.Location{Kind: "referrer", Ref: b.Ref, Existed: true}
			break
		}
	}
	return legacy, referrer, nil
}

// checkEnvelope verifies a DSSE envelope with v and checks that its
// statement is of predicateType ("" for any) about d.
func checkEnvelope(b []byte, d name.Digest, v signature.Verifier, predicateType string) (*attest.Statement, error) {
	env, err := attest.ParseEnvelope(b)
	if err != nil {
		return nil, err
	}
	return checkDSSE(env, d, v, predicateType)
}

// Attestation is one stored attestation, checked against the key set.
type Attestation struct {
	Format        string
	Ref           string
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
}

// AttestationList is what is stored for a digest.
type AttestationList struct {
	Digest         string
	KeySetRevision int64
	Attestations   []Attestation
}

// List returns the attestations stored for the subject, optionally of one
// predicate type, each verified against the key set. A registry error is an
// error; an attestation that does not verify is listed with the reason.
func (a *Attestations) List(ctx context.Context, p Principal, s SubjectRef, predicateType string) (AttestationList, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return AttestationList{}, err
	}
	subj, err := pin(ctx, a.resolve, s, nil)
	if err != nil {
		return AttestationList{}, err
	}
	return a.list(ctx, subj.Digest, predicateType)
}

// list returns the attestations stored for d, each verified.
func (a *Attestations) list(ctx context.Context, d name.Digest, predicateType string) (AttestationList, error) {
	out := AttestationList{Digest: d.DigestStr(), KeySetRevision: a.keys.Revision(), Attestations: []Attestation{}}
	entries := a.keys.All()
	envs, err := a.read.LegacyAttestations(ctx, d, predicateType, maxStoredAttestations)
	if err != nil {
		return AttestationList{}, registryErr(err)
	}
	for _, e := range envs {
		env, err := attest.ParseEnvelope(e.Envelope)
		at := Attestation{Format: "legacy-tag", Ref: e.Ref, PredicateType: e.PredicateType, Envelope: e.Envelope, Reason: "no key in the key set verifies it"}
		if err != nil {
			at.Reason = err.Error()
			at.Envelope = nil
		} else {
			a.judge(&at, env, d, entries, predicateType, "")
		}
		out.Attestations = append(out.Attestations, at)
	}
	bundles, err := a.read.Bundles(ctx, d, attest.BundleMediaType, predicateType, maxStoredAttestations)
	if err != nil {
		return AttestationList{}, registryErr(err)
	}
	for _, b := range bundles {
		at := Attestation{Format: "referrer", Ref: b.Ref, Reason: "no key in the key set verifies it"}
		env, err := attest.ParseBundle(b.Bundle)
		if err != nil {
			at.Reason = err.Error()
		} else {
			if ej, err := attest.Envelope(env.PayloadType, env.Payload, env.Signatures[0]); err == nil {
				at.Envelope = ej
			}
			a.judge(&at, env, d, entries, predicateType, env.Hint)
		}
		if at.PredicateType == attest.CosignSignPredicateType && predicateType == "" {
			continue // image signatures are listed by GET /v1/signatures
		}
		out.Attestations = append(out.Attestations, at)
	}
	return out, nil
}

func (a *Attestations) judge(at *Attestation, env *attest.BundleEnvelope, d name.Digest, entries []keys.Entry, predicateType, hint string) {
	for _, e := range entries {
		if hint != "" && string(e.Key.Hint()) != hint {
			continue
		}
		v, err := e.Key.Verifier()
		if err != nil {
			continue
		}
		st, err := checkDSSE(env, d, v, predicateType)
		if err != nil {
			if reportable(err) {
				at.Reason = err.Error()
			}
			continue
		}
		at.PredicateType, at.statement, at.Origin = st.PredicateType, st, st.Meta.Origin
		at.KeyID, at.KeyName, at.KeyVersion, at.Reason = e.Key.ID(), e.Key.Name(), st.Meta.KeyVersion, ""
		if !st.Meta.SignedAt.IsZero() {
			t := st.Meta.SignedAt
			at.SignedAt = &t
		}
		if st.Meta.KeyID != "" && st.Meta.KeyID != e.Key.ID() {
			at.Reason = fmt.Sprintf("signed content names key %s, verified with %s", st.Meta.KeyID, e.Key.ID())
			return
		}
		if err := keyScope(e.Key, d); err != nil {
			at.Reason = err.Error()
			return
		}
		if err := a.keys.Accept(e.Key, st.Meta.SignedAt); err != nil {
			at.Reason = err.Error()
			return
		}
		at.Valid = true
		return
	}
}
