package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	cstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Annotation keys cosign v3 puts on a bundle referrer manifest.
const (
	AnnotationCreated         = "org.opencontainers.image.created"
	AnnotationBundleContent   = "dev.sigstore.bundle.content"
	AnnotationBundlePredicate = "dev.sigstore.bundle.predicateType"
	emptyConfigMediaType      = "application/vnd.oci.empty.v1+json"
)

// Location says where a copy of a signature or attestation is stored.
type Location struct {
	// Kind is "legacy-tag" or "referrer".
	Kind string `json:"kind"`
	// Ref is the pinned manifest holding the copy: repo@sha256:...
	Ref string `json:"ref"`
	// Tag is the tag that points at it, where there is one.
	Tag string `json:"tag,omitempty"`
	// Existed is true when an identical copy was already stored and nothing was written.
	Existed bool `json:"existed"`
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// WriteLegacySignature attaches a cosign simple-signing signature to the
// `sha256-<hex>.sig` tag of subject. A signature that the verifier accepts
// over the same payload is already there counts as a duplicate, and nothing
// is written.
func (r *Registries) WriteLegacySignature(ctx context.Context, subject name.Digest, payload, sig []byte, v signature.Verifier) (Location, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return Location{}, err
	}
	copts := []ociremote.Option{ociremote.WithRemoteOptions(opts...)}
	se := ociremote.SignedUnknown(subject, copts...)
	before, err := se.Signatures()
	if err != nil {
		return Location{}, fmt.Errorf("read existing signatures: %w", classify(err))
	}
	nBefore, err := countLayers(before)
	if err != nil {
		return Location{}, fmt.Errorf("read existing signatures: %w", classify(err))
	}
	s, err := cstatic.NewSignature(payload, base64.StdEncoding.EncodeToString(sig))
	if err != nil {
		return Location{}, err
	}
	se2, err := mutate.AttachSignatureToEntity(se, s, mutate.WithDupeDetector(cremote.NewDupeDetector(v)))
	if err != nil {
		return Location{}, fmt.Errorf("attach signature: %w", classify(err))
	}
	after, err := se2.Signatures()
	if err != nil {
		return Location{}, err
	}
	nAfter, err := countLayers(after)
	if err != nil {
		return Location{}, err
	}
	h, err := se.Digest()
	if err != nil {
		return Location{}, err
	}
	tag := subject.Context().Tag(fmt.Sprintf("%s-%s.sig", h.Algorithm, h.Hex))
	loc := Location{Kind: "legacy-tag", Tag: tag.String(), Existed: nAfter == nBefore}
	md, err := after.Digest()
	if err != nil {
		return Location{}, err
	}
	loc.Ref = subject.Context().Digest(md.String()).String()
	if loc.Existed {
		return loc, nil
	}
	if err := ociremote.WriteSignatures(subject.Context(), se2, copts...); err != nil {
		return Location{}, fmt.Errorf("write %s: %w", tag, classify(err))
	}
	return loc, nil
}

func countLayers(img v1.Image) (int, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	return len(m.Layers), nil
}

// SameFunc reports whether stored bundle bytes already hold what is about to
// be written, so that the write can be skipped.
type SameFunc func(bundle []byte) bool

