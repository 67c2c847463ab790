package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Resolved is a reference pinned to a digest.
type Resolved struct {
	// Digest is the pinned reference; every later step MUST use it.
	Digest name.Digest
	// Descriptor is the manifest's descriptor as read and checked.
	Descriptor v1.Descriptor
}

// Resolve pins ref to a digest once. A tag is resolved with a HEAD (or GET
// where HEAD is not served); the manifest is then fetched by that digest and
// its content is hashed and compared with the digest, and its size with the cap.
func (r *Registries) Resolve(ctx context.Context, ref name.Reference) (Resolved, error) {
	opts, err := r.remoteOptions(ctx, ref.Context())
	if err != nil {
		return Resolved{}, err
	}
	var want name.Digest
	if d, ok := ref.(name.Digest); ok {
		want = d
	} else {
		desc, err := remote.Head(ref, opts...)
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusMethodNotAllowed || te.StatusCode == http.StatusBadRequest) {
			// Some registries serve no HEAD on manifests; GET the tag once instead.
			desc, err = r.getTag(ref, opts)
		}
		if err != nil {
			return Resolved{}, fmt.Errorf("resolve %s: %w", ref, classify(err))
		}
		if desc.Size > r.maxManifest {
			return Resolved{}, fmt.Errorf("resolve %s: manifest is %d bytes: %w", ref, desc.Size, ErrTooLarge)
		}
		want = ref.Context().Digest(desc.Digest.String())
	}
	desc, _, err := r.getManifest(ctx, want, opts)
	if err != nil {
		return Resolved{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	return Resolved{Digest: want, Descriptor: desc}, nil
}

// getTag resolves a tag with a GET, for registries without HEAD.
func (r *Registries) getTag(ref name.Reference, opts []remote.Option) (*v1.Descriptor, error) {
	got, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, err
	}
	if int64(len(got.Manifest)) > r.maxManifest {
		return nil, fmt.Errorf("manifest is %d bytes: %w", len(got.Manifest), ErrTooLarge)
	}
	d := got.Descriptor
	return &d, nil
}

// getManifest fetches the manifest at d, checking size and digest, and
// returns its descriptor and bytes.
func (r *Registries) getManifest(ctx context.Context, d name.Digest, opts []remote.Option) (v1.Descriptor, []byte, error) {
	type result struct {
		desc v1.Descriptor
		raw  []byte
	}
	res, err := memoize(ctx, "manifest|"+d.String(), func() (result, error) {
		got, err := remote.Get(d, opts...)
		if err != nil {
			return result{}, classify(err)
		}
		if int64(len(got.Manifest)) > r.maxManifest {
			return result{}, fmt.Errorf("manifest is %d bytes: %w", len(got.Manifest), ErrTooLarge)
		}
		h, _, err := v1.SHA256(bytesReader(got.Manifest))
		if err != nil {
			return result{}, err
		}
		if h.String() != d.DigestStr() {
			return result{}, fmt.Errorf("%w: asked %s, got %s", ErrDigestMismatch, d.DigestStr(), h)
		}
		return result{v1.Descriptor{MediaType: got.MediaType, Digest: h, Size: int64(len(got.Manifest))}, got.Manifest}, nil
	})
	return res.desc, res.raw, err
}

// getTagManifest reads the manifest a tag points at with one GET (no HEAD
// first), memoized within a decision, and returns it pinned to the digest
// of the bytes read. found is false where the tag does not exist. The
// transport caps the manifest before it is buffered.
func (r *Registries) getTagManifest(ctx context.Context, tag name.Tag, opts []remote.Option) (ref name.Digest, raw []byte, found bool, err error) {
	type result struct {
		ref   name.Digest
		raw   []byte
		found bool
	}
	res, err := memoize(ctx, "tagmanifest|"+tag.String(), func() (result, error) {
		got, err := remote.Get(tag, opts...)
		if err != nil {
			if err := classify(err); errors.Is(err, ErrNotFound) {
				return result{}, nil
			}
			return result{}, classify(err)
		}
		if int64(len(got.Manifest)) > r.maxManifest {
			return result{}, fmt.Errorf("manifest is %d bytes: %w", len(got.Manifest), ErrTooLarge)
		}
		h, _, err := v1.SHA256(bytesReader(got.Manifest))
		if err != nil {
			return result{}, err
		}
		return result{ref: tag.Context().Digest(h.String()), raw: got.Manifest, found: true}, nil
	})
	return res.ref, res.raw, res.found, err
}
