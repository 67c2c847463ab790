package auditlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// KeyFile is the name of the generated log key in the data directory.
const KeyFile = "log.key"

// Key is the log's checkpoint key: the signer, and the verifier key that
// auditors pin (GET /v1/log/key).
type Key struct {
	Signer note.Signer
	// Verifier is the public key in the signed-note format,
	// "<origin>+<hash>+<base64 Ed25519 key>".
	Verifier string
}

// EnsureKey loads the Ed25519 note key at path, generating one for origin
// on first use (mode 0600, created exclusively, like the signing key). An
// empty origin accepts the key's own; a key for another origin is refused:
// a log's origin is its name, and does not change.
func EnsureKey(path, origin string) (Key, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if origin == "" {
			return Key{}, errors.New("log key: no origin to generate a key for")
		}
		skey, _, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return Key{}, fmt.Errorf("generate log key: %w", err)
		}
		if err := writeExcl(path, []byte(skey+"\n")); err != nil && !errors.Is(err, fs.ErrExist) {
			return Key{}, fmt.Errorf("write log key: %w", err)
		}
	}
	return LoadKey(path, origin)
}

// LoadKey loads the note signer key at path (as note.GenerateKey writes
// it: PRIVATE+KEY+<origin>+<hash>+<key>). origin, if set, must be the key's.
func LoadKey(path, origin string) (Key, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return Key{}, fmt.Errorf("read log key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	s, err := note.NewSigner(skey)
	if err != nil {
		return Key{}, fmt.Errorf("log key %s: not a note signer key", path)
	}
	if origin != "" && s.Name() != origin {
		return Key{}, fmt.Errorf("log key %s is for origin %q, but the log's origin is %q: a log keeps its origin (set log_origin to %q or point log_key_file at its key)", path, s.Name(), origin, s.Name())
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return Key{}, fmt.Errorf("log key %s: %w", path, err)
	}
	return Key{Signer: s, Verifier: vkey}, nil
}

// verifierKey derives the public verifier key from a note signer key,
// PRIVATE+KEY+<name>+<hash>+base64(1 || Ed25519 seed).
func verifierKey(skey string) (string, error) {
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	parts := strings.SplitN(rest, "+", 3)
	if !ok || len(parts) != 3 {
		return "", errors.New("not a note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub, _ := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[0], pub)
}

func writeExcl(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Clean(path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