// WriteBundleReferrer stores a sigstore bundle as an OCI 1.1 referrer of
// subject, in the shape cosign v3 writes: an empty config, the bundle as the
// only layer, artifactType application/vnd.dev.sigstore.bundle.v0.3+json. The
// registry's referrers API is probed; where it has none, ggcr maintains the
// tag-schema fallback index at tag `sha256-<hex>`. If an existing referrer
// with the same predicate type satisfies same, nothing is written.
func (r *Registries) WriteBundleReferrer(ctx context.Context, subject Resolved, bundle []byte, mediaType, predicateType string, same SameFunc) (Location, error) {
	repo := subject.Digest.Context()
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return Location{}, err
	}
	existing, err := r.findBundle(ctx, subject.Digest, mediaType, predicateType, same, opts)
	if err != nil {
		return Location{}, err
	}
	if existing != "" {
		return Location{Kind: "referrer", Ref: repo.Digest(existing).String(), Existed: true}, nil
	}

	empty := static.NewLayer([]byte("{}"), emptyConfigMediaType)
	layer := static.NewLayer(bundle, types.MediaType(mediaType))
	for _, l := range []v1.Layer{empty, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return Location{}, fmt.Errorf("upload bundle blob: %w", classify(err))
		}
	}
	cd, _ := empty.Digest()
	ld, _ := layer.Digest()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: emptyConfigMediaType, ArtifactType: mediaType, Digest: cd, Size: 2},
		Layers:        []v1.Descriptor{{MediaType: types.MediaType(mediaType), Digest: ld, Size: int64(len(bundle))}},
		Subject:       &v1.Descriptor{MediaType: subject.Descriptor.MediaType, Digest: subject.Descriptor.Digest, Size: subject.Descriptor.Size},
		Annotations: map[string]string{
			AnnotationCreated:         time.Now().UTC().Format(time.RFC3339),
			AnnotationBundleContent:   "dsse-envelope",
			AnnotationBundlePredicate: predicateType,
		},
		ArtifactType: mediaType,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Location{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return Location{}, err
	}
	ref := repo.Digest(h.String())
	if err := remote.Put(ref, rawManifest{raw: raw, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return Location{}, fmt.Errorf("write referrer %s: %w", ref, classify(err))
	}
	return Location{Kind: "referrer", Ref: ref.String()}, nil
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// maxReferrersScanned caps how many referrers are read when looking for a duplicate.
const maxReferrersScanned = 256

// findBundle returns the digest of an existing referrer of subject with the
// given artifact and predicate type whose bundle satisfies same, or "".
func (r *Registries) findBundle(ctx context.Context, subject name.Digest, mediaType, predicateType string, same SameFunc, opts []remote.Option) (string, error) {
	descs, err := r.Referrers(ctx, subject, mediaType)
	if err != nil {
		return "", err
	}
	n := 0
	for _, d := range descs {
		if d.Annotations[AnnotationBundlePredicate] != predicateType {
			continue
		}
		if n++; n > maxReferrersScanned {
			break
		}
		b, err := r.fetchSingleLayer(ctx, subject.Context().Digest(d.Digest.String()), mediaType, opts)
		if err != nil {
			continue // an unreadable referrer is not a duplicate
		}
		if same(b) {
			return d.Digest.String(), nil
		}
	}
	return "", nil
}

// Referrers lists the referrers of subject with the given artifact type,
// through the referrers API or the tag-schema fallback.
func (r *Registries) Referrers(ctx context.Context, subject name.Digest, artifactType string) ([]v1.Descriptor, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(subject, opts...)
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s: %w", subject, classify(err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
	}
	// Some registries report the config media type as the artifact type
	// (the OCI empty config here); callers confirm by reading the manifest.
	var out []v1.Descriptor
	for _, d := range im.Manifests {
		if d.ArtifactType == artifactType || d.ArtifactType == emptyConfigMediaType {
			out = append(out, d)
		}
	}
	return out, nil
}

// maxBundleBytes caps a bundle layer read back from a registry.
const maxBundleBytes = 64 << 20

// fetchSingleLayer reads the manifest at d and its one layer of mediaType,
// checking sizes and digests.
func (r *Registries) fetchSingleLayer(ctx context.Context, d name.Digest, mediaType string, opts []remote.Option) ([]byte, error) {
	if _, err := r.getManifest(ctx, d, opts); err != nil {
		return nil, err
	}
	img, err := remote.Image(d, opts...)
	if err != nil {
		return nil, classify(err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, classify(err)
	}
	if len(m.Layers) != 1 || string(m.Layers[0].MediaType) != mediaType {
		return nil, fmt.Errorf("referrer %s: want one %s layer", d, mediaType)
	}
	if m.Layers[0].Size > maxBundleBytes {
		return nil, fmt.Errorf("referrer %s: %w", d, ErrTooLarge)
	}
	l, err := remote.Layer(d.Context().Digest(m.Layers[0].Digest.String()), opts...)
	if err != nil {
		return nil, classify(err)
	}
	rc, err := l.Compressed() // verifies the digest as it reads
	if err != nil {
		return nil, classify(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, m.Layers[0].Size+1))
	if err != nil {
		return nil, classify(err)
	}
	if int64(len(b)) != m.Layers[0].Size {
		return nil, fmt.Errorf("referrer %s: layer size mismatch", d)
	}
	return b, nil
}

// ReadBundles returns the bundles of every referrer of subject with the given
// media type, up to max. Unreadable referrers are skipped.
func (r *Registries) ReadBundles(ctx context.Context, subject name.Digest, mediaType string, max int) ([][]byte, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return nil, err
	}
	descs, err := r.Referrers(ctx, subject, mediaType)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i, d := range descs {
		if i >= max {
			break
		}
		b, err := r.fetchSingleLayer(ctx, subject.Context().Digest(d.Digest.String()), mediaType, opts)
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return out, nil
}
