package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

type attestationWriter interface {
	WriteLegacyAttestation(ctx context.Context, subject name.Digest, envelope []byte, predicateType string) (oci.Location, error)
	WriteBundleReferrer(ctx context.Context, subject oci.Resolved, bundle []byte, mediaType, predicateType string) (oci.Location, error)
}

// Attestations signs in-toto attestations about artifacts and stores them
// next to each artifact as cosign's legacy `.att` tag and as a sigstore
// bundle referrer; it lists them back, verified.
type Attestations struct {
	resolve   resolver
	write     attestationWriter
	keys      signerSet
	evidence  *Evidence
	locks     writeLocker
	rec       recorder
	log       *slog.Logger
	now       func() time.Time
	builderID string
}

// NewAttestations returns the attestation service. builderID is the SLSA
// builder id attestd writes into the provenance it generates.
// locks serializes writes of one subject, shared with the signing service.
// Every attestation is recorded through rec before it is acknowledged.
func NewAttestations(r resolver, w attestationWriter, ev *Evidence, ks signerSet, locks writeLocker, rec recorder, builderID string, log *slog.Logger) *Attestations {
	return &Attestations{resolve: r, write: w, evidence: ev, keys: ks, locks: locks, rec: rec, log: log, now: time.Now, builderID: builderID}
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
	// LogIndex are the audit log indices of the events recorded, one per
	// subject, in order.
	LogIndex []uint64
}

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
	res, err := a.attest(ctx, attestWrite{actor: p, kind: EventAttestationCreated, key: key, subjects: []oci.Resolved{subj}, tags: [][]string{subjectTags(req.Subject)},
		predicateType: req.PredicateType, predicate: req.Predicate, origin: attest.OriginCaller})
	if err != nil {
		return AttestResult{}, err
	}
	a.log.InfoContext(ctx, "attested", "digest", res.Digest, "predicate_type", res.PredicateType, "key", key.Name(), "caller", p.Name)
	return res, nil
}

// attestGenerated signs a predicate attestd wrote itself (an SBOM it
// cataloged, for the caller who asked) about a digest already pinned and
// authorized, with origin "attestd" and the default key, and records it as
// an event of kind.
func (a *Attestations) attestGenerated(ctx context.Context, caller Principal, kind string, d name.Digest, predicateType string, predicate []byte) (AttestResult, error) {
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
	return a.attest(ctx, attestWrite{actor: caller, kind: kind, key: key, subjects: []oci.Resolved{subj}, predicateType: predicateType, predicate: predicate, origin: attest.OriginAttestd})
}

