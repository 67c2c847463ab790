package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/internal/testenv/hostile"
)

// hostileGate is attestd with one hostile registry configured and a policy
// requiring a signature by the default key for everything on it.
func hostileGate(t testing.TB, reg *hostile.Registry, mod func(*app.Config)) (*testenv.Server, *client.Client) {
	t.Helper()
	s := testenv.Start(t, func(c *app.Config) {
		c.Registries = []app.Registry{{Host: reg.Host}}
		if mod != nil {
			mod(c)
		}
	})
	pol := fmt.Sprintf("name: p\nmatch: {images: [\"%s/**\"]}\nsignatures: {keys: [default]}\n", reg.Host)
	if _, err := s.Admin.PutPolicy(context.Background(), []byte(pol)); err != nil {
		t.Fatal(err)
	}
	return s, s.Client(t, s.Token(t, "verifier"))
}

// TestHostileManifestCapBeforeBuffering: a 64 MiB manifest, with or without
// a Content-Length, is refused at the 4 MiB cap by both a gate decision and
// a sign; attestd takes in little more than the cap, where ggcr alone read
// the whole 64 MiB into memory before attestd looked at its size.
func TestHostileManifestCapBeforeBuffering(t *testing.T) {
	ctx := context.Background()
	reg := hostile.New(t)
	s, vc := hostileGate(t, reg, nil)
	sc := s.Client(t, s.Token(t, "signer"))
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length %v", declared), func(t *testing.T) {
			ref := reg.HugeManifestRef(fmt.Sprintf("huge/len-%v", declared), 64<<20, declared)
			before := reg.HugeSent()
			dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: ref, Policy: "p"})
			if err != nil {
				t.Fatal(err)
			}
			if dec.Allow || !strings.Contains(dec.Reason, "size limit") {
				t.Errorf("64 MiB manifest: %+v, want a deny naming the size limit", dec)
			}
			_, err = sc.Sign(ctx, ref)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "size limit") {
				t.Errorf("sign of a 64 MiB manifest: %v, want 400 naming the size limit", err)
			}
			// Two reads: what the sockets buffer is on top of the cap, far
			// from the 128 MiB two whole reads send.
			sent := reg.HugeSent() - before
			t.Logf("the registry sent %.1f MiB for two reads of a 64 MiB manifest", float64(sent)/(1<<20))
			if sent > 40<<20 {
				t.Errorf("the registry sent %d MiB for two reads capped at 4 MiB", sent>>20)
			}
		})
	}
}

// TestHostileReferrerFloodDeniesFast: ten thousand referrers, each slow to
// fetch, are a deny from the list alone, well inside the gate timeout; not
// 256 fetches that run into it.
func TestHostileReferrerFloodDeniesFast(t *testing.T) {
	ctx := context.Background()
	reg := hostile.New(t)
	_, vc := hostileGate(t, reg, nil)
	d, _ := reg.PushRandom(t, "flood/app")
	reg.InjectReferrers(t, d, 10_000, attest.BundleMediaType, attest.CosignSignPredicateType)
	reg.SlowInjected(20 * time.Millisecond)

	t0 := time.Now()
	dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "p"})
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allow || !strings.Contains(dec.Reason, "more than") {
		t.Errorf("10000 referrers: %+v, want a deny naming the count", dec)
	}
	if n := reg.InjectedFetches(); n != 0 {
		t.Errorf("%d referrers fetched before the list was refused", n)
	}
	t.Logf("decision over 10000 referrers: %s, %q", took, dec.Reason)
	if took > 2*time.Second {
		t.Errorf("the decision took %s; the gate timeout is 5s", took)
	}
}

// TestHostileReadBudgetDenies: while a stalled read holds the whole read
// budget, a gate decision that needs a read waits for it until its
// deadline, then denies naming the budget; the stalled read then finishes.
func TestHostileReadBudgetDenies(t *testing.T) {
	ctx := context.Background()
	reg := hostile.New(t)
	s, vc := hostileGate(t, reg, func(c *app.Config) {
		c.MaxManifestBytes = 64 << 10
		c.RegistryReadBudget = 64 << 10
		c.GateTimeout = time.Second
	})
	a, _ := reg.PushRandom(t, "budget/a")
	b, _ := reg.PushRandom(t, "budget/b")
	// No Content-Length: the read is budgeted at the cap, all of the budget.
	reached, release := reg.Stall("/v2/budget/a/manifests/"+a.DigestStr(), false)
	signed := make(chan error, 1)
	sc := s.Client(t, s.Token(t, "signer"))
	go func() {
		_, err := sc.Sign(ctx, a.String())
		signed <- err
	}()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled read never started")
	}
	// The headers are out; the sign's read takes the budget as they arrive.
	time.Sleep(200 * time.Millisecond)

	dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: b.String(), Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allow || !strings.Contains(dec.Reason, "read budget") {
		t.Errorf("decision while the read budget is spent: %+v, want a deny naming the budget", dec)
	}
	release()
	if err := <-signed; err != nil {
		t.Errorf("the stalled sign, once released: %v", err)
	}
}
