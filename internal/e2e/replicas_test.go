package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// propagation is how soon a change made on one replica must take effect on
// another (the bound; revisions are polled every 250 ms).
const propagation = time.Second

// within retries check until it holds or the propagation bound passes.
func within(t *testing.T, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(propagation)
	last := ""
	for {
		ok, state := check()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Errorf("%s: not within %s; last seen: %s", what, propagation, last)
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestReplicasShareState runs two attestd replicas on one PostgreSQL and
// Debian's docker-registry, with keys in a KMS both reach: tokens, key
// states and policies changed on one hold on the other, and no cached
// allow outlives a revocation made elsewhere.
func TestReplicasShareState(t *testing.T) {
	ctx := context.Background()
	host := need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	url := freshDatabase(t)
	kms := testenv.StartLocalKMS(t)
	aURI, bURI := kms.CreateKey(t, "replica-a"), kms.CreateKey(t, "replica-b")
	log := sharedLog(t)
	cfg := func(c *app.Config) {
		log(c)
		c.DatabaseURL, c.EmbeddedRegistry.Enabled = url, false
		c.Registries = []app.Registry{{Host: host}}
		c.Keys = []app.KeyConfig{{Name: "a", URI: aURI}, {Name: "b", URI: bURI}}
		c.DefaultKey = "a"
		c.VerdictTTL = time.Hour // a stale allow would outlive the test
	}
	A := testenv.Start(t, cfg)
	B := testenv.StartReplica(t, A, cfg)
	_, d, _ := testenv.PushRandom(t, host, "replicas/app", authn.Anonymous)

	// A token created on A works on B.
	signer := A.ScopedToken(t, []string{host + "/replicas/**"}, "signer")
	if _, err := B.Client(t, signer).SignWith(ctx, wire.SignRequest{Image: d.String(), Key: "b"}); err != nil {
		t.Fatalf("a token created on A, used on B: %v", err)
	}
	verifier := A.Token(t, "verifier")
	va, vb := A.Client(t, verifier), B.Client(t, verifier)

	// A policy loaded on B is used by A.
	pol := fmt.Sprintf("name: replicas\nmatch: {images: [%q]}\nsignatures: {keys: [b]}\n", host+"/replicas/**")
	if _, err := B.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatal(err)
	}
	verify := func(c *client.Client) func() (bool, string) {
		return func() (bool, string) {
			dec, err := c.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "replicas"})
			if err != nil {
				return false, err.Error()
			}
			return dec.Allow, dec.Reason
		}
	}
	within(t, "a policy loaded on B, used by A", verify(va))

	// Warm B's verdict cache, then revoke b on A: B denies within a second.
	if ok, why := verify(vb)(); !ok {
		t.Fatalf("B before the revocation: %s", why)
	}
	if dec, _ := vb.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "replicas"}); !dec.Cached {
		t.Fatalf("B's allow is not cached, so the test would prove nothing: %+v", dec)
	}
	if _, err := A.Admin.RevokeKey(ctx, "b", "leaked in a CI log"); err != nil {
		t.Fatal(err)
	}
	within(t, "a key revoked on A, denied on B", func() (bool, string) {
		ok, why := verify(vb)()
		return !ok && strings.Contains(why, "revoked"), why
	})
	keysB, err := vb.KeySet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keysB.Keys {
		if k.Name == "b" && k.State != "revoked" {
			t.Errorf("B lists key b as %s after A revoked it", k.State)
		}
	}

	// Both replicas' writes are in the one record.
	auditor := A.Client(t, A.Token(t, "auditor"))
	page, err := auditor.Events(ctx, client.EventQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range page.Events {
		kinds[e.Kind]++
	}
	if kinds["signature.created"] != 1 || kinds["policy.put"] != 1 || kinds["key.revoked"] != 1 || kinds["decision.made"] < 2 {
		t.Errorf("events in the shared record: %v", kinds)
	}
}
