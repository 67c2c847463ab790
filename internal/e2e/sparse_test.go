package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// TestSparseUploads sends image archives built by GNU tar --sparse, each a
// few KiB holding a 3 GiB sparse file, through the HTTP API: an OCI layout
// with a sparse extra blob and a docker save archive whose layer is sparse
// (with its true diff ID, so it would load), in GNU and POSIX formats. Each
// must get a 400 naming the sparse entry, push nothing, and leave the spool
// directory at a few KiB while the request runs.
func TestSparseUploads(t *testing.T) {
	requireGNUTar(t)
	const sparseSize = 3 << 30
	s := testenv.Start(t, func(c *app.Config) { c.MaxUploadBytes = 8 << 20 })
	signer := s.Token(t, "signer")
	cl := s.Client(t, signer)
	auth := &authn.Basic{Username: "ci", Password: signer}
	spool := filepath.Join(s.DataDir, "tmp")

	layoutDir, layoutNames, want := sparseLayout(t, sparseSize)
	saveDir, saveNames := sparseDockerSave(t, sparseSize)
	for _, c := range []struct {
		name   string
		dir    string
		names  []string
		format string
		entry  string // the sparse entry the error names
		gz     bool
	}{
		{"OCI layout, gnu", layoutDir, layoutNames, "gnu", "blobs/sha256/filler", false},
		{"OCI layout, posix", layoutDir, layoutNames, "posix", "blobs/sha256/filler", false},
		{"OCI layout, posix, gzipped", layoutDir, layoutNames, "posix", "blobs/sha256/filler", true},
		{"docker save, gnu", saveDir, saveNames, "gnu", "layer.tar", false},
		{"docker save, posix", saveDir, saveNames, "posix", "layer.tar", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := sparseGNUTar(t, c.dir, c.format, c.names...)
			if len(body) > 64<<10 {
				t.Fatalf("the archive is %d bytes; GNU tar did not write it sparse", len(body))
			}
			if c.gz {
				body = gz(body)
			}
			repo := s.RegistryHost + "/sparse/" + strings.ToLower(strings.NewReplacer(" ", "-", ",", "").Replace(c.name))
			var err error
			peak := watchDisk(t, spool, func() {
				_, err = upload(t, cl, body, client.UploadOptions{Repository: repo, Tag: "x", Kind: "image"})
			})
			t.Logf("upload of %d bytes: %v", len(body), err)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "sparse") || !strings.Contains(ce.Message, c.entry) {
				t.Errorf("upload: %v, want 400 naming the sparse entry %s", err, c.entry)
			}
			if peak > 1<<20 {
				t.Errorf("the spool directory reached %d bytes on disk during the upload; want at most 1 MiB", peak)
			}
			if tags, err := remote.List(mustRepo(t, repo), remote.WithAuth(auth)); err == nil && len(tags) > 0 {
				t.Errorf("the refused upload left tags %v", tags)
			}
			if c.dir == layoutDir {
				if _, err := remote.Head(mustRef(t, repo+"@"+want), remote.WithAuth(auth)); err == nil {
					t.Errorf("the refused upload pushed manifest %s", want)
				}
			}
		})
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("%d entries left in the spool directory", len(left))
	}
}

func requireGNUTar(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("tar", "--version").Output(); err != nil || !bytes.Contains(out, []byte("GNU tar")) {
		if os.Getenv("CI") != "" {
			t.Fatalf("GNU tar is needed to build sparse archives: %v %.40q", err, out)
		}
		t.Skipf("GNU tar is needed to build sparse archives: %v %.40q", err, out)
	}
}

// sparseGNUTar runs `tar --sparse --format=format -cf - -C dir names...`.
func sparseGNUTar(t *testing.T, dir, format string, names ...string) []byte {
	t.Helper()
	args := append([]string{"--sparse", "--format=" + format, "-cf", "-", "-C", dir}, names...)
	out, err := exec.Command("tar", args...).Output()
	if err != nil {
		t.Fatalf("tar %v: %v", args, err)
	}
	return out
}

// sparseFile makes p a sparse file of size bytes, as `truncate -s` does,
// keeping what it held, with 4 KiB of data in the middle.
func sparseFile(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644) //nolint:gosec // the test's own file
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("sparse\n"), 4096/7), size/2); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sparseLayout is an OCI layout of a random image plus a sparse extra blob,
// the files to tar, and the image's digest.
func sparseLayout(t *testing.T, size int64) (string, []string, string) {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	sparseFile(t, filepath.Join(dir, "blobs", "sha256", "filler"), size)
	return dir, []string{"oci-layout", "index.json", "blobs"}, d.String()
}

// sparseDockerSave is a docker save archive whose one layer is a small tar
// followed by a sparse run of zeros, with its true diff ID in the config.
func sparseDockerSave(t *testing.T, size int64) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	lp := filepath.Join(dir, "layer.tar")
	b := rawTar(entry{name: "hello.txt", typ: tar.TypeReg, body: "hello\n"})
	if err := os.WriteFile(lp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sparseFile(t, lp, size)
	f, err := os.Open(lp) //nolint:gosec // the test's own file
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"config.json":   fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}`, hex.EncodeToString(h.Sum(nil))),
		"manifest.json": `[{"Config":"config.json","RepoTags":["example.com/app:v1"],"Layers":["layer.tar"]}]`,
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, []string{"manifest.json", "config.json", "layer.tar"}
}

// watchDisk runs f while sampling, every few milliseconds, the bytes that
// the files under dir occupy on disk, and returns the largest sample.
func watchDisk(t *testing.T, dir string, f func()) int64 {
	t.Helper()
	var (
		peak int64
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	sample := func() {
		var n int64
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // a spool directory removed while walking
			}
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				} else {
					n += fi.Size()
				}
			}
			return nil
		})
		peak = max(peak, n)
	}
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	f()
	cancel()
	wg.Wait()
	sample()
	return peak
}
