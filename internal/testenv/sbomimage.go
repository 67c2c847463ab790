package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DpkgStatus is a status file with real Debian 12 packages.
const DpkgStatus = `Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 340
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files

Package: bash
Essential: yes
Status: install ok installed
Priority: required
Section: shells
Installed-Size: 7163
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 5.2.15-2+b2
Depends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)
Description: GNU Bourne Again SHell

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12986
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries

`

const osRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`

// Layer is a layer holding files.
func Layer(t testing.TB, files map[string][]byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, b := range files {
		_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// SBOMImage builds the SBOM test image: a Debian 12 os-release and dpkg
// database (base-files, bash 5.2.15-2+b2, libc6) and a static Go binary
// (built from internal/e2e/testdata/gobin) in a second layer.
func SBOMImage(t testing.TB) v1.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gobin")
	_, here, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, "./internal/e2e/testdata/gobin")
	cmd.Dir = filepath.Join(filepath.Dir(here), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the Go binary: %v\n%s", err, out)
	}
	gob, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image,
		Layer(t, map[string][]byte{"etc/os-release": []byte(osRelease), "var/lib/dpkg/status": []byte(DpkgStatus)}),
		Layer(t, map[string][]byte{"usr/local/bin/gobin": gob}))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Architecture, cfg.OS = "amd64", "linux"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// DebianMinbaseImage builds, once per process, an image of a Debian minbase
// root filesystem from the Debian host the tests run on: the packages of
// priority required and apt, with what they depend on (what debootstrap
// --variant=minbase installs), their dpkg database (status stanzas and
// info files) and every file they own that is on the host. It skips the
// test where the host has no dpkg database.
func DebianMinbaseImage(t testing.TB) v1.Image {
	t.Helper()
	minbase.once.Do(func() { minbase.img, minbase.err = buildMinbase() })
	if errors.Is(minbase.err, fs.ErrNotExist) {
		t.Skipf("no dpkg database on this host: %v", minbase.err)
	}
	if minbase.err != nil {
		t.Fatalf("build the minbase image: %v", minbase.err)
	}
	return minbase.img
}

var minbase struct {
	once sync.Once
	img  v1.Image
	err  error
}

func buildMinbase() (v1.Image, error) {
	raw, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		return nil, err
	}
	stanzas := map[string]string{}
	var names []string
	for _, s := range strings.Split(string(raw), "\n\n") {
		if f := field(s, "Package"); f != "" && strings.Contains(field(s, "Status"), "installed") {
			stanzas[f] = s
			names = append(names, f)
		}
	}
	// required and apt, and what they depend on (first alternatives).
	sel := map[string]bool{}
	var todo []string
	for _, n := range names {
		if field(stanzas[n], "Priority") == "required" || n == "apt" {
			sel[n], todo = true, append(todo, n)
		}
	}
	for len(todo) > 0 {
		n := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, dep := range []string{field(stanzas[n], "Depends"), field(stanzas[n], "Pre-Depends")} {
			for _, alt := range strings.Split(dep, ",") {
				f := strings.Fields(strings.Split(alt, "|")[0])
				if len(f) == 0 {
					continue
				}
				d, _, _ := strings.Cut(f[0], ":")
				if _, ok := stanzas[d]; ok && !sel[d] {
					sel[d], todo = true, append(todo, d)
				}
			}
		}
	}
	f, err := os.CreateTemp("", "minbase-*.tar")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer func() { _ = f.Close() }()
	tw := tar.NewWriter(f)
	seen := map[string]bool{}
	add := func(path string) error {
		path = filepath.Clean(path)
		if seen[path] || path == "/" || path == "." {
			return nil
		}
		seen[path] = true
		fi, err := os.Lstat(path)
		if err != nil {
			return nil // listed but not on this host (diverted, removed)
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = strings.TrimPrefix(path, "/")
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil // unreadable here: left out, as if not on the host
			}
			if int64(len(b)) != h.Size {
				return fmt.Errorf("%s changed while read", path)
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	}
	var status strings.Builder
	info, err := os.ReadDir("/var/lib/dpkg/info")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if !sel[n] {
			continue
		}
		status.WriteString(stanzas[n] + "\n\n")
		for _, e := range info {
			pkg, _, _ := strings.Cut(strings.TrimSuffix(e.Name(), filepath.Ext(e.Name())), ":")
			if pkg != n {
				continue
			}
			p := filepath.Join("/var/lib/dpkg/info", e.Name())
			if err := add(p); err != nil {
				return nil, err
			}
			if filepath.Ext(p) != ".list" {
				continue
			}
			list, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			for _, l := range strings.Split(string(list), "\n") {
				if l != "" {
					if err := add(l); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(status.Len()), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(tw, status.String()); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromFile(f.Name(), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, err
	}
	// Compress once, here: the file goes when this returns.
	var gz bytes.Buffer
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(&gz, rc); err != nil {
		return nil, err
	}
	_ = rc.Close()
	b := gz.Bytes()
	l, err = tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.Architecture, cfg.OS = "amd64", "linux"
	return mutate.ConfigFile(img, cfg)
}

// field is the value of a dpkg status stanza's field (first line only).
func field(stanza, name string) string {
	for _, l := range strings.Split(stanza, "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}
