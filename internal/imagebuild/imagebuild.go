// Package imagebuild builds attestd's container image without a Docker
// daemon or a base image: a multi-platform OCI index of images made from
// scratch with go-containerregistry — static binaries, the CA bundle, an
// /etc/passwd entry for a non-root user, and OCI labels — written as an
// OCI layout tar that `attestctl push` and `crane` accept. The same inputs
// give the same digest (file times and the created time are fixed).
package imagebuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// UID and GID of the image's user, "attestd" (distroless's nonroot ids).
const (
	UID = 65532
	GID = 65532
)

// Platform is one image of the index: its OS and architecture, and the
// binaries it holds, by their path in the image.
type Platform struct {
	OS, Arch string
	// Binaries maps a path in the image (/usr/local/bin/attestd) to a
	// file on this machine.
	Binaries map[string]string
}

// Options are what every platform's image shares.
type Options struct {
	// CABundle is the CA certificates file to ship as
	// /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates).
	CABundle string
	// Created is the image's creation time (from SOURCE_DATE_EPOCH or the
	// commit), so that a rebuild gives the same digest.
	Created time.Time
	// Labels are the OCI labels (org.opencontainers.image.*), set on each
	// image's config and as annotations of the index.
	Labels     map[string]string
	Entrypoint []string
	Cmd        []string
	Env        []string
	// DataDir is created owned by the image's user, for the data volume.
	DataDir string
	// Port is exposed (8080/tcp).
	Port string
}

// Build returns the OCI index of one image per platform.
func Build(o Options, platforms []Platform) (v1.ImageIndex, error) {
	if len(platforms) == 0 {
		return nil, errors.New("no platform to build")
	}
	if o.CABundle == "" {
		return nil, errors.New("no CA bundle: install ca-certificates, or name the file")
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	base, err := baseLayer(ca, o.DataDir, o.Created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		img, err := image(o, p, base)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", p.OS, p.Arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return mutate.Annotations(idx, o.Labels).(v1.ImageIndex), nil
}

func image(o Options, p Platform, base v1.Layer) (v1.Image, error) {
	if len(p.Binaries) == 0 {
		return nil, errors.New("no binary")
	}
	var files []file
	for dst, src := range p.Binaries {
		b, err := os.ReadFile(src) //nolint:gosec // the build names its own outputs
		if err != nil {
			return nil, err
		}
		files = append(files, file{name: dst, mode: 0o755, data: b})
	}
	bins, err := layer(files, o.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, base, bins)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = p.OS, p.Arch, v1.Time{Time: o.Created.UTC()}
	cf.Author = o.Labels["org.opencontainers.image.authors"]
	cf.Config.User = strconv.Itoa(UID) + ":" + strconv.Itoa(GID)
	cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Labels = o.Entrypoint, o.Cmd, o.Labels
	cf.Config.Env = append([]string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}, o.Env...)
	cf.Config.WorkingDir = o.DataDir
	if o.DataDir != "" {
		cf.Config.Volumes = map[string]struct{}{o.DataDir: {}}
	}
	if o.Port != "" {
		cf.Config.ExposedPorts = map[string]struct{}{o.Port: {}}
	}
	cf.History = nil
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, o.Labels).(v1.Image), nil
}

type file struct {
	name string
	mode int64
	dir  bool
	uid  int
	data []byte
}

// baseLayer is what every platform shares: the CA bundle, the user, /tmp
// and the data directory.
func baseLayer(ca []byte, dataDir string, at time.Time) (v1.Layer, error) {
	files := []file{
		{name: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nattestd:x:" + strconv.Itoa(UID) + ":" + strconv.Itoa(GID) + ":attestd:/home/attestd:/sbin/nologin\n")},
		{name: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nattestd:x:" + strconv.Itoa(GID) + ":\n")},
		{name: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "/tmp", mode: 0o1777, dir: true},
		{name: "/home/attestd", mode: 0o700, dir: true, uid: UID},
	}
	if dataDir != "" {
		files = append(files, file{name: dataDir, mode: 0o700, dir: true, uid: UID})
	}
	return layer(files, at)
}

// layer is a gzipped tar of files with their parent directories, in name
// order, with fixed times and owners: the same files give the same digest.
func layer(files []file, at time.Time) (v1.Layer, error) {
	byName := map[string]file{}
	for _, f := range files {
		f.name = path.Clean("/" + f.name)
		for d := path.Dir(f.name); d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = file{name: d, mode: 0o755, dir: true}
			}
		}
		byName[f.name] = f
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := byName[n]
		h := &tar.Header{Name: n[1:], Mode: f.mode, ModTime: at.UTC(), Uid: f.uid, Gid: f.uid, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// WriteLayoutTar writes idx as an OCI image layout in a tar to w, with
// ref as the index's org.opencontainers.image.ref.name.
func WriteLayoutTar(w io.Writer, idx v1.ImageIndex, ref string) error {
	dir, err := os.MkdirTemp("", "attestd-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
	}
	if err := p.AppendIndex(idx, opts...); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(p) //nolint:gosec // our own temporary directory
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
