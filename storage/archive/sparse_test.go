package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// haveGNUTar reports whether tar is GNU tar.
func haveGNUTar() bool {
	out, err := exec.Command("tar", "--version").Output()
	return err == nil && bytes.Contains(out, []byte("GNU tar"))
}

// gnuTar runs GNU tar --sparse over names in dir and returns the archive.
// format is gnu or posix; version, if set, is posix's --sparse-version.
func gnuTar(tb testing.TB, dir, format, version string, names ...string) []byte {
	tb.Helper()
	if !haveGNUTar() {
		if os.Getenv("CI") != "" {
			tb.Fatal("GNU tar is needed to build sparse archives (Debian's tar)")
		}
		tb.Skip("GNU tar is needed to build sparse archives")
	}
	out := filepath.Join(tb.TempDir(), "out.tar")
	args := []string{"--sparse", "--format=" + format}
	if version != "" {
		args = append(args, "--sparse-version="+version)
	}
	args = append(append(args, "-cf", out, "-C", dir), names...)
	if b, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
		tb.Fatalf("tar %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sparseFile makes p a sparse file of size bytes, as `truncate -s` does,
// keeping what p held and with 4 KiB of data in the middle, so that it
// costs almost no disk. Its content depends only on what p held and size.
func sparseFile(tb testing.TB, p string, size int64) {
	tb.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("sparse\n"), 4096/7), size/2); err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// Archive layouts an attacker can upload.
const (
	kindLayout     = "OCI layout"
	kindDockerSave = "docker save"
)

// sparseDir writes an image archive's files to a new directory, with one
// sparse file of size bytes, and returns the directory, the files to tar
// and the sparse file's name in the archive.
//
// The OCI layout is a real random image plus an extra sparse blob. The
// docker save archive is a real image whose only layer is a small tar
// followed by a sparse run of zeros (still a valid tar), with the layer's
// true diff ID in its config, so that without the sparse check it loads.
func sparseDir(tb testing.TB, kind string, size int64) (dir string, names []string, sparse string) {
	tb.Helper()
	dir = tb.TempDir()
	switch kind {
	case kindLayout:
		img, err := random.Image(1024, 1)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			tb.Fatal(err)
		}
		if err := p.AppendImage(img); err != nil {
			tb.Fatal(err)
		}
		sparseFile(tb, filepath.Join(dir, "blobs", "sha256", "filler"), size)
		return dir, []string{"oci-layout", "index.json", "blobs"}, "blobs/sha256/filler"
	case kindDockerSave:
		var layer bytes.Buffer
		tw := tar.NewWriter(&layer)
		_ = tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 6, Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte("hello\n"))
		_ = tw.Close()
		lp := filepath.Join(dir, "layer.tar")
		if err := os.WriteFile(lp, layer.Bytes(), 0o644); err != nil {
			tb.Fatal(err)
		}
		sparseFile(tb, lp, size)
		diffID := layerDiffID(tb, lp, size)
		files := map[string]string{
			"config.json":   fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%q]}}`, diffID),
			"manifest.json": `[{"Config":"config.json","RepoTags":["example.com/app:v1"],"Layers":["layer.tar"]}]`,
		}
		for n, b := range files {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
		return dir, []string{"manifest.json", "config.json", "layer.tar"}, "layer.tar"
	}
	tb.Fatalf("kind %q", kind)
	return "", nil, ""
}

var diffIDs sync.Map // size → the diff ID of sparseDir's docker save layer

// layerDiffID is the sha256 of the layer at p, which depends only on size.
func layerDiffID(tb testing.TB, p string, size int64) string {
	tb.Helper()
	if d, ok := diffIDs.Load(size); ok {
		return d.(string)
	}
	f, err := os.Open(p) //nolint:gosec // the test's own file
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	diffIDs.Store(size, d)
	return d
}

type sparseArchive struct {
	body   []byte
	sparse string
}

var (
	sparseMu    sync.Mutex
	sparseCache = map[string]sparseArchive{}
)

// sparseTar is the archive of sparseDir(kind, size) made by GNU tar in
// format (gnu, or posix with the sparse version after a slash: posix/0.0),
// and the sparse entry's name. Archives are kept for the test binary's
// life: they are a few KiB.
func sparseTar(tb testing.TB, kind, format string, size int64) (archive []byte, sparse string) {
	tb.Helper()
	sparseMu.Lock()
	defer sparseMu.Unlock()
	key := fmt.Sprint(kind, format, size)
	if a, ok := sparseCache[key]; ok {
		return a.body, a.sparse
	}
	dir, names, sparse := sparseDir(tb, kind, size)
	f, v, _ := strings.Cut(format, "/")
	b := gnuTar(tb, dir, f, v, names...)
	sparseCache[key] = sparseArchive{body: b, sparse: sparse}
	return b, sparse
}

// diskUse walks dir and returns what its regular files occupy on disk
// (blocks), their apparent sizes summed, and the largest apparent size.
func diskUse(tb testing.TB, dir string) (blocks, size, largest int64) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			blocks += st.Blocks * 512
		} else {
			blocks += fi.Size()
		}
		size += fi.Size()
		largest = max(largest, fi.Size())
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return blocks, size, largest
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// TestSparseArchivesRefused uploads GNU tar --sparse archives (a 3 GiB
// sparse file in a few KiB of tar) as an OCI layout and as a docker save
// archive, in every sparse format GNU tar writes, and expects them refused
// before anything is extracted: the spool directory stays a few KiB.
func TestSparseArchivesRefused(t *testing.T) {
	const sparseSize = 3 << 30
	l := Limits{MaxBytes: 64 << 20, MaxRatio: 1000, MaxEntries: 1000}
	for _, kind := range []string{kindLayout, kindDockerSave} {
		for _, c := range []struct {
			format string // GNU tar's --format, and posix's --sparse-version after a slash
			gz     bool
			why    string // what the error names besides the entry
		}{
			{format: "gnu", why: "type 'S'"},
			{format: "posix", why: "PAX record GNU.sparse.major"},
			{format: "posix", gz: true, why: "PAX record GNU.sparse.major"},
			{format: "posix/0.0", why: "PAX record GNU.sparse."},
			{format: "posix/0.1", why: "PAX record GNU.sparse."},
			{format: "posix/1.0", why: "PAX record GNU.sparse.major"},
		} {
			name := fmt.Sprintf("%s, --format=%s", kind, c.format)
			if c.gz {
				name += ", gzipped"
			}
			t.Run(name, func(t *testing.T) {
				body, sparse := sparseTar(t, kind, c.format, sparseSize)
				if len(body) > 64<<10 {
					t.Fatalf("the sparse archive is %d bytes; GNU tar did not write it sparse", len(body))
				}
				if c.gz {
					body = gzipped(body)
				}
				parent := t.TempDir()
				s, err := Spool(bytes.NewReader(body), parent, l, true)
				if err != nil {
					t.Fatalf("spool: %v", err)
				}
				_, err = LoadImage(s, l)
				blocks, _, largest := diskUse(t, parent)
				if cerr := s.Close(); cerr != nil {
					t.Error(cerr)
				}
				if !errors.Is(err, ErrSparse) || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), sparse) || !strings.Contains(err.Error(), c.why) {
					t.Errorf("LoadImage: %v, want ErrSparse naming %s and %q", err, sparse, c.why)
				}
				if blocks > 1<<20 || largest > 1<<20 {
					t.Errorf("the spool directory grew to %d bytes on disk, its largest file %d bytes; want at most 1 MiB", blocks, largest)
				}
				if left, _ := os.ReadDir(parent); len(left) != 0 {
					t.Errorf("%d entries left after Close", len(left))
				}
			})
		}
	}
}

// TestArchiveEntriesOverBudget checks the size sum without sparse entries:
// regular entries may hold no more than the archive's own bytes and no
// more than MaxBytes, refused before extraction.
func TestArchiveEntriesOverBudget(t *testing.T) {
	layoutFiles := func(big int) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, f := range []struct {
			name string
			body []byte
		}{
			{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
			{"index.json", []byte(`{"schemaVersion":2,"manifests":[]}`)},
			{"blobs/sha256/big", make([]byte, big)},
		} {
			_ = tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
			_, _ = tw.Write(f.body)
		}
		_ = tw.Close()
		return buf.Bytes()
	}
	// truncated claims 4 MiB for its last entry and holds 10 bytes of it.
	truncated := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "index.json", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte("{}"))
		_ = tw.WriteHeader(&tar.Header{Name: "blobs/sha256/claimed", Mode: 0o644, Size: 4 << 20, Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte("0123456789"))
		_ = tw.Flush()
		return buf.Bytes()
	}
	for _, c := range []struct {
		name     string
		body     []byte
		maxBytes int64
		want     error
		why      string
	}{
		{"entries over MaxBytes", layoutFiles(2 << 20), 1 << 20, ErrTooLarge, "blobs/sha256/big hold 2097"},
		{"entries over the archive's own size", truncated(), 8 << 20, ErrFormat, "more than the archive's own"},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			s, err := Spool(bytes.NewReader(c.body), parent, Limits{MaxBytes: 8 << 20}, false)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = LoadImage(s, Limits{MaxBytes: c.maxBytes})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("LoadImage: %v, want %v naming %q", err, c.want, c.why)
			}
			if _, err := os.Stat(filepath.Join(s.dir, "layout")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("something was extracted before the refusal: %v", err)
			}
		})
	}
}

// TestArchiveExtractBudget calls extract without scan first, as a regression in
// LoadImage would: it must itself refuse sparse entries and stop writing at
// the budget.
func TestArchiveExtractBudget(t *testing.T) {
	var big bytes.Buffer
	tw := tar.NewWriter(&big)
	_ = tw.WriteHeader(&tar.Header{Name: "a", Mode: 0o644, Size: 3 << 20, Typeflag: tar.TypeReg})
	_, _ = tw.Write(make([]byte, 3<<20))
	_ = tw.WriteHeader(&tar.Header{Name: "b", Mode: 0o644, Size: 3 << 20, Typeflag: tar.TypeReg})
	_, _ = tw.Write(make([]byte, 3<<20))
	_ = tw.Close()
	posix, _ := sparseTar(t, kindLayout, "posix", 3<<30)
	gnu, _ := sparseTar(t, kindLayout, "gnu", 3<<30)
	for _, c := range []struct {
		name     string
		body     []byte
		maxBytes int64
		want     error
		why      string
	}{
		{"two 3 MiB files with 4 MiB to spend", big.Bytes(), 4 << 20, ErrTooLarge, "extract b: upload over the size limit: extraction would write more than 4194304 bytes"},
		{"posix sparse", posix, 64 << 20, ErrSparse, "blobs/sha256/filler"},
		{"gnu sparse", gnu, 64 << 20, ErrSparse, "blobs/sha256/filler"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			p := filepath.Join(tmp, "upload")
			if err := os.WriteFile(p, c.body, 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(tmp, "layout")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			err := extract(p, dir, nil, Limits{MaxBytes: c.maxBytes})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("extract: %v, want %v naming %q", err, c.want, c.why)
			}
			var written int64
			_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					fi, _ := d.Info()
					written += fi.Size()
				}
				return err
			})
			if written > c.maxBytes {
				t.Errorf("extract wrote %d bytes, over its budget of %d", written, c.maxBytes)
			}
		})
	}
}

// BenchmarkSpoolSparse spools and loads the attack archives of the issue (a
// sparse 10 GiB blob in an OCI layout tar, a sparse 5 GiB layer in a
// docker save archive), with the cap of attestd's default configuration
// (max_upload_bytes, 4 GiB), and reports the peak bytes on disk against the
// cap and against what the archive's entries claim. Nothing is deleted
// before Close, so the disk use measured after LoadImage is the peak.
func BenchmarkSpoolSparse(b *testing.B) {
	const maxBytes = 4 << 30 // app.Defaults().MaxUploadBytes
	l := Limits{MaxBytes: maxBytes, MaxRatio: 50, MaxEntries: 100_000}
	for _, c := range []struct {
		kind, format string
		size         int64
	}{
		{kindLayout, "gnu", 10 << 30},
		{kindLayout, "posix", 10 << 30},
		{kindDockerSave, "gnu", 5 << 30},
		{kindDockerSave, "posix", 5 << 30},
	} {
		b.Run(fmt.Sprintf("%s/%s/%dGiB", strings.ReplaceAll(c.kind, " ", "-"), c.format, c.size>>30), func(b *testing.B) {
			body, _ := sparseTar(b, c.kind, c.format, c.size)
			parent := b.TempDir()
			var peak int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := Spool(bytes.NewReader(body), parent, l, true)
				if err != nil {
					b.Fatal(err)
				}
				_, err = LoadImage(s, l)
				if !errors.Is(err, ErrSparse) {
					b.Fatalf("LoadImage: %v, want ErrSparse", err)
				}
				blocks, _, _ := diskUse(b, parent)
				peak = max(peak, blocks)
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if peak > maxBytes {
				b.Errorf("peak disk use %d bytes, over the cap of %d", peak, maxBytes)
			}
			b.ReportMetric(float64(len(body)), "archive-B")
			b.ReportMetric(float64(c.size), "claimed-B")
			b.ReportMetric(float64(peak), "peak-disk-B")
			b.ReportMetric(float64(maxBytes), "cap-B")
			b.ReportMetric(float64(peak)/float64(maxBytes), "peak/cap")
			b.ReportMetric(float64(peak)/float64(len(body)), "peak/archive")
		})
	}
}
