package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// TestGateRenewsAllowsInUse: a cached allow asked for in the last tenth
// of its TTL is checked afresh by that request (a new recorded decision),
// and the renewed allow then serves the requests after it, so a verdict in
// use does not expire under all of its callers at once. Before that window
// the cached allow is served.
func TestGateRenewsAllowsInUse(t *testing.T) {
	const ttl = 4 * time.Second
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) { c.BuilderID = builderID; c.VerdictTTL = ttl })
	signer := s.Token(t, "signer")
	g := &gateEnv{s: s, signer: s.Client(t, signer), verifier: s.Client(t, s.Token(t, "verifier")), auth: &authn.Basic{Username: "ci", Password: signer}}
	if _, err := s.Admin.PutPolicy(ctx, gatePolicy(s.RegistryHost, "release", "enforce", "")); err != nil {
		t.Fatal(err)
	}
	d := g.image(t, "renew", true, true, false, false)
	req := wire.VerifyRequest{Image: d.String(), Policy: "release"}

	first, err := g.verifier.Verify(ctx, req)
	if err != nil || !first.Allow || first.Cached {
		t.Fatalf("first decision: %+v %v", first, err)
	}
	judged := time.Now() // the allow was cached before this, so it expires before judged+ttl
	if again, err := g.verifier.Verify(ctx, req); err != nil || !again.Cached || again.ID != first.ID {
		t.Fatalf("within the TTL: %+v %v, want the cached allow of %s", again, err, first.ID)
	}
	time.Sleep(time.Until(judged.Add(ttl - ttl/16)))
	renewed, err := g.verifier.Verify(ctx, req)
	if err != nil || !renewed.Allow || renewed.Cached || renewed.ID == first.ID {
		t.Fatalf("in the last tenth of the TTL: %+v %v, want a fresh allow", renewed, err)
	}
	after, err := g.verifier.Verify(ctx, req)
	if err != nil || !after.Cached || after.ID != renewed.ID {
		t.Errorf("after the renewal: %+v %v, want the cached allow of %s", after, err, renewed.ID)
	}
}
