package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	cstatic "github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"
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
	// Content identifies the copy within its layout (see LegacySignatureContent).
	Content string `json:"content,omitempty"`
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// WriteLegacySignature attaches a cosign simple-signing signature to the
// `sha256-<hex>.sig` tag of subject. A signature that the verifier accepts
// over the same payload is already there counts as a duplicate (cosign's
// rule), and nothing is written.
func (r *Registries) WriteLegacySignature(ctx context.Context, subject name.Digest, payload, sig []byte, v signature.Verifier) (Location, error) {
	b64 := base64.StdEncoding.EncodeToString(sig)
	s, err := cstatic.NewSignature(payload, b64)
	if err != nil {
		return Location{}, err
	}
	ann, err := s.Annotations()
	if err != nil {
		return Location{}, err
	}
	ld, err := s.Digest()
	if err != nil {
		return Location{}, err
	}
	mt, err := s.MediaType()
	if err != nil {
		return Location{}, err
	}
	dupe := func(l v1.Descriptor) bool {
		if l.Digest != ld || l.MediaType != mt {
			return false
		}
		for k, val := range ann {
			if k != cstatic.SignatureAnnotationKey && l.Annotations[k] != val {
				return false
			}
		}
		old, err := base64.StdEncoding.DecodeString(l.Annotations[cstatic.SignatureAnnotationKey])
		return err == nil && v.VerifySignature(bytes.NewReader(old), bytes.NewReader(payload)) == nil
	}
	tag := SignatureTag(subject)
	ref, existed, err := r.appendLegacy(ctx, tag, s, ann, dupe)
	if err != nil {
		return Location{}, err
	}
	return Location{Kind: "legacy-tag", Tag: tag.String(), Ref: ref.String(), Existed: existed, Content: LegacySignatureContent(payload, sig)}, nil
}

// WriteBundleReferrer stores a sigstore bundle as an OCI 1.1 referrer of
// subject, in the shape cosign v3 writes: an empty config, the bundle as the
// only layer, artifactType application/vnd.dev.sigstore.bundle.v0.3+json. The
// registry's referrers API is probed; where it has none, ggcr maintains the
// tag-schema fallback index at tag `sha256-<hex>`.
func (r *Registries) WriteBundleReferrer(ctx context.Context, subject Resolved, bundle []byte, mediaType, predicateType string) (Location, error) {
	repo := subject.Digest.Context()
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return Location{}, err
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
	return Location{Kind: "referrer", Ref: ref.String(), Content: h.String()}, nil
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// Referrers lists the referrers of subject with the given artifact type,
// through the referrers API or the tag-schema fallback.
func (r *Registries) Referrers(ctx context.Context, subject name.Digest, artifactType string) ([]v1.Descriptor, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return nil, err
	}
	host := r.hosts[strings.ToLower(subject.RegistryStr())]
	im, err := memoize(ctx, "referrers|"+subject.String(), func() (*v1.IndexManifest, error) {
		if host.NoReferrersAPI {
			return r.fallbackReferrers(ctx, subject, opts)
		}
		idx, err := remote.Referrers(subject, opts...)
		if err != nil {
			return nil, fmt.Errorf("list referrers of %s: %w", subject, classify(err))
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
		}
		return im, nil
	})
	if err != nil {
		return nil, err
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

// Prefetch starts the first reads of subject's evidence (its `.sig` and
// `.att` manifests and its referrer list) into ctx's read memo and returns
// at once, so that a decision still resolving the digest reads them
// meanwhile; the evidence reads then find them in the memo. Without a memo
// in ctx it does nothing. Errors are left for the reads that need them.
func (r *Registries) Prefetch(ctx context.Context, subject name.Digest) {
	if _, ok := ctx.Value(memoKey{}).(*memo); !ok {
		return
	}
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return
	}
	for _, tag := range []name.Tag{SignatureTag(subject), AttestationTag(subject)} {
		go func() { _, _, _, _ = r.getTagManifest(ctx, tag, opts) }()
	}
	go func() { _, _ = r.Referrers(ctx, subject, "") }()
}

// fallbackReferrers reads the tag-schema fallback index of subject (tag
// `sha256-<hex>`), as ggcr does after the referrers API answers 404; no
// such tag is an empty list.
func (r *Registries) fallbackReferrers(ctx context.Context, subject name.Digest, opts []remote.Option) (*v1.IndexManifest, error) {
	tag := subject.Context().Tag(strings.Replace(subject.DigestStr(), ":", "-", 1))
	_, raw, found, err := r.getTagManifest(ctx, tag, opts)
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
	}
	if !found {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
	}
	im, err := v1.ParseIndexManifest(bytesReader(raw))
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
	}
	return im, nil
}

// maxConcurrentReads bounds the registry reads one evidence read runs at
// once (the read budget bounds their bytes).
const maxConcurrentReads = 8

// maxBundleBytes caps a bundle, signature or attestation layer read back
// from a registry, and every blob read through the registry transport.
const maxBundleBytes = 64 << 20

// fetchSingleLayer reads the manifest at d and its one layer of mediaType,
// checking sizes and digests.
func (r *Registries) fetchSingleLayer(ctx context.Context, d name.Digest, mediaType string, opts []remote.Option) ([]byte, error) {
	_, raw, err := r.getManifest(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytesReader(raw))
	if err != nil {
		return nil, fmt.Errorf("referrer %s: %w", d, err)
	}
	if len(m.Layers) != 1 || string(m.Layers[0].MediaType) != mediaType {
		return nil, fmt.Errorf("referrer %s: want one %s layer", d, mediaType)
	}
	if m.Layers[0].Size > r.maxBlob {
		return nil, fmt.Errorf("referrer %s: %w", d, ErrTooLarge)
	}
	return r.readBlob(ctx, d.Context(), m.Layers[0].Digest.String(), m.Layers[0].Size, opts)
}

