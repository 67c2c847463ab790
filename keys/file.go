package keys

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// File names of the local key inside the data directory.
const (
	PrivateKeyFile = "cosign.key"
	PublicKeyFile  = "cosign.pub"
	PasswordFile   = "cosign.password"
)

// ErrNoPassword means the key file exists but no password for it was found.
var ErrNoPassword = errors.New("key password not set: set ATTESTD_KEY_PASSWORD or keep the password file in the data directory")

// Password returns the local key password: fromEnv if it is set, otherwise
// the content of the 0600 password file in dir, which is generated when
// neither it nor the key exists yet.
func Password(dir, fromEnv string) ([]byte, error) {
	if fromEnv != "" {
		return []byte(fromEnv), nil
	}
	p := filepath.Join(dir, PasswordFile)
	b, err := os.ReadFile(p)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read key password file: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, PrivateKeyFile)); err == nil {
		return nil, ErrNoPassword
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	pw := base64.RawURLEncoding.EncodeToString(raw)
	if err := writeFileExcl(p, []byte(pw+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write key password file: %w", err)
	}
	return []byte(pw), nil
}

// EnsureFileKey loads the cosign-format encrypted key in dir, generating an
// ECDSA P-256 key on first use. The private key is stored only encrypted.
func EnsureFileKey(dir string, password []byte) (*Key, error) {
	priv := filepath.Join(dir, PrivateKeyFile)
	if _, err := os.Stat(priv); errors.Is(err, fs.ErrNotExist) {
		kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		if err := writeFileExcl(priv, kb.PrivateBytes, 0o600); err != nil {
			return nil, fmt.Errorf("write private key: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), kb.PublicBytes, 0o644); err != nil { //nolint:gosec // a public key is public
			return nil, fmt.Errorf("write public key: %w", err)
		}
	}
	return LoadFileKey("default", priv, password)
}

// LoadFileKey loads a cosign-format encrypted private key from path.
func LoadFileKey(name, path string, password []byte) (*Key, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	sv, err := cosign.LoadPrivateKey(b, password, nil)
	if err != nil {
		// The cosign error names neither password nor key bytes.
		return nil, fmt.Errorf("load key %s: %w", name, err)
	}
	k, err := New(name, sv)
	if err != nil {
		return nil, err
	}
	k.uri = "file://" + path
	return k, nil
}

func writeFileExcl(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(filepath.Clean(path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
