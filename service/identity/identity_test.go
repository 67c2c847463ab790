package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/attestd/attestd/internal/testenv/oidcprovider"
	"github.com/attestd/attestd/service/identity"
)

const aud = "attestd.example.com"

func verifier(t *testing.T, p *oidcprovider.Provider, rules ...identity.Rule) *identity.Verifier {
	t.Helper()
	if len(rules) == 0 {
		rules = []identity.Rule{{Name: "app-main", Issuer: "gh", When: `claims.repository == "acme/app" && claims.ref == "refs/heads/main"`,
			Roles: []string{"signer"}, Repositories: []string{"registry.example.com/acme/app/**"}, Keys: []string{"release"}}}
	}
	v, err := identity.New([]identity.Issuer{{Name: "gh", URL: p.Issuer, Audience: aud, Kind: identity.KindGitHubActions, Algorithms: []string{"RS256"}}}, rules,
		identity.Options{RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyAndGrant(t *testing.T) {
	ctx := context.Background()
	p := oidcprovider.Start(t)
	v := verifier(t, p)
	id, g, err := v.Verify(ctx, p.Token(t, oidcprovider.GitHubActions(aud, "acme/app", "refs/heads/main", "abc123")))
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "repo:acme/app:ref:refs/heads/main" || g.Rule != "app-main" || g.Keys[0] != "release" || g.Repositories[0] != "registry.example.com/acme/app/**" {
		t.Errorf("identity %+v, grant %+v", id, g)
	}
	b := id.Build()
	if b.BuilderID != "https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main" || b.SourceRepository != "https://github.com/acme/app" ||
		b.Commit != "abc123" || b.Invocation != "https://github.com/acme/app/actions/runs/4242/attempts/1" {
		t.Errorf("build facts from the claims: %+v", b)
	}
	// Another repository's token is valid, but no rule grants it anything.
	_, _, err = v.Verify(ctx, p.Token(t, oidcprovider.GitHubActions(aud, "acme/other", "refs/heads/main", "abc")))
	if !errors.Is(err, identity.ErrNoGrant) {
		t.Errorf("a token no rule grants: %v, want ErrNoGrant", err)
	}
	_, _, err = v.Verify(ctx, p.Token(t, oidcprovider.GitHubActions(aud, "acme/app", "refs/heads/feature", "abc")))
	if !errors.Is(err, identity.ErrNoGrant) {
		t.Errorf("the rule's repository on another ref: %v, want ErrNoGrant", err)
	}
}

// TestAdversarialTokens: each is refused as invalid (a 401), and a flood of
// unknown key ids fetches the JWKS at most once per interval.
func TestAdversarialTokens(t *testing.T) {
	ctx := context.Background()
	p := oidcprovider.Start(t)
	v := verifier(t, p)
	good := oidcprovider.GitHubActions(aud, "acme/app", "refs/heads/main", "abc123")
	with := func(k string, val any) map[string]any {
		c := map[string]any{}
		for a, b := range good {
			c[a] = b
		}
		c[k] = val
		return c
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(p.PublicKey())
	evil := jose.JSONWebKey{Key: &other.PublicKey, KeyID: "evil", Algorithm: "ES256", Use: "sig"}
	noneTok := func() string {
		parts := strings.Split(p.Token(t, good), ".")
		return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	}()
	for name, tok := range map[string]string{
		"wrong audience":                         p.Token(t, with("aud", "someone-else")),
		"an array audience without ours":         p.Token(t, with("aud", []string{"a", "b"})),
		"an unpinned issuer":                     p.Token(t, with("iss", "https://evil.example/oidc")),
		"the issuer with a trailing slash":       p.Token(t, with("iss", p.Issuer+"/")),
		"expired":                                p.Token(t, with("exp", time.Now().Add(-time.Hour).Unix())),
		"not yet valid":                          p.Token(t, with("nbf", time.Now().Add(time.Hour).Unix())),
		"no expiry":                              p.Token(t, with("exp", nil)),
		"alg none":                               noneTok,
		"HS256 with the public key as secret":    p.Sign(t, good, jose.HS256, pubDER, nil),
		"signed by another key, jwk header":      p.Sign(t, good, jose.ES256, other, map[jose.HeaderKey]any{"kid": "evil", "jwk": evil}),
		"signed by another key, jku header":      p.Sign(t, good, jose.ES256, other, map[jose.HeaderKey]any{"kid": "evil", "jku": "http://127.0.0.1:1/jwks"}),
		"signed by another key, x5u header":      p.Sign(t, good, jose.ES256, other, map[jose.HeaderKey]any{"x5u": "http://127.0.0.1:1/cert"}),
		"a token of the issuer, payload changed": tamper(p.Token(t, good)),
		"not a JWT":                              "a.b.c",
	} {
		if _, _, err := v.Verify(ctx, tok); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	before := p.JWKSFetches()
	for i := range 200 {
		tok := p.Sign(t, good, jose.ES256, other, map[jose.HeaderKey]any{"kid": fmt.Sprintf("random-%d", i)})
		if _, _, err := v.Verify(ctx, tok); !errors.Is(err, identity.ErrInvalid) {
			t.Fatalf("a token with an unknown kid: %v", err)
		}
	}
	if n := p.JWKSFetches() - before; n > 1 {
		t.Errorf("200 unknown key ids fetched the JWKS %d times, want at most once per interval", n)
	}
}

// tamper changes the payload of a signed token, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[1])
	b[len(b)/2] ^= 1
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

func TestRulesAndIssuersValidatedAtLoad(t *testing.T) {
	is := []identity.Issuer{{Name: "gh", URL: "https://token.actions.githubusercontent.com", Audience: aud, Kind: identity.KindGitHubActions}}
	for name, tc := range map[string]struct {
		is []identity.Issuer
		r  identity.Rule
	}{
		"unknown issuer":          {is, identity.Rule{Issuer: "gl", When: "true", Roles: []string{"verifier"}}},
		"no condition":            {is, identity.Rule{Issuer: "gh", Roles: []string{"verifier"}}},
		"bad CEL":                 {is, identity.Rule{Issuer: "gh", When: "claims.repository ==", Roles: []string{"verifier"}}},
		"not a boolean":           {is, identity.Rule{Issuer: "gh", When: `"x"`, Roles: []string{"verifier"}}},
		"admin granted":           {is, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"admin"}}},
		"signer without repos":    {is, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"signer"}, Keys: []string{"k"}}},
		"signer without keys":     {is, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"signer"}, Repositories: []string{"r/**"}}},
		"issuer without audience": {[]identity.Issuer{{Name: "gh", URL: "https://x.example", Kind: identity.KindGeneric}}, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"verifier"}}},
		"plain http issuer":       {[]identity.Issuer{{Name: "gh", URL: "http://x.example", Audience: aud, Kind: identity.KindGeneric}}, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"verifier"}}},
		"symmetric algorithm":     {[]identity.Issuer{{Name: "gh", URL: "https://x.example", Audience: aud, Kind: identity.KindGeneric, Algorithms: []string{"HS256"}}}, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"verifier"}}},
		"jwks on another host":    {[]identity.Issuer{{Name: "gh", URL: "https://x.example", Audience: aud, Kind: identity.KindGeneric, JWKSURL: "https://evil.example/jwks"}}, identity.Rule{Issuer: "gh", When: "true", Roles: []string{"verifier"}}},
	} {
		if _, err := identity.New(tc.is, []identity.Rule{tc.r}, identity.Options{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIssuerUnreachable(t *testing.T) {
	p := oidcprovider.Start(t)
	const gone = "http://127.0.0.1:1/oidc"
	v, err := identity.New([]identity.Issuer{{Name: "gh", URL: gone, Audience: aud, Kind: identity.KindGitHubActions}},
		[]identity.Rule{{Issuer: "gh", When: "true", Roles: []string{"verifier"}}}, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A token naming the configured issuer that cannot be reached: 503, not
	// a silent 401.
	_, _, err = v.Verify(context.Background(), p.Token(t, map[string]any{"iss": gone, "aud": aud, "sub": "x"}))
	if !errors.Is(err, identity.ErrUnavailable) {
		t.Errorf("an unreachable issuer: %v, want ErrUnavailable", err)
	}
}
