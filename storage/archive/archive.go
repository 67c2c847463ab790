// Package archive reads uploaded artifacts into ggcr objects: image
// archives (an OCI image layout as a tar, or a `docker save` archive, either
// optionally gzipped) and plain files.
//
// Everything it reads is hostile until checked. It MUST bound every read:
// the upload size, the decompressed size and the compression ratio, the
// number of archive entries. It MUST refuse archive paths that are absolute
// or climb out of the archive, and links whose targets do; it never writes
// outside its temporary directory, and removes it on Close.
//
// A tar entry's size is a claim, not a measure: archive/tar expands a sparse
// entry (GNU type 'S', or PAX GNU.sparse.* records) to its full size, holes
// as zeros, so 20 KB of tar can read as 10 GiB. The package MUST refuse any
// sparse entry, and any archive whose regular entries add up to more than the
// archive's own bytes or than Limits.MaxBytes, before it extracts or hands
// anything on. Extraction MUST count the bytes it actually writes and stop
// at that same budget; it MUST NOT trust a header's size to bound them.
package archive

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Errors of upload handling.
var (
	// ErrTooLarge means the upload, or what it decompresses to, is over the size limit.
	ErrTooLarge = errors.New("upload over the size limit")
	// ErrBomb means the upload decompresses beyond the allowed ratio.
	ErrBomb = errors.New("upload decompresses beyond the allowed ratio")
	// ErrUnsafe means an archive entry's path or link points outside the archive.
	ErrUnsafe = errors.New("archive entry escapes the archive")
	// ErrFormat means the upload is not an archive of a supported kind.
	ErrFormat = errors.New("unsupported or malformed archive")
	// ErrSparse means an archive entry is a sparse file, which archive/tar
	// would expand to its full size. It is an ErrFormat.
	ErrSparse = fmt.Errorf("%w: sparse entries are refused", ErrFormat)
)

// Limits bound what an upload may cost.
type Limits struct {
	// MaxBytes caps the upload as sent, as decompressed, and as extracted:
	// the sizes of an archive's regular entries summed, and the bytes
	// written when it is unpacked.
	MaxBytes int64
	// MaxRatio caps decompressed/compressed size for gzipped uploads.
	MaxRatio int64
	// MaxEntries caps the number of entries in an archive.
	MaxEntries int
}

// Spooled is an upload written to a temporary file.
type Spooled struct {
	dir    string
	Path   string
	Size   int64
	Digest string // sha256:<hex> of the spooled bytes
}

// Close removes the temporary files.
func (s *Spooled) Close() error { return os.RemoveAll(s.dir) }

// Spool copies r into a new temporary directory under tmp, at most
// l.MaxBytes. With gunzip, a gzip stream is decompressed on the way, within
// l.MaxBytes and l.MaxRatio; input that is not gzip is copied as it is.
func Spool(r io.Reader, tmp string, l Limits, gunzip bool) (*Spooled, error) {
	if l.MaxBytes <= 0 {
		return nil, errors.New("archive: MaxBytes must be positive")
	}
	dir, err := os.MkdirTemp(tmp, "upload-")
	if err != nil {
		return nil, err
	}
	s := &Spooled{dir: dir, Path: filepath.Join(dir, "upload")}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	in := &countingReader{r: io.LimitReader(r, l.MaxBytes+1)}
	var src io.Reader = in
	if gunzip {
		br := bufio.NewReader(in)
		if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, fmt.Errorf("%w: gzip: %w", ErrFormat, err)
			}
			defer zr.Close()
			src = &ratioReader{r: zr, in: in, ratio: l.MaxRatio}
		} else {
			src = br
		}
	}
	f, err := os.OpenFile(s.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, l.MaxBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, ErrBomb) {
			return nil, err
		}
		return nil, fmt.Errorf("read upload: %w", err)
	}
	if n > l.MaxBytes || in.n > l.MaxBytes {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, l.MaxBytes)
	}
	s.Size, s.Digest = n, "sha256:"+hex.EncodeToString(h.Sum(nil))
	ok = true
	return s, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ratioReader fails once the bytes it has produced exceed ratio times the
// compressed bytes read so far (with 1 MiB of slack for small inputs).
type ratioReader struct {
	r     io.Reader
	in    *countingReader
	out   int64
	ratio int64
}

func (z *ratioReader) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	z.out += int64(n)
	if z.ratio > 0 && z.out > z.ratio*z.in.n+(1<<20) {
		return n, fmt.Errorf("%w: more than %d:1", ErrBomb, z.ratio)
	}
	return n, err
}

// entry is one checked archive entry.
type entry struct {
	name string
	typ  byte
	link string
	size int64
}

