// Package registry is the embedded OCI registry of the zero-config default:
// distribution/distribution v3 as a library, with filesystem storage in the
// data directory, served under /v2/ on attestd's own listener.
//
// It does no authentication itself; the caller MUST wrap the handler with the
// access rules (anonymous pull, authenticated push).
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
)

// New returns the registry's HTTP handler, storing blobs under dir.
func New(ctx context.Context, dir string) (http.Handler, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("registry dir: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			driverName: configuration.Parameters{"rootdirectory": dir},
			"delete":   configuration.Parameters{"enabled": true},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	cfg.Catalog.MaxEntries = 1000 // the catalog serves pages (attestd reindex lists repositories)
	cfg.Log.Level = "error"
	// distribution logs through logrus; keep it quiet and off stdout, which
	// belongs to attestd's JSON log.
	logrus.SetOutput(io.Discard)

	var app http.Handler
	var perr any
	func() {
		defer func() { perr = recover() }()
		app = handlers.NewApp(ctx, cfg)
	}()
	if perr != nil {
		return nil, fmt.Errorf("start embedded registry: %v", perr)
	}
	return app, nil
}
