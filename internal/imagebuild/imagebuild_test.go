package imagebuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/imagebuild"
	"github.com/attestd/attestd/internal/testenv"
)

// fixture writes stand-in binaries for two platforms and a CA bundle.
func fixture(t *testing.T) (imagebuild.Options, []imagebuild.Platform) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var ps []imagebuild.Platform
	for _, arch := range []string{"amd64", "arm64"} {
		ps = append(ps, imagebuild.Platform{OS: "linux", Arch: arch, Binaries: map[string]string{
			"/usr/local/bin/attestd":   write("attestd-"+arch, "\x7fELF attestd for "+arch),
			"/usr/local/bin/attestctl": write("attestctl-"+arch, "\x7fELF attestctl for "+arch),
		}})
	}
	o := imagebuild.Options{
		CABundle:   write("ca.crt", "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"),
		Created:    time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
		Labels:     map[string]string{"org.opencontainers.image.title": "attestd", "org.opencontainers.image.version": "v0.0.0-test"},
		Entrypoint: []string{"/usr/local/bin/attestd"}, Cmd: []string{"serve"},
		DataDir: "/var/lib/attestd", Port: "8080/tcp",
	}
	return o, ps
}

// files lists an image's files across its layers: name → header, body.
func files(t *testing.T, img v1.Image) map[string]struct {
	h    *tar.Header
	body string
} {
	t.Helper()
	out := map[string]struct {
		h    *tar.Header
		body string
	}{}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		mt, _ := l.MediaType()
		if mt != types.OCILayer {
			t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			out["/"+strings.TrimSuffix(h.Name, "/")] = struct {
				h    *tar.Header
				body string
			}{h, string(b)}
		}
		_ = rc.Close()
	}
	return out
}

// TestImageFromScratch: the index holds one OCI image per platform, each
// non-root, with its own binaries executable, the CA bundle, a passwd
// entry for its user, a data directory that user owns, and the labels; a
// rebuild from the same inputs has the same digest.
func TestImageFromScratch(t *testing.T) {
	o, ps := fixture(t)
	idx, err := imagebuild.Build(o, ps)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Annotations["org.opencontainers.image.version"] != "v0.0.0-test" {
		t.Fatalf("index: %d manifests, annotations %v", len(im.Manifests), im.Annotations)
	}
	for i, desc := range im.Manifests {
		arch := ps[i].Arch
		if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != arch || desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d: %+v", i, desc)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != arch || cf.OS != "linux" || cf.Config.User != "65532:65532" || cf.Config.Labels["org.opencontainers.image.title"] != "attestd" ||
			!cf.Created.Equal(o.Created) || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/attestd" {
			t.Errorf("%s config: %+v", arch, cf)
		}
		fs := files(t, img)
		if f := fs["/usr/local/bin/attestd"]; f.h == nil || f.h.Mode != 0o755 || f.body != "\x7fELF attestd for "+arch || f.h.Uid != 0 {
			t.Errorf("%s: attestd in the image: %+v", arch, f.h)
		}
		if !strings.Contains(fs["/etc/passwd"].body, "attestd:x:65532:65532:") || !strings.Contains(fs["/etc/ssl/certs/ca-certificates.crt"].body, "TEST") {
			t.Errorf("%s: passwd %q, CA bundle %q", arch, fs["/etc/passwd"].body, fs["/etc/ssl/certs/ca-certificates.crt"].body)
		}
		if d := fs["/var/lib/attestd"]; d.h == nil || d.h.Uid != imagebuild.UID || d.h.Typeflag != tar.TypeDir {
			t.Errorf("%s: the data directory is not the user's: %+v", arch, d.h)
		}
		for n, f := range fs {
			if !f.h.ModTime.Equal(o.Created) {
				t.Errorf("%s: %s has time %s: a rebuild would differ", arch, n, f.h.ModTime)
			}
		}
	}
	again, err := imagebuild.Build(o, ps)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds from the same inputs: %s and %s", d1, d2)
	}
}

