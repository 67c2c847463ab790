package registry

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// driverName is the storage driver the embedded registry runs on:
// distribution's filesystem driver with two upload scratch files handled
// without fsync (see scratchFS).
const driverName = "attestd-filesystem"

func init() { factory.Register(driverName, scratchFactory{}) }

type scratchFactory struct{}

func (scratchFactory) Create(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	fs, err := filesystem.FromParameters(params)
	if err != nil {
		return nil, err
	}
	root, _ := params["rootdirectory"].(string)
	return &scratchFS{StorageDriver: fs, root: root}, nil
}

// smallHashState is the upload size under which a resumable hash state is
// not kept: re-hashing the data at commit costs less than writing and
// fsyncing the state (distribution re-hashes when no state matches).
const smallHashState = 4 << 20

// scratchFS is distribution's filesystem driver, except for two files of an
// upload in progress, which are scratch and need no fsync:
//
//   - _uploads/<id>/startedat, read only to purge abandoned uploads (a
//     missing one is never purged, the safe side);
//   - _uploads/<id>/hashstates/<alg>/<offset> under smallHashState: a cache
//     of the digest so far, which distribution recomputes from the data when
//     it is missing. It is not written at all.
//
// Everything that names content (blob data before it is moved into place,
// links, tags, manifests) keeps the filesystem driver's fsyncs. Each of these
// files cost two fsyncs per blob upload (file and directory), about a fifth
// of a signature's registry work.
type scratchFS struct {
	storagedriver.StorageDriver
	root string
}

func (d *scratchFS) PutContent(ctx context.Context, p string, content []byte) error {
	if !strings.Contains(p, "/_uploads/") {
		return d.StorageDriver.PutContent(ctx, p, content)
	}
	if dir, off := path.Split(p); strings.Contains(dir, "/hashstates/") {
		if n, err := strconv.ParseInt(off, 10, 64); err == nil && n < smallHashState {
			return nil
		}
		return d.StorageDriver.PutContent(ctx, p, content)
	}
	if path.Base(p) == "startedat" && d.root != "" {
		full := filepath.Join(d.root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
			return err
		}
		return os.WriteFile(full, content, 0o600)
	}
	return d.StorageDriver.PutContent(ctx, p, content)
}