// readBlob reads the blob with the given digest and size from repo,
// checking both.
func (r *Registries) readBlob(ctx context.Context, repo name.Repository, digest string, size int64, opts []remote.Option) ([]byte, error) {
	return memoize(ctx, fmt.Sprintf("blob|%s@%s|%d", repo, digest, size), func() ([]byte, error) { return r.fetchBlob(repo, digest, size, opts) })
}

func (r *Registries) fetchBlob(repo name.Repository, digest string, size int64, opts []remote.Option) ([]byte, error) {
	l, err := remote.Layer(repo.Digest(digest), opts...)
	if err != nil {
		return nil, classify(err)
	}
	rc, err := l.Compressed() // verifies the digest as it reads
	if err != nil {
		return nil, classify(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, classify(err)
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("blob %s: %d bytes, the manifest says %d: %w", digest, len(b), size, ErrDigestMismatch)
	}
	return b, nil
}

// StoredBundle is a bundle read back from a referrer.
type StoredBundle struct {
	// Ref is the referrer manifest: repo@sha256:...
	Ref    string
	Bundle []byte
}

// Bundles returns the bundles of the referrers of subject with the given
// media type and predicate-type annotation ("" for any). More than max
// candidates is ErrTooLarge, decided from the referrer list before any
// referrer is fetched: a registry listing thousands of referrers MUST NOT
// make a decision fetch them one by one. An unreadable referrer is skipped,
// as it proves nothing.
func (r *Registries) Bundles(ctx context.Context, subject name.Digest, mediaType, predicateType string, max int) ([]StoredBundle, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return nil, err
	}
	descs, err := r.Referrers(ctx, subject, mediaType)
	if err != nil {
		return nil, err
	}
	var cands []v1.Descriptor
	for _, d := range descs {
		if p, ok := d.Annotations[AnnotationBundlePredicate]; ok && predicateType != "" && p != predicateType {
			continue
		}
		cands = append(cands, d)
	}
	if len(cands) > max {
		return nil, fmt.Errorf("%d referrers of %s, more than %d: %w", len(cands), subject, max, ErrTooLarge)
	}
	// Referrers are fetched concurrently; an unreadable or over-size one
	// proves nothing and is left out. The order is the list's.
	got := make([]*StoredBundle, len(cands))
	var g errgroup.Group
	g.SetLimit(maxConcurrentReads)
	for i, d := range cands {
		if d.Size > r.maxManifest {
			continue // an over-size referrer proves nothing; do not fetch it
		}
		g.Go(func() error {
			ref := subject.Context().Digest(d.Digest.String())
			if b, err := r.fetchSingleLayer(ctx, ref, mediaType, opts); err == nil {
				got[i] = &StoredBundle{Ref: ref.String(), Bundle: b}
			}
			return nil
		})
	}
	_ = g.Wait()
	var out []StoredBundle
	for _, b := range got {
		if b != nil {
			out = append(out, *b)
		}
	}
	return out, nil
}

// StoredSignature is one signature of a legacy `.sig` image.
type StoredSignature struct {
	Payload   []byte
	Signature []byte
}

// LegacySignatures reads the `sha256-<hex>.sig` image of subject and returns
// its manifest reference ("" if there is none) and its signatures, at most max.
func (r *Registries) LegacySignatures(ctx context.Context, subject name.Digest, max int) (string, []StoredSignature, error) {
	opts, err := r.remoteOptions(ctx, subject.Context())
	if err != nil {
		return "", nil, err
	}
	tag := SignatureTag(subject)
	ref, raw, found, err := r.getTagManifest(ctx, tag, opts)
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", tag, err)
	}
	if !found {
		return "", nil, nil
	}
	// Count and size the layers from the checked manifest before anything
	// else is fetched.
	m, err := v1.ParseManifest(bytesReader(raw))
	if err != nil {
		return "", nil, fmt.Errorf("read %s: %w", tag, err)
	}
	if len(m.Layers) > max {
		return "", nil, fmt.Errorf("%s holds %d signatures, more than %d: %w", tag, len(m.Layers), max, ErrTooLarge)
	}
	for _, l := range m.Layers {
		if l.Size > r.maxBlob {
			return "", nil, fmt.Errorf("%s: a signature payload of %d bytes: %w", tag, l.Size, ErrTooLarge)
		}
	}
	// The payloads are read concurrently; one that cannot be read, or a
	// signature annotation that does not decode, proves nothing and is
	// left out.
	got := make([]*StoredSignature, len(m.Layers))
	var g errgroup.Group
	g.SetLimit(maxConcurrentReads)
	for i, l := range m.Layers {
		g.Go(func() error {
			sig, err := base64.StdEncoding.DecodeString(l.Annotations[cstatic.SignatureAnnotationKey])
			if err != nil || len(sig) == 0 {
				return nil
			}
			p, err := r.readBlob(ctx, subject.Context(), l.Digest.String(), l.Size, opts)
			if err != nil {
				return nil
			}
			got[i] = &StoredSignature{Payload: p, Signature: sig}
			return nil
		})
	}
	_ = g.Wait()
	out := make([]StoredSignature, 0, len(got))
	for _, s := range got {
		if s != nil {
			out = append(out, *s)
		}
	}
	return ref.String(), out, nil
}