// TestImageRefusesMissingInputs: no CA bundle, or a binary that is not
// there, fails the build rather than shipping an image without it.
func TestImageRefusesMissingInputs(t *testing.T) {
	o, ps := fixture(t)
	bad := o
	bad.CABundle = filepath.Join(t.TempDir(), "absent.crt")
	if _, err := imagebuild.Build(bad, ps); err == nil {
		t.Error("built without a CA bundle")
	}
	bad.CABundle = ""
	if _, err := imagebuild.Build(bad, ps); err == nil {
		t.Error("built with no CA bundle named")
	}
	ps[1].Binaries["/usr/local/bin/attestd"] = filepath.Join(t.TempDir(), "absent")
	if _, err := imagebuild.Build(o, ps); err == nil || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("built without arm64's attestd: %v", err)
	}
	if _, err := imagebuild.Build(o, nil); err == nil {
		t.Error("built an index of no image")
	}
}

// TestImageLayoutPushes: the OCI layout tar is accepted by attestd's
// upload (what `attestctl push` sends) into the embedded registry, which
// then serves the same index, both platforms pullable.
func TestImageLayoutPushes(t *testing.T) {
	o, ps := fixture(t)
	idx, err := imagebuild.Build(o, ps)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := imagebuild.WriteLayoutTar(&buf, idx, "v0.0.0-test"); err != nil {
		t.Fatal(err)
	}
	s := testenv.Start(t, nil)
	res, err := s.Admin.Upload(context.Background(), bytes.NewReader(buf.Bytes()), client.UploadOptions{
		Repository: s.RegistryHost + "/attestd/attestd", Tag: "v0.0.0-test", Kind: "image", Size: int64(buf.Len())})
	if err != nil {
		t.Fatalf("upload the layout: %v", err)
	}
	want, _ := idx.Digest()
	if res.Digest != want.String() {
		t.Errorf("pushed %s, built %s", res.Digest, want)
	}
	ref, err := name.ParseReference(s.RegistryHost + "/attestd/attestd:v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(ref, remote.WithAuth(&authn.Basic{Username: "admin", Password: s.AdminToken}))
	if err != nil {
		t.Fatalf("pull the index back: %v", err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("the registry serves %s, want %s", d, want)
	}
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img, err := remote.Image(ref, remote.WithPlatform(p), remote.WithAuth(&authn.Basic{Username: "admin", Password: s.AdminToken}))
		if err != nil {
			t.Fatalf("pull %s: %v", p, err)
		}
		if cf, err := img.ConfigFile(); err != nil || cf.Architecture != p.Architecture {
			t.Errorf("pull %s: %+v %v", p, cf, err)
		}
	}
}

// TestImageLayoutCranePushes: the crane CLI (pinned in tools/crane)
// pushes the extracted layout (the one index it holds), with the digest
// built.
func TestImageLayoutCranePushes(t *testing.T) {
	crane := os.Getenv("ATTESTD_CRANE")
	if crane == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ATTESTD_CRANE is not set: the crane CLI, built by make tools")
		}
		t.Skip("ATTESTD_CRANE is not set (make test sets it)")
	}
	o, ps := fixture(t)
	idx, err := imagebuild.Build(o, ps)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := imagebuild.WriteLayoutTar(&buf, idx, "v0.0.0-test"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name)) //nolint:gosec // our own tar, just written
		if h.Typeflag == tar.TypeDir {
			_ = os.MkdirAll(p, 0o755)
			continue
		}
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/attestd/attestd:v0.0.0-test"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, crane, "push", dir, ref).CombinedOutput()
	if err != nil {
		t.Fatalf("crane push: %v\n%s", err, out)
	}
	want, _ := idx.Digest()
	if !strings.Contains(string(out), want.String()) {
		t.Errorf("crane pushed %s, built %s", out, want)
	}
	r, _ := name.ParseReference(ref)
	got, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("the registry serves %s, want %s", d, want)
	}
}
