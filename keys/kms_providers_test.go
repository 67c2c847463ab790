package keys

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The gcpkms, azurekms and hashivault providers have no local server here.
// These tests cover what attestd controls: references are checked before any
// call, a provider that cannot be reached gives ErrUnavailable within the
// deadline, and errors carry no credential. No request leaves loopback:
// GCP reads a missing credentials file, Vault is pointed at a closed
// loopback port, and Azure references are refused before any lookup.
func TestKMSProvidersConfigurationAndErrors(t *testing.T) {
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "s.attestd-test-vault-token")
	p := CallPolicy{Timeout: 2 * time.Second, Attempts: 1, Backoff: time.Millisecond}
	for _, tc := range []struct {
		uri     string
		wantErr error
	}{
		{"gcpkms://not-a-key-path", ErrBadReference},
		{"azurekms://", ErrBadReference},
		{"azurekms://vault-name", ErrBadReference},
		{"hashivault://", ErrBadReference},
		{"awskms://", ErrBadReference},
		{"gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", ErrUnavailable},
		{"hashivault://attestd", ErrUnavailable},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := LoadKMS(ctx, "k", tc.uri, p)
			if err == nil {
				t.Fatal("loaded a key that cannot exist here")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "attestd-test-vault-token") {
				t.Error("the error carries the Vault token")
			}
		})
	}
}

func TestVersionOf(t *testing.T) {
	for uri, want := range map[string]string{
		"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/3": "3",
		"azurekms://v.vault.azure.net/k/0123abcd":                                     "0123abcd",
		"azurekms://v.vault.azure.net/k":                                              "",
		"awskms:///alias/x":                                                           "",
		"hashivault://k":                                                              "",
	} {
		if got := versionOf(uri); got != want {
			t.Errorf("versionOf(%q) = %q, want %q", uri, got, want)
		}
	}
}
