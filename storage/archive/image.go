package archive

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// Loaded is what an image archive holds: one image, or one index (a
// multi-platform image, every platform kept).
type Loaded struct {
	Image v1.Image
	Index v1.ImageIndex
}

// Digest is the manifest digest of the loaded image or index.
func (l Loaded) Digest() (v1.Hash, error) {
	if l.Index != nil {
		return l.Index.Digest()
	}
	return l.Image.Digest()
}

// LoadImage reads the spooled tar as an OCI image layout (index.json) or a
// `docker save` archive (manifest.json), and checks every blob's digest and
// size against what refers to it before anything is pushed. Uncompressed
// layer contents are not expanded (validate.Fast), so a layer cannot be a
// decompression bomb here. The tar itself is scanned first: an archive with
// a sparse entry, or whose entries hold more than its own size or
// l.MaxBytes, is refused before anything is extracted or read by ggcr.
func LoadImage(s *Spooled, l Limits) (Loaded, error) {
	entries, err := scan(s.Path, l)
	if err != nil {
		return Loaded{}, err
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.name] = true
	}
	var out Loaded
	switch {
	case names["index.json"]:
		out, err = loadLayout(s, entries, l)
	case names["manifest.json"]:
		out, err = loadDockerSave(s)
	default:
		return Loaded{}, fmt.Errorf("%w: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)", ErrFormat)
	}
	if err != nil {
		return Loaded{}, err
	}
	if out.Index != nil {
		err = checkIndex(out.Index, 0)
	} else {
		err = checkImage(out.Image)
	}
	if err != nil {
		return Loaded{}, fmt.Errorf("%w: content does not match its digests: %w", ErrFormat, err)
	}
	return out, nil
}

// checkImage validates the manifest and config (ggcr's validate, fast mode)
// and then every layer's compressed bytes against its digest and size. The
// layers are hashed as stored, never decompressed.
func checkImage(img v1.Image) error {
	if err := validate.Image(img, validate.Fast); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for i, l := range layers {
		want, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		got, n, err := v1.SHA256(rc)
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if got != want || n != size {
			return fmt.Errorf("layer %d: digest %s and size %d, the manifest says %s and %d", i, got, n, want, size)
		}
	}
	return nil
}

// maxIndexDepth bounds nested indexes.
const maxIndexDepth = 4

func checkIndex(idx v1.ImageIndex, depth int) error {
	if depth > maxIndexDepth {
		return fmt.Errorf("indexes nested deeper than %d", maxIndexDepth)
	}
	if err := validate.Index(idx, validate.Fast); err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := checkIndex(child, depth+1); err != nil {
				return err
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			if err := checkImage(img); err != nil {
				return fmt.Errorf("%s: %w", d.Digest, err)
			}
		}
	}
	return nil
}

func loadLayout(s *Spooled, entries []entry, l Limits) (Loaded, error) {
	dir := filepath.Join(s.dir, "layout")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Loaded{}, err
	}
	if err := extract(s.Path, dir, entries, l); err != nil {
		return Loaded{}, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return Loaded{}, fmt.Errorf("%w: OCI layout: %w", ErrFormat, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return Loaded{}, fmt.Errorf("%w: OCI layout: %w", ErrFormat, err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		return Loaded{}, fmt.Errorf("%w: index.json: %w", ErrFormat, err)
	}
	if len(im.Manifests) != 1 {
		return Loaded{}, fmt.Errorf("%w: the layout's index.json lists %d manifests; upload one image or one multi-platform index", ErrFormat, len(im.Manifests))
	}
	d := im.Manifests[0]
	if d.MediaType.IsIndex() {
		idx, err := top.ImageIndex(d.Digest)
		if err != nil {
			return Loaded{}, fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return Loaded{Index: idx}, nil
	}
	if !d.MediaType.IsImage() {
		return Loaded{}, fmt.Errorf("%w: manifest media type %s", ErrFormat, d.MediaType)
	}
	img, err := top.Image(d.Digest)
	if err != nil {
		return Loaded{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return Loaded{Image: img}, nil
}

func loadDockerSave(s *Spooled) (Loaded, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(s.Path) }
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return Loaded{}, fmt.Errorf("%w: docker save archive: %w", ErrFormat, err)
	}
	if _, err := img.Manifest(); err != nil {
		return Loaded{}, fmt.Errorf("%w: docker save archive: %w", ErrFormat, err)
	}
	return Loaded{Image: img}, nil
}