// scan reads every header of the tar at p and checks names, links and
// sizes: no entry may be sparse, and the regular entries together may hold
// no more than the budget (the archive's own size, at most l.MaxBytes).
func scan(p string, l Limits) ([]entry, error) {
	f, err := os.Open(p) //nolint:gosec // our own temporary file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	room, err := budgetOf(f, l)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	var out []entry
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: tar: %w", ErrFormat, err)
		}
		if l.MaxEntries > 0 && len(out) >= l.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, l.MaxEntries)
		}
		name, err := safeName(h.Name)
		if err != nil {
			return nil, err
		}
		if err := notSparse(h); err != nil {
			return nil, err
		}
		e := entry{name: name, typ: h.Typeflag, size: h.Size}
		switch h.Typeflag {
		case tar.TypeReg:
			if h.Size > room.bytes-total {
				return nil, room.exceeded(h.Name, total+h.Size)
			}
			total += h.Size
		case tar.TypeDir:
		case tar.TypeSymlink:
			if path.IsAbs(h.Linkname) {
				return nil, fmt.Errorf("%w: %s links to absolute %s", ErrUnsafe, h.Name, h.Linkname)
			}
			if _, err := safeName(path.Join(path.Dir(name), h.Linkname)); err != nil { //nolint:gosec // this is the traversal check
				return nil, fmt.Errorf("%w: %s links to %s", ErrUnsafe, h.Name, h.Linkname)
			}
			e.link = path.Clean(path.Join(path.Dir(name), h.Linkname)) //nolint:gosec // checked just above; never used as a file path
		case tar.TypeLink:
			t, err := safeName(h.Linkname)
			if err != nil {
				return nil, fmt.Errorf("%w: %s hard-links to %s", ErrUnsafe, h.Name, h.Linkname)
			}
			e.link = t
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
			continue
		default:
			return nil, fmt.Errorf("%w: %s has unsupported type %q", ErrFormat, h.Name, h.Typeflag)
		}
		out = append(out, e)
	}
	return out, nil
}

// budget is what an archive may hold once unpacked: no more than its own
// bytes (a tar holds more only through sparse entries, which are refused)
// and no more than Limits.MaxBytes.
type budget struct {
	bytes   int64
	archive int64 // the archive's size
	max     int64 // Limits.MaxBytes
}

// budgetOf is the budget of the tar open as f.
func budgetOf(f *os.File, l Limits) (budget, error) {
	if l.MaxBytes <= 0 {
		return budget{}, errors.New("archive: MaxBytes must be positive")
	}
	fi, err := f.Stat()
	if err != nil {
		return budget{}, err
	}
	return budget{bytes: min(fi.Size(), l.MaxBytes), archive: fi.Size(), max: l.MaxBytes}, nil
}

// exceeded is the error for entries, up to and including name, that need n
// bytes, more than the budget.
func (b budget) exceeded(name string, n int64) error {
	if n > b.max {
		return fmt.Errorf("%w: entries up to %s hold %d bytes, over the limit of %d", ErrTooLarge, name, n, b.max)
	}
	return fmt.Errorf("%w: entries up to %s hold %d bytes, more than the archive's own %d", ErrFormat, name, n, b.archive)
}

// notSparse refuses a sparse entry: the old GNU sparse type, or PAX
// GNU.sparse.* records (GNU tar --sparse --format=posix writes them on a
// regular entry, and archive/tar reports that entry as TypeReg at its full,
// expanded size).
func notSparse(h *tar.Header) error {
	if h.Typeflag == tar.TypeGNUSparse {
		return fmt.Errorf("%w: %s is a GNU sparse file (type 'S') of %d bytes", ErrSparse, h.Name, h.Size)
	}
	for _, k := range slices.Sorted(maps.Keys(h.PAXRecords)) {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("%w: %s is a sparse file (PAX record %s) of %d bytes", ErrSparse, h.Name, k, h.Size)
		}
	}
	return nil
}

// safeName cleans an archive path and refuses one that is absolute or
// climbs out of the archive.
func safeName(n string) (string, error) {
	if n == "" || strings.ContainsRune(n, 0) || strings.Contains(n, `\`) {
		return "", fmt.Errorf("%w: path %q", ErrUnsafe, n)
	}
	if path.IsAbs(n) {
		return "", fmt.Errorf("%w: absolute path %q", ErrUnsafe, n)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") || !filepath.IsLocal(c) && c != "." {
		return "", fmt.Errorf("%w: path %q", ErrUnsafe, n)
	}
	return c, nil
}

// extract writes the regular files and directories of the tar at p under
// dir. Links are refused: an OCI image layout needs none. It checks again
// that no entry is sparse, and counts the bytes it writes: past the budget
// (the archive's size, at most l.MaxBytes) it stops with ErrTooLarge.
func extract(p, dir string, entries []entry, l Limits) error {
	for _, e := range entries {
		if e.typ == tar.TypeSymlink || e.typ == tar.TypeLink {
			return fmt.Errorf("%w: %s is a link; an OCI image layout has none", ErrUnsafe, e.name)
		}
	}
	f, err := os.Open(p) //nolint:gosec // our own temporary file
	if err != nil {
		return err
	}
	defer f.Close()
	room, err := budgetOf(f, l)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	var written int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %w", ErrFormat, err)
		}
		name, err := safeName(h.Name)
		if err != nil {
			return err
		}
		if err := notSparse(h); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if name != "." {
				if err := mkdirAll(root, name); err != nil {
					return err
				}
			}
		case tar.TypeReg:
			if d := path.Dir(name); d != "." {
				if err := mkdirAll(root, d); err != nil {
					return err
				}
			}
			w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrFormat, name, err)
			}
			n, err := io.Copy(w, io.LimitReader(tr, room.bytes-written))
			written += n
			if err == nil && written == room.bytes {
				// The budget is spent: one more byte of this entry is too many.
				if m, _ := tr.Read(make([]byte, 1)); m > 0 {
					err = fmt.Errorf("%w: extraction would write more than %d bytes, the archive's size or the limit", ErrTooLarge, room.bytes)
				}
			}
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		}
	}
}

func mkdirAll(root *os.Root, name string) error {
	cur := ""
	for _, part := range strings.Split(name, "/") {
		cur = path.Join(cur, part)
		if err := root.Mkdir(cur, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}
