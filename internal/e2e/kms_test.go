package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// TestAWSKMSKey signs with a key held in local-kms (the AWS KMS API) through
// sigstore's awskms:// provider, has the cosign CLI verify it both with
// --key awskms://… and with the PEM attestd publishes, then stops the KMS:
// signing fails with a 503 and writes nothing, and verification goes on.
func TestAWSKMSKey(t *testing.T) {
	ctx := context.Background()
	kms := testenv.StartLocalKMS(t)
	release := kms.CreateKey(t, "attestd-release")
	other := kms.CreateKey(t, "attestd-other")

	var regHost string
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{
			{Name: "local", URI: "file://"},
			{Name: "release", URI: release},
			{Name: "scoped", URI: other, Repositories: []string{"*/team/allowed/**"}},
		}
		c.DefaultKey = "release"
		c.KMSTimeout = 2 * time.Second
	})
	regHost = s.RegistryHost
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	cl := s.Client(t, signer)

	ks, err := cl.Keys(ctx)
	if err != nil || len(ks) != 3 || ks[0].Name != "release" || !ks[0].Default || ks[0].Ref != release {
		t.Fatalf("keys: %+v %v", ks, err)
	}
	pemFile := filepath.Join(t.TempDir(), "release.pub")
	if err := os.WriteFile(pemFile, []byte(ks[0].PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}

	tag, want, _ := testenv.PushRandom(t, regHost, "kms/app", auth)
	res, err := cl.Sign(ctx, tag.String())
	if err != nil {
		t.Fatalf("sign with awskms: %v", err)
	}
	if res.KeyName != "release" || res.KeyID != ks[0].ID || res.Digest != want.DigestStr() {
		t.Fatalf("signed %+v, want the release key on %s", res, want.DigestStr())
	}
	v := loadVerifier(t, pemFile)
	if err := verifyLegacy(ctx, want, v); err != nil {
		t.Errorf("legacy signature: %v", err)
	}

	t.Run("cosign CLI verifies with the KMS key and with the PEM", func(t *testing.T) {
		c2, c3 := cosigns(t)[0], cosigns(t)[1]
		base := []string{"verify", "--insecure-ignore-tlog=true", "--allow-http-registry=true"}
		if out, err := c3.run(t, append(base, "--key", release, want.String())...); err != nil || !strings.Contains(out, bundleMarker) {
			t.Errorf("cosign v3 --key %s: %v\n%s", release, err, out)
		}
		if out, err := c2.run(t, append(base, "--key", release, "--trusted-root", s.TrustedRoot(t), want.String())...); err != nil {
			t.Errorf("cosign v2 --key %s: %v\n%s", release, err, out)
		}
		if out, err := c3.run(t, append(base, "--key", pemFile, "--new-bundle-format=false", want.String())...); err != nil || !strings.Contains(out, legacyMarker) {
			t.Errorf("cosign v3 --key PEM (legacy): %v\n%s", err, out)
		}
		if out, err := c3.run(t, append(base, "--key", other, want.String())...); err == nil {
			t.Errorf("cosign verified with another KMS key:\n%s", out)
		}
	})

	t.Run("named key and repository scope", func(t *testing.T) {
		var ce *client.Error
		_, d2, _ := testenv.PushRandom(t, regHost, "kms/elsewhere", auth)
		_, err := cl.SignWith(ctx, wire.SignRequest{Image: d2.String(), Key: "scoped"})
		if !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
			t.Errorf("scoped key outside its repositories: %v, want 403", err)
		}
		_, d3, _ := testenv.PushRandom(t, regHost, "team/allowed/app", auth)
		if r, err := cl.SignWith(ctx, wire.SignRequest{Image: d3.String(), Key: "scoped"}); err != nil || r.KeyName != "scoped" {
			t.Errorf("scoped key inside its repositories: %+v %v", r, err)
		}
		if r, err := cl.SignWith(ctx, wire.SignRequest{Image: d3.String(), Key: "local"}); err != nil || r.KeyName != "local" {
			t.Errorf("local key by name: %+v %v", r, err)
		}
		if _, err := cl.SignWith(ctx, wire.SignRequest{Image: d3.String(), Key: "nope"}); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("unknown key: %v, want 400", err)
		}
	})

	t.Run("KMS outage: 503, nothing stored, verification goes on", func(t *testing.T) {
		_, d4, _ := testenv.PushRandom(t, regHost, "kms/during-outage", auth)
		kms.Stop()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/signatures", strings.NewReader(`{"image":"`+d4.String()+`"}`))
		req.Header.Set("Authorization", "Bearer "+signer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("sign during outage: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		sigTag := d4.Context().Tag(strings.Replace(d4.DigestStr(), ":", "-", 1) + ".sig")
		if _, err := remote.Head(sigTag); err == nil {
			t.Error("a signature was stored although the KMS was down")
		}
		if _, err := remote.Head(d4.Context().Tag(strings.Replace(d4.DigestStr(), ":", "-", 1))); err == nil {
			t.Error("a referrer was stored although the KMS was down")
		}
		// attestd never falls back to another key: nothing signed d4.
		for _, line := range strings.Split(s.LogText(), "\n") {
			if strings.Contains(line, `"msg":"signed image"`) && strings.Contains(line, d4.DigestStr()) {
				t.Errorf("signed during the outage: %s", line)
			}
		}
		ks, err := cl.Keys(ctx)
		if err != nil || len(ks) != 3 {
			t.Errorf("key set with the KMS down: %v", err)
		}
		if err := verifyLegacy(ctx, want, v); err != nil {
			t.Errorf("verification with the KMS down: %v", err)
		}
		if out, err := cosigns(t)[1].run(t, "verify", "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--key", pemFile, want.String()); err != nil {
			t.Errorf("cosign verify with the published PEM, KMS down: %v\n%s", err, out)
		}
	})

	t.Run("no secret in logs or responses", func(t *testing.T) {
		pw, _ := os.ReadFile(filepath.Join(s.DataDir, "cosign.password"))
		priv, _ := os.ReadFile(filepath.Join(s.DataDir, "cosign.key"))
		body := strings.Split(string(priv), "\n")[1] // first line of the encrypted key body
		logText := s.LogText()
		for name, secret := range map[string]string{
			"AWS secret key": testenv.AWSSecret, "key password": strings.TrimSpace(string(pw)),
			"private key": body, "signer token": signer, "admin token": s.AdminToken,
		} {
			if secret == "" {
				t.Fatalf("%s is empty", name)
			}
			if strings.Contains(logText, secret) {
				t.Errorf("the %s appears in the log", name)
			}
		}
		auditor := s.Token(t, "auditor")
		for _, path := range []string{"/v1/keys", "/metrics", "/v1/tokens"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+auditor)
			if path == "/v1/tokens" {
				req.Header.Set("Authorization", "Bearer "+s.AdminToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := new(strings.Builder)
			_, _ = copyN(b, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d", path, resp.StatusCode)
			}
			for _, secret := range []string{testenv.AWSSecret, "PRIVATE KEY", strings.TrimSpace(string(pw)), signer, s.AdminToken, auditor} {
				if strings.Contains(b.String(), secret) {
					t.Errorf("GET %s carries secret material", path)
				}
			}
		}
	})
}