// refuseImpersonation refuses caller-submitted SLSA provenance that names
// attestd's builder id (or anything under it, in any letter case) or
// attestd's own build type: that provenance is attestd's to write.
func (a *Attestations) refuseImpersonation(predicateType string, predicate []byte) error {
	if strings.HasPrefix(predicateType, "https://slsa.dev/verification_summary/") {
		return a.refuseVSA(predicate)
	}
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

// refuseVSA refuses a caller-submitted verification summary that names
// attestd as its verifier (or anything under its id, in any letter case) or
// one of attestd's policies: those summaries are attestd's to write. (A
// gate accepts only VSAs whose signed origin is attestd in any case.)
func (a *Attestations) refuseVSA(predicate []byte) error {
	var p struct {
		Verifier struct{ ID string }  `json:"verifier"`
		Policy   struct{ URI string } `json:"policy"`
	}
	if err := json.Unmarshal(predicate, &p); err != nil {
		return fmt.Errorf("%w: verification summary: %w", ErrInvalid, err)
	}
	own := strings.ToLower(strings.TrimRight(a.builderID, "/"))
	if id := strings.ToLower(strings.TrimSpace(p.Verifier.ID)); id != "" && strings.HasPrefix(id, own) {
		return fmt.Errorf("%w: a verification summary naming attestd's verifier id %s is written only by attestd; a caller may not submit it", ErrForbidden, a.builderID)
	}
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(p.Policy.URI)), "urn:attestd:") {
		return fmt.Errorf("%w: a verification summary of an attestd policy is written only by attestd; a caller may not submit it", ErrForbidden)
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

// attestWrite is one statement to sign and store: about which subjects
// (with the tags they were named by), by which key, written by whom
// (origin), recorded as which event kind and actor.
type attestWrite struct {
	actor         Principal
	kind          string
	key           *keys.Key
	subjects      []oci.Resolved
	tags          [][]string
	predicateType string
	predicate     []byte
	origin        string
}

// attest signs one statement about the subjects, stores it next to each,
// and records one event per subject, in one transaction, before it returns.
func (a *Attestations) attest(ctx context.Context, w attestWrite) (AttestResult, error) {
	key := w.key
	v, err := key.Verifier()
	if err != nil {
		return AttestResult{}, err
	}
	meta := attest.SignMeta{SignedAt: a.now().UTC().Truncate(time.Second), KeyID: key.ID(), KeyVersion: key.Version(), Origin: w.origin, Identity: identityOf(w.actor)}
	var ss []attest.Subject
	for _, s := range w.subjects {
		ss = append(ss, attest.Subject{Name: s.Digest.Context().Name(), Digest: s.Digest.DigestStr()})
	}
	// Three reads of the predicate, each a full parse (a few hundred ms in
	// all for a large SBOM), run concurrently; their errors are answered in
	// this order whichever comes first. Provenance facts and SBOM packages
	// go to the index with the event, in its transaction; an SBOM that
	// cannot be indexed is refused here, before anything is signed.
	var (
		canon, stmt                 []byte
		fs                          facts
		canonErr, factsErr, stmtErr error
		wg                          sync.WaitGroup
	)
	wg.Go(func() { canon, canonErr = attest.Canonical(w.predicate) })
	wg.Go(func() { fs, factsErr = readFactsWithoutDigest(w.predicateType, w.predicate) })
	stmt, stmtErr = attest.NewStatement(ss, w.predicateType, w.predicate, meta)
	wg.Wait()
	switch {
	case canonErr != nil:
		return AttestResult{}, fmt.Errorf("%w: %w", ErrInvalid, canonErr)
	case factsErr != nil:
		return AttestResult{}, factsErr
	case stmtErr != nil:
		return AttestResult{}, fmt.Errorf("%w: %w", ErrInvalid, stmtErr)
	}
	fs.setDocDigest(canon)
	res := AttestResult{Digest: w.subjects[0].Digest.DigestStr(), PredicateType: w.predicateType, KeyID: key.ID(), KeyName: key.Name(), SignedAt: meta.SignedAt}
	var sig []byte // signed once, on first need
	var evs []Event
	for i, subj := range w.subjects {
		res.Subjects = append(res.Subjects, subj.Digest.String())
		locs, err := a.store(ctx, subj, key, v, stmt, &sig, w.predicateType, canon, w.origin)
		if err != nil {
			return AttestResult{}, err
		}
		res.Locations = append(res.Locations, locs...)
		var tags []string
		if i < len(w.tags) {
			tags = w.tags[i]
		}
		prov, sboms := fs.rows(subj.Digest, w.predicateType)
		evs = append(evs, Event{Kind: w.kind, Actor: w.actor, Repository: subj.Digest.Context().Name(), Digest: subj.Digest.DigestStr(), Tags: tags,
			KeyID: key.ID(), KeyName: key.Name(), KeyVersion: key.Version(), PredicateType: w.predicateType, Locations: locs,
			Evidence: evidenceRows(subj.Digest, "attestation", key.ID(), w.predicateType, w.origin, &meta.SignedAt, locs),
			Detail:   map[string]any{"origin": w.origin, "subjects": res.Subjects}, Provenance: prov, SBOMs: sboms})
	}
	rec, err := a.rec.Record(ctx, evs...)
	if err != nil {
		return AttestResult{}, err // stored but not recorded: a retry finds the copies
	}
	res.LogIndex = rec.LogIndex
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
	legacy, referrer, err := a.existing(ctx, subj.Digest, key, predicateType, canon, origin)
	if err != nil {
		return nil, registryErr(err)
	}
	if (legacy == nil || referrer == nil) && *sig == nil {
		if *sig, err = key.Sign(ctx, attest.PAE(attest.InTotoPayloadType, stmt)); err != nil {
			return nil, signErr(err)
		}
	}
	// Both layouts are written concurrently, under the subject's lock; a
	// copy written before the other failed stays, and a retry finds it.
	var g errgroup.Group
	if legacy == nil {
		g.Go(func() error {
			env, err := attest.Envelope(attest.InTotoPayloadType, stmt, *sig)
			if err != nil {
				return err
			}
			loc, err := a.write.WriteLegacyAttestation(ctx, subj.Digest, env, predicateType)
			if err != nil {
				return registryErr(fmt.Errorf("store attestation for %s: %w", subj.Digest, err))
			}
			legacy = &loc
			return nil
		})
	}
	if referrer == nil {
		g.Go(func() error {
			bundle, err := attest.Bundle(attest.InTotoPayloadType, stmt, *sig, key.Hint())
			if err != nil {
				return err
			}
			loc, err := a.write.WriteBundleReferrer(ctx, subj, bundle, attest.BundleMediaType, predicateType)
			if err != nil {
				return registryErr(fmt.Errorf("store attestation referrer for %s: %w", subj.Digest, err))
			}
			referrer = &loc
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return []oci.Location{*legacy, *referrer}, nil
}

// existing finds, in each layout, an attestation of predicateType by key
// for d whose predicate is canon, of the same origin.
func (a *Attestations) existing(ctx context.Context, d name.Digest, key *keys.Key, predicateType string, canon []byte, origin string) (legacy, referrer *oci.Location, err error) {
	list, err := a.evidence.Attestations(ctx, d, predicateType)
	if err != nil {
		return nil, nil, err
	}
	for _, at := range list.Attestations {
		if at.KeyID != key.ID() || at.statement == nil || at.Origin != origin {
			continue
		}
		if c, err := attest.Canonical(at.statement.Predicate); err != nil || !bytes.Equal(c, canon) {
			continue
		}
		loc := &oci.Location{Kind: at.Format, Ref: at.Ref, Existed: true, Content: at.Content}
		switch {
		case at.Format == "legacy-tag" && legacy == nil:
			loc.Tag = oci.AttestationTag(d).String()
			legacy = loc
		case at.Format == "referrer" && referrer == nil:
			referrer = loc
		}
	}
	return legacy, referrer, nil
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
	return a.evidence.Attestations(ctx, subj.Digest, predicateType)
}
