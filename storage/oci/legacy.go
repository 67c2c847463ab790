package oci

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	gmutate "github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"golang.org/x/sync/errgroup"
)

// appendLegacy appends layer, with its annotations, to the cosign image at
// tag (a `.sig` or `.att` tag), or to cosign's empty image where the tag
// does not exist yet, the way cosign's mutate.AppendSignatures does. It
// reads the current image once (tag head, manifest, config) and writes only
// what is new: the layer and the config, concurrently, then the manifest.
//
// dupe, when set, is asked about each layer already in the image; if it
// answers true nothing is written, and existed is true.
//
// The caller holds the subject's write lock: the tag is read and replaced
// without anyone else writing it in between.
func (r *Registries) appendLegacy(ctx context.Context, tag name.Tag, layer v1.Layer, ann map[string]string, dupe func(v1.Descriptor) bool) (ref name.Digest, existed bool, err error) {
	repo := tag.Context()
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return name.Digest{}, false, err
	}
	var base v1.Image = empty.Signatures()
	desc, err := remote.Head(tag, opts...)
	switch {
	case err == nil:
		if desc.Size > r.maxManifest {
			return name.Digest{}, false, fmt.Errorf("read %s: %w", tag, ErrTooLarge)
		}
		cur := repo.Digest(desc.Digest.String())
		img, err := remote.Image(cur, opts...) // by digest: ggcr checks the manifest against it
		if err != nil {
			return name.Digest{}, false, fmt.Errorf("read %s: %w", tag, classify(err))
		}
		m, err := img.Manifest()
		if err != nil {
			return name.Digest{}, false, fmt.Errorf("read %s: %w", tag, classify(err))
		}
		if dupe != nil {
			for _, l := range m.Layers {
				if dupe(l) {
					return cur, true, nil
				}
			}
		}
		base = img
	case errors.Is(classify(err), ErrNotFound):
	default:
		return name.Digest{}, false, fmt.Errorf("read %s: %w", tag, classify(err))
	}

	img, err := gmutate.Append(base, gmutate.Addendum{Layer: layer, Annotations: ann})
	if err != nil {
		return name.Digest{}, false, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return name.Digest{}, false, err
	}
	m, err := img.Manifest()
	if err != nil {
		return name.Digest{}, false, err
	}
	var g errgroup.Group
	for _, l := range []v1.Layer{layer, static.NewLayer(cfg, m.Config.MediaType)} {
		g.Go(func() error { return remote.WriteLayer(repo, l, opts...) })
	}
	if err := g.Wait(); err != nil {
		return name.Digest{}, false, fmt.Errorf("upload %s blobs: %w", tag, classify(err))
	}
	if err := remote.Put(tag, img, opts...); err != nil {
		return name.Digest{}, false, fmt.Errorf("write %s: %w", tag, classify(err))
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, false, err
	}
	return repo.Digest(d.String()), false, nil
}
