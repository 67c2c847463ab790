// Package e2e runs attestd in-process on real parts (the embedded registry,
// ggcr's registry, SQLite, a generated key) and checks what it writes with
// the cosign and sigstore-go libraries, and with the cosign CLI.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

func TestSignByTagOnEmbeddedRegistry(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	tag, want, _ := testenv.PushRandom(t, s.RegistryHost, "team/app", auth)

	res, err := s.Client(t, signer).Sign(ctx, tag.String())
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if res.Digest != want.DigestStr() {
		t.Fatalf("signed digest %s, pushed %s", res.Digest, want.DigestStr())
	}
	if res.Image != want.String() {
		t.Errorf("image = %s, want %s", res.Image, want)
	}
	if res.KeyID != s.KeyID || !strings.HasPrefix(res.KeyID, "sha256:") {
		t.Errorf("key id = %q, want %q", res.KeyID, s.KeyID)
	}
	kinds := map[string]wire.Location{}
	for _, l := range res.Locations {
		kinds[l.Kind] = l
		if l.Existed {
			t.Errorf("first signature reported as existing: %+v", l)
		}
	}
	if kinds["legacy-tag"].Tag != want.Context().Tag(strings.Replace(want.DigestStr(), ":", "-", 1)+".sig").String() {
		t.Errorf("legacy tag = %q", kinds["legacy-tag"].Tag)
	}
	if kinds["referrer"].Ref == "" {
		t.Errorf("no referrer location in %+v", res.Locations)
	}

	v := loadVerifier(t, s.PublicKeyPEM(t))
	if err := verifyLegacy(ctx, want, v); err != nil {
		t.Errorf("cosign library rejects the legacy signature: %v", err)
	}
	if n, err := verifyBundles(t, want, v, authn.Anonymous); n != 1 {
		t.Errorf("sigstore-go verified %d bundles, want 1 (last error: %v)", n, err)
	}
	// The embedded registry has no referrers API: the fallback tag holds the index.
	fallback := want.Context().Tag(strings.Replace(want.DigestStr(), ":", "-", 1))
	if _, err := remote.Head(fallback); err != nil {
		t.Errorf("referrers fallback tag %s missing: %v", fallback, err)
	}

	t.Run("second signature adds no copy", func(t *testing.T) {
		again, err := s.Client(t, signer).Sign(ctx, want.String())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range again.Locations {
			if !l.Existed {
				t.Errorf("re-signing wrote a new %s copy: %+v", l.Kind, l)
			}
		}
		sigImg, err := remote.Image(want.Context().Tag(strings.Replace(want.DigestStr(), ":", "-", 1) + ".sig"))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := sigImg.Manifest()
		if len(m.Layers) != 1 {
			t.Errorf(".sig has %d signatures, want 1", len(m.Layers))
		}
		if n, _ := verifyBundles(t, want, v, authn.Anonymous); n != 1 {
			t.Errorf("%d bundles after re-signing, want 1", n)
		}
	})

	t.Run("unsigned image does not verify", func(t *testing.T) {
		_, other, _ := testenv.PushRandom(t, s.RegistryHost, "team/other", auth)
		if err := verifyLegacy(ctx, other, v); err == nil {
			t.Error("unsigned image verified")
		}
		if n, _ := verifyBundles(t, other, v, authn.Anonymous); n != 0 {
			t.Errorf("unsigned image has %d verified bundles", n)
		}
	})

	t.Run("wrong key does not verify", func(t *testing.T) {
		other := testenv.Start(t, nil)
		wrong := loadVerifier(t, other.PublicKeyPEM(t))
		if err := verifyLegacy(ctx, want, wrong); err == nil {
			t.Error("signature verified with another key")
		}
		if n, _ := verifyBundles(t, want, wrong, authn.Anonymous); n != 0 {
			t.Errorf("%d bundles verified with another key", n)
		}
	})

	t.Run("secrets stay out of the log", func(t *testing.T) {
		logText := s.LogText()
		for _, secret := range []string{signer, s.AdminToken} {
			if strings.Contains(logText, secret) {
				t.Error("a token secret appears in the server log")
			}
		}
		if !strings.Contains(logText, `"request_id"`) {
			t.Error("log lines carry no request id")
		}
	})
}

// TestSignOnReferrersRegistry signs on ggcr's registry, which has the
// referrers API: the bundle is found through the API, and no fallback tag is
// written.
func TestSignOnReferrersRegistry(t *testing.T) {
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.WithReferrersSupport(true)))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	s := testenv.Start(t, func(c *app.Config) { c.Registries = []app.Registry{{Host: host}} })
	tag, want, _ := testenv.PushRandom(t, host, "lib/svc", authn.Anonymous)

	res, err := s.Client(t, s.Token(t, "signer")).Sign(ctx, tag.String())
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if res.Digest != want.DigestStr() {
		t.Fatalf("signed %s, pushed %s", res.Digest, want.DigestStr())
	}
	v := loadVerifier(t, s.PublicKeyPEM(t))
	if err := verifyLegacy(ctx, want, v); err != nil {
		t.Errorf("legacy signature: %v", err)
	}
	if n, err := verifyBundles(t, want, v, authn.Anonymous); n != 1 {
		t.Errorf("verified %d bundles through the referrers API, want 1 (%v)", n, err)
	}
	fallback := want.Context().Tag(strings.Replace(want.DigestStr(), ":", "-", 1))
	if _, err := remote.Head(fallback); err == nil {
		t.Errorf("fallback tag %s written on a registry with the referrers API", fallback)
	}
}

