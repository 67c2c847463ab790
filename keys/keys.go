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
	"io"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// ErrBadSignature means a signer returned a signature that does not verify
// against its own public key. Nothing signed with it may be published.
var ErrBadSignature = errors.New("signature from key does not verify against its public key")

// Key is a named signing key. Every Sign call passes its context to the
// underlying signer, which KMS signers need for deadlines.
type Key struct {
	name string
	id   string
	pem  []byte
	sv   signature.SignerVerifier
	pub  crypto.PublicKey
}

// New wraps sv as the key called name.
func New(name string, sv signature.SignerVerifier) (*Key, error) {
	pub, err := sv.PublicKey()
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
	return &Key{name: name, id: id, pem: pemBytes, sv: sv, pub: pub}, nil
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

// Sign signs message and verifies the result locally against the public key
// before returning it, so that a faulty signer never yields a published
// signature.
func (k *Key) Sign(ctx context.Context, message []byte) ([]byte, error) {
	sig, err := k.sv.SignMessage(bytes.NewReader(message), options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", k.name, err)
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

// SignReader is Sign for a message given as a reader. The message is read
// whole, so callers MUST bound it.
func (k *Key) SignReader(ctx context.Context, r io.Reader) ([]byte, error) {
	msg, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return k.Sign(ctx, msg)
}
