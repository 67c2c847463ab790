package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/storage/oci"
)

// stored counts what is stored for d: the legacy signatures, and the bundle
// referrers of each predicate type.
func stored(t *testing.T, host string, auth authn.Authenticator, d name.Digest) (legacySigs, sigBundles, legacyAtts, attBundles int) {
	t.Helper()
	ctx := context.Background()
	regs, err := oci.NewRegistries([]oci.Host{{Name: host, Auth: auth}}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, sigs, err := regs.LegacySignatures(ctx, d, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := regs.Bundles(ctx, d, attest.BundleMediaType, attest.CosignSignPredicateType, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := regs.LegacyAttestations(ctx, d, attest.PredicateCosignVuln, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := regs.Bundles(ctx, d, attest.BundleMediaType, attest.PredicateCosignVuln, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	return len(sigs), len(bs), len(envs), len(abs)
}

// concurrentWrites signs one digest n times at once, half with key a and
// half with key b, and attests it n times at once with one predicate, then
// checks that each key's signature and the attestation are stored exactly
// once in each layout, and that a 2-of-2 policy allows the image.
func concurrentWrites(t *testing.T, host string, push authn.Authenticator, configure func(*app.Config)) {
	ctx := context.Background()
	kms := testenv.StartLocalKMS(t)
	bURI := kms.CreateKey(t, "concurrent-b")
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{{Name: "a", URI: "file://"}, {Name: "b", URI: bURI}}
		c.DefaultKey = "a"
		c.KMSTimeout = 5 * time.Second
		if configure != nil {
			configure(c)
		}
	})
	if host == "" {
		host = s.RegistryHost
	}
	signer := s.Token(t, "signer")
	if push == nil {
		push = &authn.Basic{Username: "ci", Password: signer}
	}
	_, d, _ := testenv.PushRandom(t, host, "race/app", push)
	cl := s.Client(t, signer)

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		key := "a"
		if i%2 == 1 {
			key = "b"
		}
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
	ls, bs, la, ba := stored(t, host, push, d)
	if ls != 2 || bs != 2 || la != 1 || ba != 1 {
		t.Errorf("after %d concurrent signs with two keys and %d identical attestations: %d legacy signatures, %d signature bundles, %d legacy attestations, %d attestation bundles; want 2, 2, 1, 1", n, n, ls, bs, la, ba)
	}
	rep := mustSignatures(t, cl, d.String())
	keys := map[string]int{}
	for _, c := range rep.Signatures {
		if c.Valid {
			keys[c.KeyName+"/"+c.Format]++
		}
	}
	for _, k := range []string{"a/legacy-tag", "a/referrer", "b/legacy-tag", "b/referrer"} {
		if keys[k] != 1 {
			t.Errorf("valid signatures by key and layout: %v, want one of each", keys)
			break
		}
	}
	pol := fmt.Sprintf("name: two-of-two\nmatch: {images: [%q]}\nsignatures: {keys: [a, b], threshold: 2}\n", d.Context().Name())
	if _, err := s.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatal(err)
	}
	dec, err := cl.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "two-of-two"})
	if err != nil || !dec.Allow {
		t.Errorf("2-of-2 after concurrent signs: %+v %v", dec, err)
	}
}

func TestConcurrentWritesEmbeddedRegistry(t *testing.T) {
	concurrentWrites(t, "", nil, nil)
}

func TestConcurrentWritesDockerRegistry(t *testing.T) {
	host := need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	concurrentWrites(t, host, authn.Anonymous, func(c *app.Config) { c.Registries = []app.Registry{{Host: host}} })
}

// TestManyConcurrentSignsOneCopy: many concurrent signs of one digest by
// one key leave one copy in each layout.
func TestManyConcurrentSignsOneCopy(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "race/one", auth)
	cl := s.Client(t, signer)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Sign(ctx, d.String()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ls, bs, _, _ := stored(t, s.RegistryHost, auth, d); ls != 1 || bs != 1 {
		t.Errorf("200 concurrent signs with one key: %d legacy, %d referrer copies; want 1 and 1", ls, bs)
	}
}
