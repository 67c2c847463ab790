package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/notify"
	"github.com/attestd/attestd/internal/testenv"
)

// TestQuarantineOnReplicas runs two replicas on one PostgreSQL and Debian's
// docker-registry: a digest quarantined on one is denied there at once,
// and on the other within a second, though both had its allow cached; a
// lift on the other restores it everywhere. A quarantined key's
// signatures stop counting on both, the same way, and it signs nothing.
func TestQuarantineOnReplicas(t *testing.T) {
	ctx := context.Background()
	A, B, host := twoReplicas(t, "quar")
	_, d, _ := testenv.PushRandom(t, host, "incident/app", authn.Anonymous)
	signer := A.ScopedToken(t, []string{host + "/incident/**"}, "signer")
	if _, err := A.Client(t, signer).SignWith(ctx, wire.SignRequest{Image: d.String(), Key: "b"}); err != nil {
		t.Fatal(err)
	}
	pol := fmt.Sprintf("name: incident\nmatch: {images: [%q], namespaces: [prod]}\nsignatures: {keys: [b]}\n", host+"/incident/**")
	if _, err := A.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatal(err)
	}
	verifier := A.Token(t, "verifier")
	va, vb := A.Client(t, verifier), B.Client(t, verifier)
	req := wire.VerifyRequest{Image: d.String(), Policy: "incident"}
	decide := func(c *client.Client) (wire.Decision, string) {
		dec, err := c.Verify(ctx, req)
		if err != nil {
			return wire.Decision{}, err.Error()
		}
		return dec, fmt.Sprintf("allow=%v cached=%v %s", dec.Allow, dec.Cached, dec.Reason)
	}
	within(t, "the policy and the signature on both replicas", func() (bool, string) {
		a, sa := decide(va)
		b, sb := decide(vb)
		return a.Allow && b.Allow, sa + " | " + sb
	})
	for _, c := range []*client.Client{va, vb} {
		if dec, state := decide(c); !dec.Allow || !dec.Cached {
			t.Fatalf("before the quarantine the allow is cached on both replicas: %s", state)
		}
	}

	q, err := A.Admin.Quarantine(ctx, wire.QuarantineRequest{Digest: d.DigestStr(), Reason: "CVE-2026-0002"})
	if err != nil {
		t.Fatal(err)
	}
	if dec, state := decide(va); dec.Allow || !strings.Contains(dec.Reason, q.ID) || !strings.Contains(dec.Reason, "CVE-2026-0002") {
		t.Errorf("the replica that took the quarantine did not deny at once: %s", state)
	}
	within(t, "the quarantine on the other replica", func() (bool, string) {
		dec, state := decide(vb)
		return !dec.Allow && strings.Contains(dec.Reason, q.ID), state
	})

	if _, err := B.Admin.LiftQuarantine(ctx, q.ID, "false alarm"); err != nil {
		t.Fatal(err)
	}
	if dec, state := decide(vb); !dec.Allow {
		t.Errorf("the replica that lifted the quarantine still denies: %s", state)
	}
	within(t, "the lift on the other replica", func() (bool, string) {
		dec, state := decide(va)
		return dec.Allow, state
	})

	// A key: its signatures stop counting on both, like a revocation.
	kq, err := B.Admin.Quarantine(ctx, wire.QuarantineRequest{Key: "b", Reason: "key b may have leaked"})
	if err != nil {
		t.Fatal(err)
	}
	if dec, state := decide(vb); dec.Allow || !strings.Contains(dec.Reason, kq.ID) {
		t.Errorf("a quarantined key's signature still counts where it was quarantined: %s", state)
	}
	within(t, "the key's quarantine on the other replica", func() (bool, string) {
		dec, state := decide(va)
		return !dec.Allow && strings.Contains(dec.Reason, "quarantined"), state
	})
	within(t, "signing with the quarantined key refused on the other replica", func() (bool, string) {
		_, err := A.Client(t, signer).SignWith(ctx, wire.SignRequest{Image: d.String(), Key: "b"})
		return err != nil && strings.Contains(err.Error(), "quarantined"), fmt.Sprint(err)
	})
	if rep, err := A.Client(t, verifier).Signatures(ctx, d.String()); err != nil || rep.Verified {
		t.Errorf("signatures by a quarantined key verify: %+v %v", rep, err)
	}
	if _, err := A.Admin.LiftQuarantine(ctx, kq.ID, "rotated the KMS grant; the key is sound"); err != nil {
		t.Fatal(err)
	}
	within(t, "the key's lift on the other replica", func() (bool, string) {
		dec, state := decide(vb)
		return dec.Allow, state
	})

	// Where it runs and re-validation, on the shared index: admitted in
	// prod through A, quarantined through B, re-validated by A, listed by B.
	if dec, err := va.Verify(ctx, wire.VerifyRequest{Image: d.String(), Namespace: "prod"}); err != nil || !dec.Allow {
		t.Fatalf("admission in prod: %+v %v", dec, err)
	}
	q2, err := B.Admin.Quarantine(ctx, wire.QuarantineRequest{Digest: d.DigestStr(), Reason: "CVE-2026-0003"})
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := A.Admin.Revalidate(ctx); err != nil || sum.NonCompliant != 1 {
		t.Fatalf("re-validation on A: %+v %v", sum, err)
	}
	bad, err := B.Admin.Deployments(ctx, client.DeploymentQuery{Compliant: "false"})
	if err != nil || len(bad.Deployments) != 1 || bad.Deployments[0].Namespace != "prod" || !strings.Contains(bad.Deployments[0].Reason, q2.ID) {
		t.Errorf("non-compliant deployments on B: %+v %v", bad, err)
	}
	if radius, err := B.Admin.Deployments(ctx, client.DeploymentQuery{Key: "b"}); err != nil || len(radius.Deployments) != 1 || radius.Deployments[0].Digest != d.DigestStr() {
		t.Errorf("key b's blast radius on B: %+v %v", radius, err)
	}
}

