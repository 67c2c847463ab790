package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"

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
	WriteBundleReferrer(ctx context.Context, subject oci.Resolved, bundle []byte, mediaType, predicateType string) (oci.Location, error)
}

type signerSet interface {
	Signer(name string) (*keys.Key, error)
}

// Signing signs container images by digest and stores each signature twice:
// as cosign's legacy `.sig` tag and as a sigstore bundle referrer. What it
// signs carries the signing time and key id, inside the signature.
type Signing struct {
	resolve  resolver
	write    signatureWriter
	evidence *Evidence
	keys     signerSet
	locks    writeLocker
	rec      recorder
	log      *slog.Logger
	now      func() time.Time
}

// NewSigning returns the signing service. locks serializes writes of one
// subject; they are shared with the attestation service.
func NewSigning(r resolver, w signatureWriter, ev *Evidence, ks signerSet, locks writeLocker, rec recorder, log *slog.Logger) *Signing {
	return &Signing{resolve: r, write: w, evidence: ev, keys: ks, locks: locks, rec: rec, log: log, now: time.Now}
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
	Image string
	// Digest is the manifest digest that was signed.
	Digest string
	// KeyID is the id of the key that signed.
	KeyID string
	// KeyName is the configured name of the key that signed.
	KeyName string
	// KeyVersion is the KMS key version, where the KMS has one.
	KeyVersion string
	// Locations lists each stored copy.
	Locations []oci.Location
	// LogIndex is the signature event's index in the audit log.
	LogIndex *uint64
}

// Sign resolves req.Image to a digest and makes sure a signature by the key
// is stored in both layouts. A copy that is already there, made by the same
// key for the same digest, is kept and reported as existing: the KMS is not
// asked again.
//
// Writes of one subject are serialized (see writeLocker): concurrent signs
// by several keys each leave their signature, and concurrent signs by one
// key leave one copy in each layout.
//
// The signature is recorded as an event before Sign returns: registry
// write, then record, then answer.
//
// The two layouts are written concurrently. Partial success: if one write
// fails, the error is returned and the other copy stays; a retry finds it
// and writes only the missing one.
func (s *Signing) Sign(ctx context.Context, p Principal, req SignRequest) (SignResult, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return SignResult{}, err
	}
	key, err := s.keys.Signer(req.Key)
	switch {
	case errors.Is(err, keys.ErrNotSigning):
		return SignResult{}, fmt.Errorf("%w: %w", ErrForbidden, err)
	case err != nil:
		return SignResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ref, err := s.resolve.Parse(req.Image)
	if err != nil {
		return SignResult{}, registryErr(err)
	}
	if err := writeScope(p, ActionSign, key)(ref.Context().Name()); err != nil {
		return SignResult{}, err
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
	unlock, err := s.locks.Lock(ctx, subjectKey(d))
	if err != nil {
		return SignResult{}, err
	}
	defer unlock()
	legacy, referrer, err := s.existing(ctx, d, key)
	if err != nil {
		return SignResult{}, registryErr(err)
	}
	meta := attest.SignMeta{SignedAt: s.now().UTC().Truncate(time.Second), KeyID: key.ID(), KeyVersion: key.Version(), Identity: identityOf(p)}

	// The two layouts are written concurrently: they are different tags
	// and manifests, and the subject's lock is held for both.
	var g errgroup.Group
	if legacy == nil {
		g.Go(func() error {
			payload, err := attest.SimpleSigning(d, meta)
			if err != nil {
				return err
			}
			sig, err := key.Sign(ctx, payload)
			if err != nil {
				return signErr(err)
			}
			loc, err := s.write.WriteLegacySignature(ctx, d, payload, sig, v)
			if err != nil {
				return registryErr(fmt.Errorf("store legacy signature for %s: %w", d, err))
			}
			legacy = &loc
			return nil
		})
	}
	if referrer == nil {
		g.Go(func() error {
			stmt, err := attest.SignStatement(d, meta)
			if err != nil {
				return err
			}
			dsig, err := key.Sign(ctx, attest.PAE(attest.InTotoPayloadType, stmt))
			if err != nil {
				return signErr(err)
			}
			bundle, err := attest.Bundle(attest.InTotoPayloadType, stmt, dsig, key.Hint())
			if err != nil {
				return err
			}
			loc, err := s.write.WriteBundleReferrer(ctx, subj, bundle, attest.BundleMediaType, attest.CosignSignPredicateType)
			if err != nil {
				return registryErr(fmt.Errorf("store bundle referrer for %s: %w", d, err))
			}
			referrer = &loc
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		// A copy that was written stays; a retry finds it and writes only
		// the other.
		return SignResult{}, err
	}

	locs := []oci.Location{*legacy, *referrer}
	rec, err := s.rec.Record(ctx, Event{
		Kind: EventSignatureCreated, Actor: p, Repository: d.Context().Name(), Digest: d.DigestStr(), Tags: refTags(ref),
		KeyID: key.ID(), KeyName: key.Name(), KeyVersion: key.Version(), Locations: locs,
		Evidence: evidenceRows(d, "signature", key.ID(), attest.CosignSignPredicateType, "", &meta.SignedAt, locs),
	})
	if err != nil {
		// Stored but not recorded: the answer is a 503, and a retry finds
		// the copies and records them (as does attestd reindex).
		return SignResult{}, err
	}
	s.log.InfoContext(ctx, "signed image", "digest", d.DigestStr(), "repo", d.Context().String(), "key", key.Name(), "key_id", key.ID(), "caller", p.Name,
		"legacy_existed", legacy.Existed, "referrer_existed", referrer.Existed)
	return SignResult{
		Image:      d.String(),
		Digest:     d.DigestStr(),
		KeyID:      key.ID(),
		KeyName:    key.Name(),
		KeyVersion: key.Version(),
		Locations:  locs,
		LogIndex:   rec.FirstLogIndex(),
	}, nil
}

// existing finds copies already signed by key for d, in each layout.
func (s *Signing) existing(ctx context.Context, d name.Digest, key *keys.Key) (legacy, referrer *oci.Location, err error) {
	rep, err := s.evidence.Signatures(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range rep.Signatures {
		if c.KeyID != key.ID() {
			continue
		}
		loc := &oci.Location{Kind: c.Format, Ref: c.Ref, Existed: true, Content: c.Content}
		switch {
		case c.Format == "legacy-tag" && legacy == nil:
			loc.Tag = oci.SignatureTag(d).String()
			legacy = loc
		case c.Format == "referrer" && referrer == nil:
			referrer = loc
		}
	}
	return legacy, referrer, nil
}

// signErr maps a signing failure: a KMS that is down or slow is retryable
// (503); a signature that does not verify is the key's fault (502).
func signErr(err error) error {
	if errors.Is(err, keys.ErrBadSignature) {
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
