package oci

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	cstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v2/pkg/types"
	"golang.org/x/sync/errgroup"
)

// AnnotationPredicateType is the layer annotation cosign puts on a legacy
// attestation.
const AnnotationPredicateType = "predicateType"

// WriteLegacyAttestation appends a DSSE envelope to the `sha256-<hex>.att`
// image of subject, in the layout cosign v2 writes: a layer of media type
// application/vnd.dsse.envelope.v1+json annotated with its predicate type.
// Earlier attestations stay.
func (r *Registries) WriteLegacyAttestation(ctx context.Context, subject name.Digest, envelope []byte, predicateType string) (Location, error) {
	att, err := cstatic.NewAttestation(envelope,
		cstatic.WithLayerMediaType(ctypes.DssePayloadType),
		cstatic.WithAnnotations(map[string]string{AnnotationPredicateType: predicateType}))
	if err != nil {
		return Location{}, err
	}
	ann, err := att.Annotations()
	if err != nil {
		return Location{}, err
	}
	tag := AttestationTag(subject)
	ref, _, err := r.appendLegacy(ctx, tag, att, ann, nil)
	if err != nil {
		return Location{}, fmt.Errorf("write attestation: %w", err)
	}
	return Location{Kind: "legacy-tag", Tag: tag.String(), Ref: ref.String(), Content: EnvelopeContent(envelope)}, nil
}

// StoredEnvelope is one DSSE envelope of a legacy `.att` image.
type StoredEnvelope struct {
	// Ref is the `.att` manifest: repo@sha256:...
	Ref           string
	PredicateType string
	Envelope      []byte
}

// LegacyAttestations reads the `sha256-<hex>.att` image of subject and
// returns its envelopes with the given predicate type ("" for any), at most
// max of them in the image.
func (r *Registries) LegacyAttestations(ctx context.Context, subject name.Digest, predicateType string, max int) ([]StoredEnvelope, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return nil, err
	}
	tag := AttestationTag(subject)
	ref, raw, found, err := r.getTagManifest(ctx, tag, opts)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tag, err)
	}
	if !found {
		return nil, nil
	}
	m, err := v1.ParseManifest(bytesReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tag, err)
	}
	// Count and size every layer before the first is fetched.
	if len(m.Layers) > max {
		return nil, fmt.Errorf("%s holds %d attestations, more than %d: %w", tag, len(m.Layers), max, ErrTooLarge)
	}
	for _, l := range m.Layers {
		if l.Size > r.maxBlob {
			return nil, fmt.Errorf("%s: an attestation of %d bytes: %w", tag, l.Size, ErrTooLarge)
		}
	}
	got := make([]*StoredEnvelope, len(m.Layers))
	var g errgroup.Group
	g.SetLimit(maxConcurrentReads)
	for i, l := range m.Layers {
		pt := l.Annotations[AnnotationPredicateType]
		if predicateType != "" && pt != predicateType {
			continue
		}
		g.Go(func() error {
			if b, err := r.readBlob(ctx, subject.Context(), l.Digest.String(), l.Size, opts); err == nil {
				got[i] = &StoredEnvelope{Ref: ref.String(), PredicateType: pt, Envelope: b}
			} // an unreadable layer proves nothing
			return nil
		})
	}
	_ = g.Wait()
	var out []StoredEnvelope
	for _, e := range got {
		if e != nil {
			out = append(out, *e)
		}
	}
	return out, nil
}