// TestRevocationFlipsDeployments admits two images in namespace prod: one
// signed only by key release, one by release and the default key. The
// periodic re-validation finds both compliant; release's blast radius is
// the first only. Revoking release flips the first, and only it, to
// non-compliant at the next re-validation, with the revocation as the
// reason, in GET /v1/deployments?compliant=false and the gauge.
func TestRevocationFlipsDeployments(t *testing.T) {
	ctx := context.Background()
	kms := testenv.StartLocalKMS(t)
	releaseURI := kms.CreateKey(t, "release")
	events := make(chan notify.Event, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e notify.Event
		if r.Header.Get("Content-Type") == "application/cloudevents+json" && json.NewDecoder(r.Body).Decode(&e) == nil {
			events <- e
		}
	}))
	defer hook.Close()
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{{Name: "default", URI: "file://"}, {Name: "release", URI: releaseURI}}
		c.DefaultKey = "default"
		c.RevalidateInterval = time.Second
		c.RevalidateWebhookURL = hook.URL + "/attestd?token=s3cret"
		c.RevalidateWebhookAllow = []string{strings.TrimPrefix(hook.URL, "http://")}
	})
	signer := s.ScopedToken(t, []string{s.RegistryHost + "/rv/**"}, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, only, _ := testenv.PushRandom(t, s.RegistryHost, "rv/only", auth)
	_, both, _ := testenv.PushRandom(t, s.RegistryHost, "rv/both", auth)
	sc := s.Client(t, signer)
	for _, x := range []struct{ image, key string }{{only.String(), "release"}, {both.String(), "release"}, {both.String(), "default"}} {
		if _, err := sc.SignWith(ctx, wire.SignRequest{Image: x.image, Key: x.key}); err != nil {
			t.Fatal(err)
		}
	}
	pol := fmt.Sprintf("name: prod\nmatch: {images: [%q], namespaces: [prod]}\nsignatures: {keys: [release, default]}\n", s.RegistryHost+"/rv/**")
	if _, err := s.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatal(err)
	}
	vc := s.Client(t, s.Token(t, "verifier"))
	for _, img := range []string{only.String(), both.String()} {
		if dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: img, Namespace: "prod"}); err != nil || !dec.Allow {
			t.Fatalf("admission of %s in prod: %+v %v", img, dec, err)
		}
	}
	auditor := s.Client(t, s.Token(t, "auditor"))

	// The periodic job (river, every second here) judges them again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		deps, err := auditor.Deployments(ctx, client.DeploymentQuery{Compliant: "true"})
		if err == nil && len(deps.Deployments) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the periodic re-validation did not run: %+v %v", deps, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	radius, err := auditor.Deployments(ctx, client.DeploymentQuery{Key: "release"})
	if err != nil || len(radius.Deployments) != 1 || radius.Deployments[0].Digest != only.DigestStr() || radius.Deployments[0].Namespace != "prod" {
		t.Errorf("release's blast radius: %+v %v; want only %s", radius, err, only.DigestStr())
	}

	if _, err := s.Admin.RevokeKey(ctx, "release", "key material found in a public gist"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client(t, s.Token(t, "verifier")).Revalidate(ctx); err == nil {
		t.Error("a verifier ran the re-validation")
	}
	sum, err := s.Admin.Revalidate(ctx)
	if err != nil || sum.Checked != 2 || sum.NonCompliant != 1 {
		t.Fatalf("re-validation after the revocation: %+v %v", sum, err)
	}
	bad, err := auditor.Deployments(ctx, client.DeploymentQuery{Compliant: "false"})
	if err != nil || len(bad.Deployments) != 1 {
		t.Fatalf("non-compliant deployments: %+v %v", bad, err)
	}
	if x := bad.Deployments[0]; x.Digest != only.DigestStr() || x.Namespace != "prod" || x.Compliant == nil || *x.Compliant ||
		!strings.Contains(x.Reason, "revoked") || !strings.Contains(x.Reason, "public gist") {
		t.Errorf("the deployment only release signed: %+v; want non-compliant with the revocation as the reason", x)
	}
	if ok, err := auditor.Deployments(ctx, client.DeploymentQuery{Compliant: "true", Namespace: "prod"}); err != nil || len(ok.Deployments) != 1 || ok.Deployments[0].Digest != both.DigestStr() {
		t.Errorf("the deployment the default key signed too stays compliant: %+v %v", ok, err)
	}

	// The CloudEvent, once: the deployment turned non-compliant.
	select {
	case e := <-events:
		data, _ := e.Data.(map[string]any)
		if e.Type != "dev.attestd.deployment.noncompliant" || e.SpecVersion != "1.0" || !strings.HasSuffix(e.Subject, only.DigestStr()) ||
			data["namespace"] != "prod" || !strings.Contains(fmt.Sprint(data["reason"]), "revoked") {
			t.Errorf("the webhook's event: %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Error("no CloudEvent for the deployment that turned non-compliant")
	}
	if _, err := s.Admin.Revalidate(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		t.Errorf("a deployment still non-compliant was announced again: %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
	if strings.Contains(s.LogText(), "s3cret") {
		t.Error("the webhook URL's secret is in the log")
	}

	// Deny by default: no token, no answer.
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/deployments?compliant=false"}, {http.MethodPost, "/v1/deployments/revalidate"},
		{http.MethodGet, "/v1/quarantine"}, {http.MethodPost, "/v1/quarantine"}, {http.MethodPost, "/v1/quarantine/x/lift"},
	} {
		req, _ := http.NewRequest(r.method, s.URL+r.path, strings.NewReader(`{"digest":"`+only.DigestStr()+`","reason":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", r.method, r.path, resp.StatusCode)
		}
	}

	// The gauge, by namespace.
	metrics := scrape(t, s, s.Token(t, "auditor"))
	if !strings.Contains(metrics, `attestd_deployments_noncompliant{namespace="prod"} 1`) {
		t.Errorf("the non-compliant gauge:\n%s", grepLines(metrics, "attestd_deployments"))
	}
}

func scrape(t *testing.T, s *testenv.Server, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
