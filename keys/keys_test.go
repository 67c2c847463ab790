package keys

import (
	"context"
	"crypto"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
)

func TestFileKeyIsEncryptedAndStable(t *testing.T) {
	dir := t.TempDir()
	pw, err := Password(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, PasswordFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	k1, err := EnsureFileKey(dir, pw)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(priv), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Errorf("private key is not stored encrypted:\n%s", priv)
	}
	if fi, _ := os.Stat(filepath.Join(dir, PrivateKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", fi.Mode().Perm())
	}
	pw2, err := Password(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := EnsureFileKey(dir, pw2)
	if err != nil {
		t.Fatal(err)
	}
	if k1.ID() != k2.ID() || !strings.HasPrefix(k1.ID(), "sha256:") || len(k1.ID()) != 71 {
		t.Errorf("key id not stable: %s vs %s", k1.ID(), k2.ID())
	}
	sig, err := k2.Sign(context.Background(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := k1.Verifier()
	if err := v.VerifySignature(strings.NewReader(string(sig)), strings.NewReader("hello")); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
}

func TestWrongPasswordAndMissingPassword(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureFileKey(dir, []byte("right")); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFileKey("default", filepath.Join(dir, PrivateKeyFile), []byte("wrong"))
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "right") {
		t.Errorf("error reveals a password: %v", err)
	}
	// The key exists but the password file does not: refuse, don't make a new password.
	if _, err := Password(dir, ""); !errors.Is(err, ErrNoPassword) {
		t.Errorf("Password = %v, want ErrNoPassword", err)
	}
}

// lying wraps a real signer and returns signatures over other data, as a
// faulty KMS would.
type lying struct{ signature.SignerVerifier }

func (l lying) SignMessage(_ io.Reader, opts ...signature.SignOption) ([]byte, error) {
	return l.SignerVerifier.SignMessage(strings.NewReader("something else"), opts...)
}

func TestSignRefusesASignatureThatDoesNotVerify(t *testing.T) {
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	k, err := New("faulty", lying{sv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(context.Background(), []byte("payload")); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Sign = %v, want ErrBadSignature", err)
	}
	_ = crypto.SHA256
}

func TestAllows(t *testing.T) {
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := New("k", sv)
	if !k.Allows("any.example/x") {
		t.Error("a key without patterns refuses a repository")
	}
	k.WithRepositories([]string{"reg.example/team/*", "*/release/**"})
	for repo, want := range map[string]bool{
		"reg.example/team/app":          true,
		"reg.example/team/app/sub":      false,
		"reg.example/other/app":         false,
		"localhost:5000/release/a":      true,
		"localhost:5000/release/a/b/c":  true,
		"localhost:5000/release":        false,
		"localhost:5000/x/release/a":    false,
		"reg.example/team":              false,
		"evil.example/reg.example/team": false,
	} {
		if got := k.Allows(repo); got != want {
			t.Errorf("Allows(%q) = %v, want %v", repo, got, want)
		}
	}
}

// hanging never answers until its context ends, as a stuck KMS would.
type hanging struct{ signature.SignerVerifier }

func (h hanging) SignMessage(_ io.Reader, opts ...signature.SignOption) ([]byte, error) {
	ctx := context.Background()
	for _, o := range opts {
		o.ApplyContext(&ctx)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestSignGivesUpOnAHangingKMS(t *testing.T) {
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	k, err := New("stuck", hanging{sv})
	if err != nil {
		t.Fatal(err)
	}
	k.WithPolicy(CallPolicy{Timeout: 20 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond})
	if _, err := k.Sign(context.Background(), []byte("x")); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sign on a hanging KMS = %v, want ErrUnavailable after the deadline", err)
	}
}

func TestLoadKMSRefusesUnknownReferences(t *testing.T) {
	for _, uri := range []string{"", "file:///x", "s3://bucket/key", "awskms:/", "vault://x"} {
		if _, err := LoadKMS(context.Background(), "k", uri, DefaultCallPolicy); !errors.Is(err, ErrBadReference) {
			t.Errorf("LoadKMS(%q) = %v, want ErrBadReference", uri, err)
		}
	}
}
