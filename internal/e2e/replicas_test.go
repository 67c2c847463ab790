package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/storage/index"
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
	A, B, host := twoReplicas(t, "replica")
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

	// A token B has just verified (and so trusts for a moment without the
	// index), revoked on A: A refuses it at once, B within the bound.
	tok, err := A.Admin.CreateToken(ctx, "short-lived", []string{"verifier"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(c *client.Client) func() (bool, string) {
		return func() (bool, string) {
			_, err := c.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "replicas"})
			var ce *client.Error
			return errors.As(err, &ce) && ce.Status == http.StatusUnauthorized, fmt.Sprint(err)
		}
	}
	ta, tb := A.Client(t, tok.Secret), B.Client(t, tok.Secret)
	for _, c := range []*client.Client{ta, tb} {
		if no, why := refused(c)(); no {
			t.Fatalf("the token before its revocation: %s", why)
		}
	}
	if err := A.Admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if no, why := refused(ta)(); !no {
		t.Errorf("a token revoked on A, used on A right after: %s", why)
	}
	within(t, "a token revoked on A, refused by B", refused(tb))

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

// TestReplicasConcurrentWritesOneDigest: fifty concurrent signs of one
// digest, with two keys, spread over two replicas on one PostgreSQL and
// Debian's docker-registry, leave exactly one signature per key in each
// layout (and concurrent identical attestations one copy), and a 2-of-2
// policy allows the image. A write that cannot get the digest's lock in
// time is a 503 with Retry-After.
func TestReplicasConcurrentWritesOneDigest(t *testing.T) {
	ctx := context.Background()
	host := need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	url := freshDatabase(t)
	kms := testenv.StartLocalKMS(t)
	aURI, bURI := kms.CreateKey(t, "race-a"), kms.CreateKey(t, "race-b")
	log := sharedLog(t)
	cfg := func(c *app.Config) {
		log(c)
		c.DatabaseURL, c.EmbeddedRegistry.Enabled = url, false
		c.Registries = []app.Registry{{Host: host}}
		c.Keys = []app.KeyConfig{{Name: "a", URI: aURI}, {Name: "b", URI: bURI}}
		c.DefaultKey = "a"
		c.RequestTimeout = 20 * time.Second
	}
	A := testenv.Start(t, cfg)
	B := testenv.StartReplica(t, A, cfg)
	_, d, _ := testenv.PushRandom(t, host, "replicas/race", authn.Anonymous)
	signer := A.ScopedToken(t, []string{host + "/replicas/**"}, "signer")
	clients := []*client.Client{A.Client(t, signer), B.Client(t, signer)}

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		cl := clients[i%2]
		key := []string{"a", "b"}[(i/2)%2]
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := cl.SignWith(ctx, wire.SignRequest{Image: d.String(), Key: key}); err != nil {
				errs <- fmt.Errorf("sign with %s: %w", key, err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := cl.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: attest.PredicateCosignVuln, Predicate: fixture(t, "vuln.json")}); err != nil {
				errs <- fmt.Errorf("attest: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ls, bs, la, ba := stored(t, host, authn.Anonymous, d)
	if ls != 2 || bs != 2 || la != 1 || ba != 1 {
		t.Errorf("after %d concurrent signs with two keys over two replicas: %d legacy signatures, %d signature bundles, %d legacy attestations, %d attestation bundles; want 2, 2, 1, 1", n, ls, bs, la, ba)
	}
	pol := fmt.Sprintf("name: two-of-two\nmatch: {images: [%q]}\nsignatures: {keys: [a, b], threshold: 2}\n", d.Context().Name())
	if _, err := A.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatal(err)
	}
	within(t, "2-of-2 on B after concurrent signs on both replicas", func() (bool, string) {
		dec, err := clients[1].Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "two-of-two"})
		if err != nil {
			return false, err.Error()
		}
		return dec.Allow, dec.Reason
	})

	t.Run("a lock held past the request's deadline is a 503", func(t *testing.T) {
		_, d2, _ := testenv.PushRandom(t, host, "replicas/held", authn.Anonymous)
		db, err := index.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		unlock, err := db.AdvisoryLock(ctx, d2.Context().Name()+"@"+d2.DigestStr())
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		short, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		C := testenv.StartReplica(t, A, func(c *app.Config) { cfg(c); c.RequestTimeout = time.Second })
		_, err = C.Client(t, signer).Sign(short, d2.String())
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 503 {
			t.Errorf("sign while another replica holds the digest's lock: %v, want 503", err)
		}
	})
}

// twoReplicas starts two attestd replicas on a fresh PostgreSQL database,
// Debian's docker-registry (returned as host), the shared audit log, and
// two local-kms keys, "a" (the default) and "b", named after prefix.
// Verdicts live an hour, so that a stale allow would outlive the test.
func twoReplicas(t *testing.T, prefix string) (a, b *testenv.Server, host string) {
	t.Helper()
	host = need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	url := freshDatabase(t)
	kms := testenv.StartLocalKMS(t)
	aURI, bURI := kms.CreateKey(t, prefix+"-a"), kms.CreateKey(t, prefix+"-b")
	log := sharedLog(t)
	cfg := func(c *app.Config) {
		log(c)
		c.DatabaseURL, c.EmbeddedRegistry.Enabled = url, false
		c.Registries = []app.Registry{{Host: host}}
		c.Keys = []app.KeyConfig{{Name: "a", URI: aURI}, {Name: "b", URI: bURI}}
		c.DefaultKey = "a"
		c.VerdictTTL = time.Hour // a stale allow would outlive the test
	}
	a = testenv.Start(t, cfg)
	return a, testenv.StartReplica(t, a, cfg), host
}
