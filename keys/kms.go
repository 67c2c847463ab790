package keys

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	// The KMS providers attestd supports; each registers itself with kms.
	"github.com/sigstore/sigstore/pkg/signature/kms/aws"
	"github.com/sigstore/sigstore/pkg/signature/kms/azure"
	"github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	"github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)

// ErrUnavailable means the KMS did not sign within its deadline and retries:
// it is down, slow or throttling. Nothing was signed; retry later.
var ErrUnavailable = errors.New("KMS unavailable")

// ErrBadReference means a key reference is not one attestd understands.
var ErrBadReference = errors.New("invalid key reference")

// KMS schemes attestd accepts, as sigstore names them, with each provider's
// reference check.
var kmsSchemes = []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://"}

var validators = map[string]func(string) error{
	"awskms://": aws.ValidReference, "gcpkms://": gcp.ValidReference,
	"azurekms://": azure.ValidReference, "hashivault://": hashivault.ValidReference,
}

// IsKMS reports whether uri names a key in a KMS.
func IsKMS(uri string) bool {
	for _, s := range kmsSchemes {
		if strings.HasPrefix(uri, s) {
			return true
		}
	}
	return false
}

// CallPolicy bounds every signing call to a KMS.
type CallPolicy struct {
	// Timeout is the deadline of one attempt.
	Timeout time.Duration
	// Attempts is how many times a failed call is tried in all.
	Attempts int
	// Backoff is the wait before the second attempt; it doubles after each.
	Backoff time.Duration
}

// DefaultCallPolicy is 3 attempts of at most 5 s, 200 ms apart and doubling.
var DefaultCallPolicy = CallPolicy{Timeout: 5 * time.Second, Attempts: 3, Backoff: 200 * time.Millisecond}

// LoadKMS returns the key named name held at uri in a KMS. The public key is
// fetched once, here, and cached: verification never calls the KMS.
// Credentials come from the provider's default chain (environment,
// workload identity, instance role), never from attestd's configuration.
func LoadKMS(ctx context.Context, name, uri string, p CallPolicy) (*Key, error) {
	if !IsKMS(uri) {
		return nil, fmt.Errorf("%w: key %s: %q is not one of %s", ErrBadReference, name, redact(uri), strings.Join(kmsSchemes, ", "))
	}
	for scheme, valid := range validators {
		if strings.HasPrefix(uri, scheme) {
			if err := valid(uri); err != nil {
				return nil, fmt.Errorf("%w: key %s: %w", ErrBadReference, name, err)
			}
		}
	}
	if p.Timeout <= 0 || p.Attempts <= 0 {
		return nil, fmt.Errorf("key %s: KMS call policy needs a positive timeout and attempts", name)
	}
	lctx, cancel := context.WithTimeout(ctx, p.Timeout*time.Duration(p.Attempts))
	defer cancel()
	sv, err := kms.Get(lctx, uri, crypto.SHA256)
	if err != nil {
		var pnf *kms.ProviderNotFoundError
		if errors.As(err, &pnf) {
			return nil, fmt.Errorf("%w: key %s (%s): %w", ErrBadReference, name, redact(uri), err)
		}
		return nil, fmt.Errorf("key %s (%s): %w: %w", name, redact(uri), ErrUnavailable, err)
	}
	k, err := newWithContext(lctx, name, sv)
	if err != nil {
		return nil, fmt.Errorf("key %s (%s): %w: %w", name, redact(uri), ErrUnavailable, err)
	}
	k.policy = p
	k.uri = redact(uri)
	k.version = versionOf(uri)
	return k, nil
}

// CachedKMS is a KMS key known by its cached public key while its KMS is
// down: it verifies at once, and connects to the KMS on its first signature.
func CachedKMS(name, uri string, pub crypto.PublicKey, p CallPolicy) (*Key, error) {
	k, err := NewVerifyOnly(name, pub)
	if err != nil {
		return nil, err
	}
	k.policy, k.uri, k.version = p, redact(uri), versionOf(uri)
	return k.WithLoader(func(ctx context.Context) (signature.SignerVerifier, error) {
		lctx, cancel := context.WithTimeout(ctx, p.Timeout)
		defer cancel()
		return kms.Get(lctx, uri, crypto.SHA256)
	}), nil
}

// redact drops anything after '?' (query options may carry tokens) from a
// key reference used in messages.
func redact(uri string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		return uri[:i] + "?…"
	}
	return uri
}

// versionOf returns the KMS key version a reference pins, where the
// provider has versions in its references: GCP (cryptoKeyVersions/N) and
// Azure (…/KEY/VERSION). AWS asymmetric keys have no versions, and a Vault
// transit reference always means the latest version; both give "".
func versionOf(uri string) string {
	switch {
	case strings.HasPrefix(uri, "gcpkms://"):
		if i := strings.LastIndex(uri, "/cryptoKeyVersions/"); i >= 0 {
			return uri[i+len("/cryptoKeyVersions/"):]
		}
	case strings.HasPrefix(uri, "azurekms://"):
		parts := strings.Split(strings.TrimPrefix(uri, "azurekms://"), "/")
		if len(parts) == 3 {
			return parts[2]
		}
	}
	return ""
}
