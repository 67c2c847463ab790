// Package oidcprovider runs a real OpenID provider in-process for tests
// (github.com/oauth2-proxy/mockoidc: discovery and JWKS over HTTP), and
// signs ID tokens with its key the way a CI platform would, with any
// claims, and adversarial ones too. It counts JWKS fetches.
package oidcprovider

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/oauth2-proxy/mockoidc"
)

// Provider is a running OpenID provider.
type Provider struct {
	// Issuer is its issuer URL.
	Issuer string
	key    *rsa.PrivateKey
	kid    string
	m      *mockoidc.MockOIDC
	jwks   atomic.Int64
}

// Start runs a provider until the test ends.
func Start(t testing.TB) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mockoidc.NewServer(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{key: key, m: m}
	if err := m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/jwks") {
				p.jwks.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	p.Issuer = m.Issuer()
	if p.kid, err = m.Keypair.KeyID(); err != nil {
		t.Fatal(err)
	}
	return p
}

// JWKSFetches is how many times the JWKS was fetched.
func (p *Provider) JWKSFetches() int64 { return p.jwks.Load() }

// Token signs claims with the provider's key (RS256, its key id). Claims
// the caller leaves out get defaults: iss, iat, nbf, and exp in 10 minutes.
func (p *Provider) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	return p.Sign(t, claims, jose.RS256, p.key, map[jose.HeaderKey]any{"kid": p.kid})
}

// Defaults fills the standard claims a CI platform sets.
func (p *Provider) Defaults(claims map[string]any) map[string]any {
	now := time.Now()
	out := map[string]any{"iss": p.Issuer, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// Sign signs claims (with Defaults) with any algorithm, key and extra
// headers: the raw material of adversarial tokens.
func (p *Provider) Sign(t testing.TB, claims map[string]any, alg jose.SignatureAlgorithm, key any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: headers}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts.WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p.Defaults(claims))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// PublicKey is the provider's signing key's public half.
func (p *Provider) PublicKey() *rsa.PublicKey { return &p.key.PublicKey }

// GitHubActions returns the claims GitHub Actions puts in a job's ID token
// for repository at ref and commit sha, with audience aud.
func GitHubActions(aud, repository, ref, sha string) map[string]any {
	owner, _, _ := strings.Cut(repository, "/")
	return map[string]any{
		"aud": aud, "sub": "repo:" + repository + ":ref:" + ref,
		"repository": repository, "repository_owner": owner, "repository_id": "123456", "ref": ref, "ref_type": "branch", "sha": sha,
		"workflow": "build", "workflow_ref": repository + "/.github/workflows/build.yml@" + ref,
		"job_workflow_ref": repository + "/.github/workflows/build.yml@" + ref, "run_id": "4242", "run_number": "7", "run_attempt": "1",
		"event_name": "push", "actor": "octocat", "runner_environment": "github-hosted",
	}
}

// GitLabCI returns the claims GitLab CI puts in a job's ID token.
func GitLabCI(aud, project, branch, sha string) map[string]any {
	return map[string]any{
		"aud": aud, "sub": "project_path:" + project + ":ref_type:branch:ref:" + branch,
		"project_path": project, "project_id": "99", "namespace_path": strings.Split(project, "/")[0], "ref": branch, "ref_type": "branch",
		"sha": sha, "pipeline_id": "555", "pipeline_source": "push", "job_id": "777", "user_login": "dev",
		"ci_config_ref_uri": "gitlab.example.com/" + project + "//.gitlab-ci.yml@refs/heads/" + branch, "runner_environment": "gitlab-hosted",
	}
}
