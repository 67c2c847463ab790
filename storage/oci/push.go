package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// target is where a push goes: the tag if one is given, else the digest.
func target(repo name.Repository, tag string, d v1.Hash) (name.Reference, error) {
	if tag == "" {
		return repo.Digest(d.String()), nil
	}
	t, err := name.NewTag(repo.Name()+":"+tag, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%w: tag %q: %w", ErrBadReference, tag, err)
	}
	return t, nil
}

// PushImage pushes img (and its blobs) to repo, tagged if tag is set.
func (r *Registries) PushImage(ctx context.Context, repo name.Repository, tag string, img v1.Image) (Resolved, error) {
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return Resolved{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Resolved{}, err
	}
	ref, err := target(repo, tag, d)
	if err != nil {
		return Resolved{}, err
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		return Resolved{}, fmt.Errorf("push %s: %w", ref, classify(err))
	}
	return r.Resolve(ctx, repo.Digest(d.String()))
}

// PushIndex pushes a multi-platform index with every platform's image.
func (r *Registries) PushIndex(ctx context.Context, repo name.Repository, tag string, idx v1.ImageIndex) (Resolved, error) {
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return Resolved{}, err
	}
	d, err := idx.Digest()
	if err != nil {
		return Resolved{}, err
	}
	ref, err := target(repo, tag, d)
	if err != nil {
		return Resolved{}, err
	}
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return Resolved{}, fmt.Errorf("push %s: %w", ref, classify(err))
	}
	return r.Resolve(ctx, repo.Digest(d.String()))
}

// FileArtifact describes a file to store as an OCI artifact.
type FileArtifact struct {
	// Path, Size and Digest describe the spooled file; Digest is "sha256:<hex>".
	Path   string
	Size   int64
	Digest string
	// Title is the file name recorded in org.opencontainers.image.title.
	Title string
	// MediaType is the layer's media type.
	MediaType string
	// ArtifactType is the manifest's artifactType.
	ArtifactType string
}

// PushFile stores a file as an OCI artifact (ORAS-style): an empty config
// and the file as its only layer, so that signatures and attestations can
// refer to its manifest digest. The manifest is written only after the
// blob is stored.
func (r *Registries) PushFile(ctx context.Context, repo name.Repository, tag string, f FileArtifact) (Resolved, error) {
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return Resolved{}, err
	}
	h, err := v1.NewHash(f.Digest)
	if err != nil {
		return Resolved{}, err
	}
	blob := &fileLayer{path: f.Path, size: f.Size, digest: h, mt: types.MediaType(f.MediaType)}
	empty := static.NewLayer([]byte("{}"), emptyConfigMediaType)
	for _, l := range []v1.Layer{empty, blob} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return Resolved{}, fmt.Errorf("upload blob: %w", classify(err))
		}
	}
	cd, _ := empty.Digest()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: emptyConfigMediaType, Digest: cd, Size: 2},
		Layers: []v1.Descriptor{{
			MediaType: types.MediaType(f.MediaType), Digest: h, Size: f.Size,
			Annotations: map[string]string{"org.opencontainers.image.title": filepath.Base(f.Title)},
		}},
		ArtifactType: f.ArtifactType,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Resolved{}, err
	}
	md, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return Resolved{}, err
	}
	ref, err := target(repo, tag, md)
	if err != nil {
		return Resolved{}, err
	}
	if err := remote.Put(ref, rawManifest{raw: raw, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return Resolved{}, fmt.Errorf("write artifact manifest: %w", classify(err))
	}
	return Resolved{Digest: repo.Digest(md.String()), Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: md, Size: int64(len(raw))}}, nil
}

// fileLayer is a blob read from a file whose digest is already known.
type fileLayer struct {
	path   string
	size   int64
	digest v1.Hash
	mt     types.MediaType
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return os.Open(l.path)
}
