// Package service holds attestd's use cases, one type per capability, each
// with its dependencies passed to its constructor.
//
// It MUST NOT know about HTTP or echo. Errors are wrapped with %w and carry
// one of the sentinels below, which the api package maps to responses in one
// place.
package service

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/attestd/attestd/storage/oci"
)

// Sentinel errors. Each has one documented meaning.
var (
	// ErrInvalid means the request is malformed or names something attestd
	// may not touch (for example an unconfigured registry). 400.
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthenticated means no valid credential was presented. 401.
	ErrUnauthenticated = errors.New("authentication required")
	// ErrForbidden means the caller is known but not allowed to do this. 403.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound means the named thing does not exist. 404.
	ErrNotFound = errors.New("not found")
	// ErrUpstream means a registry returned something that did not check
	// out, or refused attestd's credentials; nothing was decided. 502.
	ErrUpstream = errors.New("upstream failure")
	// ErrTooLarge means an upload or body is over its configured size. 413.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable means a dependency (registry, KMS, database, log) is
	// down, failing or too slow; retry later. 503 with Retry-After.
	ErrUnavailable = errors.New("temporarily unavailable")
)

// registryErr maps storage/oci errors to service sentinels.
func registryErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound), errors.Is(err, ErrUpstream), errors.Is(err, ErrUnavailable), errors.Is(err, ErrForbidden):
		return err // mapped already
	case errors.Is(err, oci.ErrHostNotAllowed), errors.Is(err, oci.ErrBadReference), errors.Is(err, oci.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, oci.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, oci.ErrDigestMismatch), errors.Is(err, oci.ErrDenied), errors.Is(err, oci.ErrForeignHost):
		// The registry returned what does not check out, or refuses
		// attestd: nothing to retry.
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	case errors.Is(err, oci.ErrUnavailable):
		// Down, failing or slow: retry later (503 with Retry-After).
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