func TestSignRefusals(t *testing.T) {
	ctx := context.Background()
	var outside atomic.Int64
	stranger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		outside.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(stranger.Close)
	strangerHost := strings.TrimPrefix(stranger.URL, "http://")

	s := testenv.Start(t, func(c *app.Config) { c.MaxBodyBytes = 4096 })
	signer := s.Token(t, "signer")
	verifier := s.Token(t, "verifier")
	tag, _, _ := testenv.PushRandom(t, s.RegistryHost, "team/app", &authn.Basic{Username: "ci", Password: signer})

	cases := []struct {
		name   string
		token  string
		body   string
		status int
		code   string
	}{
		{"no token", "", `{"image":"` + tag.String() + `"}`, 401, "UNAUTHENTICATED"},
		{"unknown token", "atd_nope", `{"image":"` + tag.String() + `"}`, 401, "UNAUTHENTICATED"},
		{"verifier may not sign", verifier, `{"image":"` + tag.String() + `"}`, 403, "FORBIDDEN"},
		{"unconfigured registry", signer, `{"image":"` + strangerHost + `/x/y:1"}`, 400, "INVALID_ARGUMENT"},
		{"docker hub is not configured", signer, `{"image":"nginx:latest"}`, 400, "INVALID_ARGUMENT"},
		{"malformed JSON", signer, `{"image":`, 400, "MALFORMED_JSON"},
		{"unknown field", signer, `{"image":"` + tag.String() + `","force":true}`, 400, "MALFORMED_JSON"},
		{"empty image", signer, `{"image":""}`, 400, "INVALID_ARGUMENT"},
		{"bad reference", signer, `{"image":"UPPER/Case::x"}`, 400, "INVALID_ARGUMENT"},
		{"missing image", signer, `{"image":"` + s.RegistryHost + `/team/app:nope"}`, 404, "NOT_FOUND"},
		{"oversized body", signer, `{"image":"` + strings.Repeat("a", 8192) + `"}`, 413, "BODY_TOO_LARGE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/signatures", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			var we wire.Error
			if err := json.Unmarshal(b, &we); err != nil || we.Error.Code != tc.code || we.Error.Message == "" || we.Error.RequestID == "" {
				t.Errorf("body %s: want a JSON error with code %s, a message and a request id", b, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
		})
	}
	if n := outside.Load(); n != 0 {
		t.Errorf("%d requests reached an unconfigured registry", n)
	}
}

func TestAuthSurface(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)

	get := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	signer := s.Token(t, "signer")
	auditor := s.Token(t, "auditor")
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/v1/keys", "", 200},
		{"/metrics", "", 401},
		{"/metrics", signer, 403},
		{"/metrics", auditor, 200},
		{"/v1/tokens", "", 401},
		{"/v1/tokens", signer, 403},
		{"/v1/tokens", s.AdminToken, 200},
		{"/v1/nothing-here", "", 404},
	} {
		if got := get(tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s (token %v): %d, want %d", tc.path, tc.token != "", got, tc.want)
		}
	}

	t.Run("keys are PEM with a stable id", func(t *testing.T) {
		ks, err := s.Client(t, "").Keys(ctx)
		if err != nil || len(ks) != 1 {
			t.Fatalf("keys: %v %v", ks, err)
		}
		if ks[0].ID != s.KeyID || !strings.HasPrefix(ks[0].PublicKey, "-----BEGIN PUBLIC KEY-----") || ks[0].State != "active" {
			t.Errorf("key %+v", ks[0])
		}
	})

	t.Run("registry: anonymous pull, push needs signer", func(t *testing.T) {
		_, d, img := testenv.PushRandom(t, s.RegistryHost, "team/a", &authn.Basic{Username: "x", Password: signer})
		if _, err := remote.Image(d); err != nil {
			t.Errorf("anonymous pull: %v", err)
		}
		tag, _ := name.NewTag(s.RegistryHost + "/team/a:anon")
		if err := remote.Write(tag, img); err == nil {
			t.Error("anonymous push accepted")
		}
		if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "x", Password: auditor})); err == nil {
			t.Error("push with an auditor token accepted")
		}
	})

	t.Run("revoked token is refused", func(t *testing.T) {
		tok, err := s.Admin.CreateToken(ctx, "short-lived", []string{"signer"}, []string{"**"})
		if err != nil {
			t.Fatal(err)
		}
		if got := get("/metrics", tok.Secret); got != 403 {
			t.Fatalf("before revoke: %d", got)
		}
		if err := s.Admin.RevokeToken(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		if got := get("/metrics", tok.Secret); got != 401 {
			t.Errorf("after revoke: %d, want 401", got)
		}
		var ce *client.Error
		if err := s.Admin.RevokeToken(ctx, tok.ID); !errors.As(err, &ce) || ce.Status != 404 {
			t.Errorf("second revoke: %v, want 404", err)
		}
		list, err := s.Admin.Tokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range list {
			if x.Secret != "" {
				t.Error("token list shows a secret")
			}
		}
	})

	t.Run("token creation refuses bad input", func(t *testing.T) {
		var ce *client.Error
		if _, err := s.Admin.CreateToken(ctx, "x", []string{"root"}, nil); !errors.As(err, &ce) || ce.Status != 400 {
			t.Errorf("unknown role: %v", err)
		}
		if _, err := s.Admin.CreateToken(ctx, "x", nil, nil); !errors.As(err, &ce) || ce.Status != 400 {
			t.Errorf("no role: %v", err)
		}
		if _, err := s.Client(t, signer).CreateToken(ctx, "x", []string{"admin"}, nil); !errors.As(err, &ce) || ce.Status != 403 {
			t.Errorf("signer creating a token: %v", err)
		}
	})
	_ = bytes.MinRead
}
