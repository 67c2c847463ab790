package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/internal/testenv/oidcprovider"
	"github.com/attestd/attestd/service/identity"
)

const oidcAudience = "attestd.test"

// startWithOIDC runs attestd accepting ID tokens of p as GitHub Actions,
// where acme/app on refs/heads/main may sign acme/app images with key
// default.
func startWithOIDC(t *testing.T, p *oidcprovider.Provider) *testenv.Server {
	t.Helper()
	return testenv.Start(t, func(c *app.Config) {
		c.BuilderID = builderID
		c.OIDC.Issuers = []identity.Issuer{{Name: "github", URL: p.Issuer, Audience: oidcAudience, Kind: identity.KindGitHubActions}}
		c.OIDC.Rules = []identity.Rule{{Name: "acme-app-main", Issuer: "github",
			When:  `claims.repository == "acme/app" && claims.ref == "refs/heads/main"`,
			Roles: []string{"signer"}, Repositories: []string{"*/acme/app/**"}, Keys: []string{"default"}}}
	})
}

// TestOIDCWorkloadIdentity: a CI job signs and writes provenance with its
// OIDC ID token alone (no attestd secret); the provenance names the
// repository, commit and workflow from the verified claims; cosign accepts
// it; the same token gets 403 elsewhere; bad tokens get 401.
func TestOIDCWorkloadIdentity(t *testing.T) {
	ctx := context.Background()
	p := oidcprovider.Start(t)
	s := startWithOIDC(t, p)
	admin := &authn.Basic{Username: "admin", Password: s.AdminToken}
	_, app1, _ := testenv.PushRandom(t, s.RegistryHost, "acme/app/web", admin)
	_, other, _ := testenv.PushRandom(t, s.RegistryHost, "acme/other/web", admin)
	const sha = "0123456789abcdef0123456789abcdef01234567"
	tok := p.Token(t, oidcprovider.GitHubActions(oidcAudience, "acme/app", "refs/heads/main", sha))
	ci := s.Client(t, tok)

	if _, err := ci.Sign(ctx, app1.String()); err != nil {
		t.Fatalf("sign with the job's ID token: %v", err)
	}
	// The caller reports another source; the claims win, the report stays under externalParameters.
	res, err := ci.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: app1.String()}}, Source: wire.Source{Repository: "https://evil.example/x", Commit: "ffff"}})
	if err != nil {
		t.Fatalf("provenance with the job's ID token: %v", err)
	}
	if res.Digest != app1.DigestStr() {
		t.Fatalf("provenance about %s", res.Digest)
	}
	var ce *client.Error
	if _, err := ci.Sign(ctx, other.String()); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("the acme/app token signing acme/other: %v, want 403", err)
	}
	if _, err := ci.SignWith(ctx, wire.SignRequest{Image: app1.String(), Key: "nope"}); err == nil {
		t.Error("signing with a key the rule does not name succeeded")
	}
	if _, err := s.Client(t, p.Token(t, oidcprovider.GitHubActions(oidcAudience, "acme/app", "refs/heads/dev", sha))).Sign(ctx, app1.String()); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("a token from another branch: %v, want 403 (no rule grants it)", err)
	}
	if _, err := s.Client(t, p.Token(t, oidcprovider.GitHubActions("someone-else", "acme/app", "refs/heads/main", sha))).Sign(ctx, app1.String()); !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
		t.Errorf("a token for another audience: %v, want 401", err)
	}

	// The provenance, as verified, says what the claims say.
	vc := s.Client(t, s.Token(t, "verifier"))
	list, err := vc.Attestations(ctx, app1.Context().Name(), app1.DigestStr(), attest.PredicateSLSAProvenanceV1)
	if err != nil || len(list.Attestations) == 0 {
		t.Fatalf("attestations: %+v %v", list, err)
	}
	var env struct{ Payload string }
	_ = json.Unmarshal(list.Attestations[0].Envelope, &env)
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	var st struct {
		Subject []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"subject"`
		Predicate struct {
			BuildDefinition struct {
				ExternalParameters   map[string]any `json:"externalParameters"`
				InternalParameters   map[string]any `json:"internalParameters"`
				ResolvedDependencies []struct {
					URI    string            `json:"uri"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder  struct{ ID string }           `json:"builder"`
				Metadata struct{ InvocationID string } `json:"metadata"`
			} `json:"runDetails"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	pr := st.Predicate
	if pr.RunDetails.Builder.ID != "https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main" ||
		len(pr.BuildDefinition.ResolvedDependencies) != 1 || pr.BuildDefinition.ResolvedDependencies[0].URI != "git+https://github.com/acme/app@refs/heads/main" ||
		pr.BuildDefinition.ResolvedDependencies[0].Digest["gitCommit"] != sha {
		t.Errorf("provenance from the claims: builder %q, dependencies %+v", pr.RunDetails.Builder.ID, pr.BuildDefinition.ResolvedDependencies)
	}
	if !strings.Contains(pr.RunDetails.Metadata.InvocationID, "/actions/runs/4242") {
		t.Errorf("invocation %q, want the run from the claims", pr.RunDetails.Metadata.InvocationID)
	}
	if src, _ := pr.BuildDefinition.ExternalParameters["source"].(map[string]any); src["repository"] != "https://evil.example/x" {
		t.Errorf("what the caller reported is not under externalParameters: %+v", pr.BuildDefinition.ExternalParameters)
	}
	if !strings.Contains(st.Subject[0].Annotations[attest.AnnotationIdentity], "repo:acme/app:ref:refs/heads/main") || st.Subject[0].Annotations[attest.AnnotationOrigin] != "attestd" {
		t.Errorf("signed annotations: %v", st.Subject[0].Annotations)
	}

	// The identity is in the record.
	page, err := s.Client(t, s.Token(t, "auditor")).Events(ctx, client.EventQuery{Digest: app1.DigestStr()})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Events {
		if e.Kind == "provenance.created" && (e.Actor.Kind != "oidc" || !strings.Contains(string(e.Detail), `"repository":"acme/app"`)) {
			t.Errorf("provenance event without the workload identity: %+v %s", e.Actor, e.Detail)
		}
	}

	// cosign accepts it.
	for _, c := range cosigns(t)[1:] {
		out, err := c.run(t, "verify-attestation", "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--key", s.PublicKeyPEM(t), "--type", "slsaprovenance1", app1.String())
		if err != nil {
			t.Errorf("cosign %s verify-attestation of the identity's provenance: %v\n%s", c.name, err, out)
		}
	}
}
