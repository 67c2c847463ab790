// Package keys turns key references into sigstore signers and owns the local
// encrypted key file of the zero-config default.
//
// A Key MUST be identified by a stable id derived from its public key, never by
// its location. Private key material MUST NOT appear in logs, errors or
// responses: errors name the key reference, never its bytes or password.
package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/attestd/attestd/internal/repomatch"
)

// ErrBadSignature means a signer returned a signature that does not verify
// against its own public key. Nothing signed with it may be published.
var ErrBadSignature = errors.New("signature from key does not verify against its public key")

// Key is a named signing key. Every Sign call passes its context to the
// underlying signer, which KMS signers need for deadlines.
type Key struct {
	name    string
	id      string
	uri     string
	version string
	pem     []byte
	pub     crypto.PublicKey
	policy  CallPolicy
	repos   []string

	mu     sync.Mutex
	sv     signature.SignerVerifier                                // nil until loaded, or for a verify-only key
	loader func(context.Context) (signature.SignerVerifier, error) // connects to the KMS later
}

// NewVerifyOnly is a key known only by its public key: it verifies and
// cannot sign (a key no longer configured, kept for its signatures).
func NewVerifyOnly(name string, pub crypto.PublicKey) (*Key, error) {
	id, err := ID(pub)
	if err != nil {
		return nil, fmt.Errorf("key id of %s: %w", name, err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("public key pem of %s: %w", name, err)
	}
	return &Key{name: name, id: id, pem: pemBytes, pub: pub, policy: DefaultCallPolicy}, nil
}

// CanSign reports whether the key has, or can connect to, a signer.
func (k *Key) CanSign() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sv != nil || k.loader != nil
}

// signer returns the signer, connecting to the KMS first if the key was
// loaded from its cached public key while the KMS was down. A signer whose
// public key is not the cached one is refused.
func (k *Key) signer(ctx context.Context) (signature.SignerVerifier, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sv != nil {
		return k.sv, nil
	}
	if k.loader == nil {
		return nil, fmt.Errorf("key %s can only verify: %w", k.name, ErrUnavailable)
	}
	sv, err := k.loader(ctx)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w: %w", k.name, ErrUnavailable, err)
	}
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("key %s: %w: %w", k.name, ErrUnavailable, err)
	}
	if id, err := ID(pub); err != nil || id != k.id {
		return nil, fmt.Errorf("key %s: the KMS now holds another key (%s, expected %s): %w", k.name, id, k.id, ErrBadSignature)
	}
	k.sv, k.loader = sv, nil
	return sv, nil
}

// New wraps sv as the key called name. Signing calls are bounded by
// DefaultCallPolicy.
func New(name string, sv signature.SignerVerifier) (*Key, error) {
	return newWithContext(context.Background(), name, sv)
}

func newWithContext(ctx context.Context, name string, sv signature.SignerVerifier) (*Key, error) {
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("public key of %s: %w", name, err)
	}
	id, err := ID(pub)
	if err != nil {
		return nil, fmt.Errorf("key id of %s: %w", name, err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("public key pem of %s: %w", name, err)
	}
	return &Key{name: name, id: id, pem: pemBytes, sv: sv, pub: pub, policy: DefaultCallPolicy}, nil
}

// WithLoader makes a verify-only key able to sign once loader connects.
func (k *Key) WithLoader(loader func(context.Context) (signature.SignerVerifier, error)) *Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.loader = loader
	return k
}

// Named renames the key.
func (k *Key) Named(name string) *Key { k.name = name; return k }

// WithPolicy sets the bounds of each signing call.
func (k *Key) WithPolicy(p CallPolicy) *Key { k.policy = p; return k }

// WithRepositories limits the key to repositories matching one of the
// patterns (see Allows). No pattern means every repository.
func (k *Key) WithRepositories(patterns []string) *Key { k.repos = patterns; return k }

// Ref is the key's reference (a KMS URI, or file) for display; it holds no secret.
func (k *Key) Ref() string { return k.uri }

// Version is the KMS key version the key's reference pins, or "" where the
// KMS has none in its references.
func (k *Key) Version() string { return k.version }

// Repositories lists the patterns limiting the key, if any.
func (k *Key) Repositories() []string { return k.repos }

// Allows reports whether the key may sign in repo ("host/path"). A pattern
// is matched with path.Match; one ending in "/**" matches the prefix at any depth.
func (k *Key) Allows(repo string) bool {
	if len(k.repos) == 0 {
		return true
	}
	for _, p := range k.repos {
		if repomatch.Match(p, repo) {
			return true
		}
	}
	return false
}

// ID is the stable identifier of a public key: "sha256:" and the hex SHA-256
// of its PKIX DER encoding.
func ID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Name is the configured name of the key.
func (k *Key) Name() string { return k.name }

// ID is the key's stable id.
func (k *Key) ID() string { return k.id }

// PublicKeyPEM is the PEM encoding of the public key.
func (k *Key) PublicKeyPEM() []byte { return bytes.Clone(k.pem) }

// PublicKey is the key's public half.
func (k *Key) PublicKey() crypto.PublicKey { return k.pub }

// Hint is the sigstore bundle public-key hint: base64 of the SHA-256 of the
// PKIX DER public key, as cosign writes it.
func (k *Key) Hint() []byte {
	raw, _ := hex.DecodeString(k.id[len("sha256:"):])
	return []byte(base64.StdEncoding.EncodeToString(raw))
}

// Verifier verifies signatures made by this key. It needs no KMS access.
func (k *Key) Verifier() (signature.Verifier, error) {
	return signature.LoadDefaultVerifier(k.pub)
}

// Sign signs message and verifies the result locally against the cached
// public key before returning it, so that a faulty signer, or a KMS key
// version other than the one attestd knows, never yields a published
// signature. Each attempt has the policy's deadline; failed attempts are
// retried with backoff, and a KMS that stays down gives ErrUnavailable. It
// never falls back to another key.
func (k *Key) Sign(ctx context.Context, message []byte) ([]byte, error) {
	sv, err := k.signer(ctx)
	if err != nil {
		return nil, err
	}
	var sig []byte
	wait := k.policy.Backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, k.policy.Timeout)
		sig, err = sv.SignMessage(bytes.NewReader(message), options.WithContext(actx))
		cancel()
		if err == nil || attempt >= k.policy.Attempts || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait *= 2
	}
	if err != nil {
		return nil, fmt.Errorf("sign with key %s: %w: %w", k.name, ErrUnavailable, err)
	}
	v, err := k.Verifier()
	if err != nil {
		return nil, fmt.Errorf("verifier for key %s: %w", k.name, err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(message), options.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.name, ErrBadSignature)
	}
	return sig, nil
}
