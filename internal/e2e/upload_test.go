package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// tarDir tars the files under dir, as `tar -C dir -cf - .` would.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = tw.Close()
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// ociLayout writes idx as an OCI image layout whose index.json lists it once.
func ociLayout(t *testing.T, idx v1.ImageIndex) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	return dir
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func rawTar(entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: e.typ, Linkname: e.link, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		_ = tw.WriteHeader(h)
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

func upload(t *testing.T, cl *client.Client, body []byte, o client.UploadOptions) (wire.ArtifactResponse, error) {
	t.Helper()
	o.Size = int64(len(body))
	return cl.Upload(context.Background(), bytes.NewReader(body), o)
}

func TestUploads(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) { c.MaxUploadBytes = 8 << 20; c.MaxDecompressionRatio = 20 })
	signer := s.Token(t, "signer")
	cl := s.Client(t, signer)
	repo := s.RegistryHost + "/up/app"

	t.Run("multi-platform OCI layout, gzipped, keeps every platform", func(t *testing.T) {
		idx, err := random.Index(512, 1, 3)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := idx.Digest()
		res, err := upload(t, cl, gz(tarDir(t, ociLayout(t, idx))), client.UploadOptions{Repository: repo, Tag: "multi", Kind: "image"})
		if err != nil {
			t.Fatalf("upload: %v", err)
		}
		if res.Digest != want.String() {
			t.Fatalf("digest %s, want %s", res.Digest, want)
		}
		got, err := remote.Index(mustRef(t, repo+":multi"))
		if err != nil {
			t.Fatal(err)
		}
		im, _ := got.IndexManifest()
		if len(im.Manifests) != 3 {
			t.Errorf("%d platforms pushed, want 3", len(im.Manifests))
		}
		for _, m := range im.Manifests {
			if _, err := remote.Image(mustRef(t, repo+"@"+m.Digest.String())); err != nil {
				t.Errorf("platform image %s missing: %v", m.Digest, err)
			}
		}
	})

	t.Run("docker save archive", func(t *testing.T) {
		img, _ := random.Image(1024, 2)
		want, _ := img.Digest()
		var buf bytes.Buffer
		tag, _ := name.NewTag("example.com/app:v1")
		if err := tarball.Write(tag, img, &buf); err != nil {
			t.Fatal(err)
		}
		res, err := upload(t, cl, buf.Bytes(), client.UploadOptions{Repository: repo, Tag: "saved", Kind: "image"})
		if err != nil || res.Digest != want.String() {
			t.Fatalf("upload docker save: %+v %v (want %s)", res, err, want)
		}
	})

	t.Run("a plain file becomes an OCI artifact that takes attestations", func(t *testing.T) {
		res, err := upload(t, cl, []byte("#!/bin/sh\necho release binary\n"), client.UploadOptions{Repository: s.RegistryHost + "/up/bin", Tag: "v1", Kind: "file", Filename: "tool"})
		if err != nil {
			t.Fatalf("upload file: %v", err)
		}
		m, err := remote.Get(mustRef(t, s.RegistryHost+"/up/bin@"+res.Digest))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(m.Manifest), `"artifactType":"application/vnd.attestd.file.v1"`) || !strings.Contains(string(m.Manifest), `"org.opencontainers.image.title":"tool"`) {
			t.Errorf("artifact manifest %s", m.Manifest)
		}
		if _, err := cl.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Repository: s.RegistryHost + "/up/bin", Digest: res.Digest},
			PredicateType: attest.PredicateSPDX, Predicate: fixture(t, "spdx.json")}); err != nil {
			t.Errorf("attest the artifact: %v", err)
		}
	})

	auth := &authn.Basic{Username: "ci", Password: signer}
	hostile := func(t *testing.T, name string, body []byte, status int, why string) {
		t.Helper()
		r := s.RegistryHost + "/hostile/" + strings.ReplaceAll(name, " ", "-")
		_, err := upload(t, cl, body, client.UploadOptions{Repository: r, Tag: "x", Kind: "image"})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != status || !strings.Contains(ce.Message, why) {
			t.Errorf("%s: %v, want %d naming %q", name, err, status, why)
		}
		if tags, err := remote.List(mustRepo(t, r), remote.WithAuth(auth)); err == nil && len(tags) > 0 {
			t.Errorf("%s: the rejected upload left tags %v", name, tags)
		}
	}
	t.Run("hostile uploads are refused and leave nothing", func(t *testing.T) {
		hostile(t, "path traversal", rawTar(entry{name: "../escape", typ: tar.TypeReg, body: "x"}, entry{name: "index.json", typ: tar.TypeReg, body: "{}"}), 400, "escapes")
		hostile(t, "absolute path", rawTar(entry{name: "/etc/cron.d/x", typ: tar.TypeReg, body: "x"}), 400, "absolute")
		hostile(t, "symlink out", rawTar(entry{name: "index.json", typ: tar.TypeSymlink, link: "../../../etc/passwd"}), 400, "links to")
		hostile(t, "absolute symlink", rawTar(entry{name: "blobs", typ: tar.TypeSymlink, link: "/etc"}), 400, "absolute")
		hostile(t, "hardlink out", rawTar(entry{name: "manifest.json", typ: tar.TypeLink, link: "../../x"}), 400, "hard-links")
		hostile(t, "link in a layout", rawTar(entry{name: "oci-layout", typ: tar.TypeReg, body: `{"imageLayoutVersion":"1.0.0"}`}, entry{name: "x", typ: tar.TypeReg, body: "x"}, entry{name: "index.json", typ: tar.TypeSymlink, link: "x"}), 400, "link")
		hostile(t, "not an archive", []byte("just some bytes"), 400, "tar")
		hostile(t, "decompression bomb", gz(make([]byte, 6<<20)), 400, "ratio")
		hostile(t, "over the size limit", bytes.Repeat([]byte("z"), 9<<20), 413, "size limit")

		// A layout whose blob does not match its digest.
		img, _ := random.Image(256, 1)
		dir := t.TempDir()
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		ld, _ := layers[0].Digest()
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", ld.Hex), []byte("tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		hostile(t, "layer digest mismatch", tarDir(t, dir), 400, "digest")
	})

	t.Run("upload needs a signer", func(t *testing.T) {
		var ce *client.Error
		_, err := upload(t, s.Client(t, s.Token(t, "verifier")), []byte("x"), client.UploadOptions{Repository: repo, Kind: "file"})
		if !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
			t.Errorf("verifier upload: %v, want 403", err)
		}
		_, err = upload(t, cl, []byte("x"), client.UploadOptions{Repository: "elsewhere.example/x", Kind: "file"})
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("upload to an unconfigured registry: %v, want 400", err)
		}
		_, err = upload(t, cl, []byte("x"), client.UploadOptions{Repository: repo + ":tag", Kind: "file"})
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("repository with a tag: %v, want 400", err)
		}
	})

	t.Run("no spool files are left behind", func(t *testing.T) {
		left, _ := os.ReadDir(filepath.Join(s.DataDir, "tmp"))
		if len(left) != 0 {
			t.Errorf("%d entries left in the spool directory", len(left))
		}
	})
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
