package registry

import (
	"context"
	"os"
	"path/filepath"
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

// scratchFS is distribution's filesystem driver, except for the files of an
// upload in progress that it writes whole (PutContent), which are scratch
// and written without fsync:
//
//   - _uploads/<id>/startedat, read only to purge abandoned uploads (a
//     missing one is never purged, the safe side);
//   - _uploads/<id>/hashstates/<alg>/<offset>, the digest state so far,
//     which spares re-reading the data at commit. A state lost or torn by a
//     power cut fails that upload (the digest is still checked against
//     the one the client names); it cannot store wrong content.
//
// Everything that names content (blob data before it is moved into place,
// links, tags, manifests) keeps the filesystem driver's fsyncs. The two
// scratch files cost two fsyncs each (file and directory) per blob upload.
type scratchFS struct {
	storagedriver.StorageDriver
	root string
}

func (d *scratchFS) PutContent(ctx context.Context, p string, content []byte) error {
	if !strings.Contains(p, "/_uploads/") || d.root == "" {
		return d.StorageDriver.PutContent(ctx, p, content)
	}
	full := filepath.Join(d.root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		return err
	}
	return os.WriteFile(full, content, 0o600)
}
