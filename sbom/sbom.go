// Package sbom catalogs container images and artifacts with syft, used as
// a library, and writes SPDX 2.3 (through spdx/tools-golang's model,
// validated) and CycloneDX JSON.
//
// It reads images from registries by digest only, and it MUST be bounded:
// the caller gives limits on bytes and time, and a subject over them is
// refused before or during cataloging, never by exhausting the machine.
package sbom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/format/common/spdxhelpers"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/sbom"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
)

// Formats attestd writes, and the predicate types they are attested as.
const (
	SPDXJSON      = "spdx-json"
	CycloneDXJSON = "cyclonedx-json"

	PredicateSPDX      = "https://spdx.dev/Document"
	PredicateCycloneDX = "https://cyclonedx.org/bom"
)

// PredicateType maps a format to its predicate type.
func PredicateType(format string) (string, error) {
	switch format {
	case SPDXJSON:
		return PredicateSPDX, nil
	case CycloneDXJSON:
		return PredicateCycloneDX, nil
	}
	return "", fmt.Errorf("%w: format %q: want spdx-json or cyclonedx-json", ErrFormat, format)
}

// Errors.
var (
	// ErrFormat means an unknown SBOM format was asked for.
	ErrFormat = errors.New("unknown SBOM format")
	// ErrLimit means the subject is over a cataloging limit.
	ErrLimit = errors.New("over a cataloging limit")
)

// Version is the syft version attestd catalogs with; a stored SBOM made by
// another version is made again.
var Version = syftVersion()

// Registry says how to reach the registry holding the subject.
type Registry struct {
	// Host is the registry host[:port].
	Host string
	// Insecure uses plain http.
	Insecure bool
	// Username and Password, or Token, authenticate; empty is anonymous.
	Username, Password, Token string
}

// licenses carries syft's license scanner, built once per process and
// shared by every catalog (it is immutable once built and safe for
// concurrent use; syft itself shares one between its catalogers). Building
// it compiles every license pattern: about half a second of CPU, more than
// cataloging a small image takes, and the syft CLI pays it on every run.
// It keeps about 11 MiB; the ~100 MiB the build allocates on the way is
// given back to the OS at once, not left in an idle server's RSS.
var licenses = sync.OnceValues(func() (context.Context, error) {
	ctx, err := syft.SetContextLicenseScanner(context.Background(), syft.DefaultCreateSBOMConfig().Licenses)
	debug.FreeOSMemory()
	return ctx, err
})

// Warm builds syft's license scanner now, so that the first catalog does
// not wait for it. Catalog builds it where Warm was not called.
func Warm() error {
	_, err := licenses()
	return err
}

// Catalog catalogs the image at ref (repo@sha256:…) and returns the SBOM.
func Catalog(ctx context.Context, ref string, reg Registry) (*sbom.SBOM, error) {
	lctx, err := licenses()
	if err != nil {
		return nil, fmt.Errorf("syft's license scanner: %w", err)
	}
	opts := &image.RegistryOptions{InsecureUseHTTP: reg.Insecure}
	if reg.Username != "" || reg.Token != "" {
		opts.Credentials = []image.RegistryCredentials{{Authority: reg.Host, Username: reg.Username, Password: reg.Password, Token: reg.Token}}
	}
	cfg := syft.DefaultGetSourceConfig().WithSources("registry").WithRegistryOptions(opts)
	src, err := syft.GetSource(ctx, ref, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	defer src.Close()
	s, err := syft.CreateSBOM(withValues(ctx, lctx), src, syft.DefaultCreateSBOMConfig())
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", ref, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLimit, err)
	}
	return s, nil
}

// withValues is ctx (its deadline, cancellation and values) that also
// answers the values of vals that ctx does not have: syft looks its license
// scanner up in the context it catalogs with.
func withValues(ctx, vals context.Context) context.Context { return valuesOf{ctx, vals} }

type valuesOf struct {
	context.Context
	vals context.Context
}

func (c valuesOf) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.vals.Value(key)
}

// Encode writes s in format. SPDX goes through spdx/tools-golang's model
// and is validated before it is returned.
func Encode(s *sbom.SBOM, format string) ([]byte, error) {
	var buf bytes.Buffer
	switch format {
	case SPDXJSON:
		doc := spdxhelpers.ToFormatModel(*s)
		if err := spdxlib.ValidateDocument(doc); err != nil {
			return nil, fmt.Errorf("invalid SPDX document: %w", err)
		}
		if err := spdxjson.Write(doc, &buf); err != nil {
			return nil, err
		}
	case CycloneDXJSON:
		enc, err := cyclonedxjson.NewFormatEncoderWithConfig(cyclonedxjson.DefaultEncoderConfig())
		if err != nil {
			return nil, err
		}
		if err := enc.Encode(&buf, *s); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: %q", ErrFormat, format)
	}
	return buf.Bytes(), nil
}
