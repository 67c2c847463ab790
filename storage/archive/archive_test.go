package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"testing"
)

func tarOf(entries map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, b := range entries {
		_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(b))
	}
	_ = tw.Close()
	return buf.Bytes()
}

func TestSpoolLimits(t *testing.T) {
	tmp := t.TempDir()
	l := Limits{MaxBytes: 1 << 20, MaxRatio: 10}
	if _, err := Spool(bytes.NewReader(make([]byte, 2<<20)), tmp, l, false); !errors.Is(err, ErrTooLarge) {
		t.Errorf("2 MiB into 1 MiB: %v", err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(make([]byte, 4<<20))
	_ = zw.Close()
	if _, err := Spool(bytes.NewReader(z.Bytes()), tmp, Limits{MaxBytes: 64 << 20, MaxRatio: 10}, true); !errors.Is(err, ErrBomb) {
		t.Errorf("4 MiB of zeros gzipped: %v, want ErrBomb", err)
	}
	if _, err := Spool(bytes.NewReader(z.Bytes()), tmp, Limits{MaxBytes: 2 << 20, MaxRatio: 100000}, true); !errors.Is(err, ErrTooLarge) {
		t.Errorf("decompressed beyond MaxBytes: %v, want ErrTooLarge", err)
	}
	s, err := Spool(bytes.NewReader([]byte("hello")), tmp, l, true)
	if err != nil || s.Size != 5 || s.Digest != "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("spool: %+v %v", s, err)
	}
	_ = s.Close()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("%d entries left after Close and failures", len(left))
	}
}

func TestSafeName(t *testing.T) {
	for n, ok := range map[string]bool{
		"index.json": true, "blobs/sha256/ab": true, "./index.json": true, "a/../b": true,
		"../x": false, "/etc/passwd": false, "a/../../x": false, "": false, `a\..\b`: false, "..": false,
	} {
		if _, err := safeName(n); (err == nil) != ok {
			t.Errorf("safeName(%q) = %v", n, err)
		}
	}
}

func FuzzLoadImage(f *testing.F) {
	f.Add(tarOf(map[string]string{"index.json": `{"schemaVersion":2,"manifests":[]}`, "oci-layout": `{"imageLayoutVersion":"1.0.0"}`}))
	f.Add(tarOf(map[string]string{"manifest.json": `[{"Config":"c.json","Layers":["l.tar"]}]`, "c.json": `{}`, "l.tar": ""}))
	f.Add(tarOf(map[string]string{"../x": "x"}))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	if haveGNUTar() {
		// Sparse archives of 64 MiB files, 64 times the limit.
		for _, kind := range []string{kindLayout, kindDockerSave} {
			for _, format := range []string{"gnu", "posix", "posix/0.1"} {
				b, _ := sparseTar(f, kind, format, 64<<20)
				f.Add(b)
			}
		}
	}
	parent := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Spool(bytes.NewReader(b), parent, Limits{MaxBytes: 1 << 20, MaxRatio: 50, MaxEntries: 1000}, true)
		if err != nil {
			return
		}
		_, _ = LoadImage(s, Limits{MaxBytes: 1 << 20, MaxRatio: 50, MaxEntries: 1000})
		// The spooled upload and what was extracted from it: each at most
		// MaxBytes, whatever the headers claim.
		if _, n, _ := diskUse(t, parent); n > 2<<20 {
			t.Errorf("the spool directory holds files of %d bytes, over twice MaxBytes", n)
		}
		_ = s.Close()
		if left, _ := os.ReadDir(parent); len(left) != 0 {
			t.Fatalf("files left or written outside the spool: %v", left)
		}
	})
}

func TestEntryCap(t *testing.T) {
	files := map[string]string{}
	for i := 0; i < 20; i++ {
		files[string(rune('a'+i))] = "x"
	}
	s, err := Spool(bytes.NewReader(tarOf(files)), t.TempDir(), Limits{MaxBytes: 1 << 20}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := LoadImage(s, Limits{MaxBytes: 1 << 20, MaxEntries: 10}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("20 entries with a cap of 10: %v, want ErrTooLarge", err)
	}
}
