//go:build drill

package e2e

// Fault drills (make drill): each dependency is taken down for five
// seconds under load — the registry, the KMS, the database, the disk.
// While the fault holds, attestd answers 200 or a clean 503 with
// Retry-After (the gate denies with a reason); when it ends, attestd
// recovers without a restart; and nothing it acknowledged is missing.

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

const faultHeld = 5 * time.Second

type faultCase struct {
	s    *testenv.Server
	host string // the registry images live in
	push authn.Authenticator
	db   func(t *testing.T) *index.DB
	// gate, if set, is what a fresh verify must say while the fault holds.
	gate func(t *testing.T, d wire.Decision, err error)
}

func runFault(t *testing.T, fc faultCase, fault, heal func()) {
	ctx := context.Background()
	s := fc.s
	signer := s.ScopedToken(t, []string{fc.host + "/drill/**"}, "signer")
	sc, vc := s.Client(t, signer), s.Client(t, s.Token(t, "verifier"))
	var digests []name.Digest
	for i := range 4 {
		_, d, _ := testenv.PushRandom(t, fc.host, fmt.Sprintf("drill/app%d", i), fc.push)
		digests = append(digests, d)
	}
	_, spare, _ := testenv.PushRandom(t, fc.host, "drill/spare", fc.push)
	if _, err := s.Admin.PutPolicy(ctx, []byte("name: drill\nmatch: {images: [\""+fc.host+"/drill/**\"]}\nsignatures: {keys: [default]}\n")); err != nil {
		t.Fatal(err)
	}
	load := &testenv.Load{Signer: sc, Verifier: vc, Digests: digests, Policy: "drill", Mix: [3]int{1, 2, 2}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { load.Run(ctx, 4, 0, stop); close(done) }()

	time.Sleep(time.Second)
	faultAt := time.Now()
	fault()
	time.Sleep(faultHeld / 2)
	if fc.gate != nil {
		d, err := vc.Verify(ctx, wire.VerifyRequest{Image: spare.String(), Policy: "drill"})
		fc.gate(t, d, err)
	}
	time.Sleep(faultHeld / 2)
	heal()
	healAt := time.Now()
	// Recovery without a restart: a new write succeeds.
	var recovered time.Time
	for i := 0; recovered.IsZero(); i++ {
		_, err := sc.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: digests[0].String()}, PredicateType: "https://example.com/load/v1", Predicate: []byte(fmt.Sprintf(`{"probe":%d}`, i))})
		if err == nil {
			recovered = time.Now()
			break
		}
		if time.Since(healAt) > 30*time.Second {
			t.Fatalf("no recovery within 30 s of the fault's end: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	<-done

	during, fails := 0, 0
	for _, o := range load.Outcomes() {
		switch {
		case o.Status == 200:
		case o.Status == 503 && o.RetryAfter != "":
			if end := o.At.Add(o.Took); end.Before(faultAt) || o.At.After(recovered) {
				t.Errorf("a 503 outside the fault: %+v", o)
			}
			during++
		default:
			fails++
			if fails <= 5 {
				t.Errorf("neither 200 nor a 503 with Retry-After: %+v", o)
			}
		}
	}
	if during == 0 {
		t.Errorf("no request saw the fault: the drill proved nothing")
	}
	for _, st := range testenv.Stats(load.Outcomes()) {
		t.Logf("%s", st)
	}

	// What was acknowledged is all there; reindex first, for the copies
	// a 503 left in the registry without a record.
	cfg := s.Config
	if cfg.EmbeddedRegistry.Enabled {
		cfg.EmbeddedRegistry.Host = s.RegistryHost
	}
	st, err := app.Reindex(ctx, cfg, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("reindex: %v", err)
	}
	db := fc.db(t)
	ks, err := app.StoredKeys(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := oci.NewRegistries([]oci.Host{{Name: fc.host, Auth: fc.push}}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	copies := testenv.Agreement(t, db, regs, ks, digests, load.Acks())
	t.Logf("fault held %s; %d requests got a 503; recovered %s after; %d writes acknowledged, %d copies checked, %d found by reindex, 0 lost",
		faultHeld, during, recovered.Sub(healAt).Round(time.Millisecond), len(load.Acks()), copies, st.New)
}

func sqliteIndex(s *testenv.Server) func(t *testing.T) *index.DB {
	return func(t *testing.T) *index.DB {
		db, err := index.OpenSQLite(context.Background(), filepath.Join(s.DataDir, "index.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
}

func denies(word string) func(t *testing.T, d wire.Decision, err error) {
	return func(t *testing.T, d wire.Decision, err error) {
		t.Helper()
		if err != nil {
			if ce, ok := err.(*client.Error); ok && ce.Status == 503 && ce.RetryAfter != "" {
				return
			}
			t.Errorf("a fresh verify during the fault: %v, want a deny with a reason or a 503", err)
			return
		}
		if d.Allow || !strings.Contains(strings.ToLower(d.Reason), word) {
			t.Errorf("a fresh verify during the fault: %+v, want a deny naming %q", d, word)
		}
	}
}

func TestDrillRegistryDown(t *testing.T) {
	reg := testenv.StartDockerRegistry(t)
	s := testenv.Start(t, func(c *app.Config) {
		c.EmbeddedRegistry.Enabled = false
		c.Registries = []app.Registry{{Host: reg.Host}}
		c.RequestTimeout = 3 * time.Second
	})
	runFault(t, faultCase{s: s, host: reg.Host, push: authn.Anonymous, db: sqliteIndex(s), gate: denies("registry")}, reg.Stop, func() { reg.Restart(t) })
}

func TestDrillKMSDown(t *testing.T) {
	kms := testenv.StartLocalKMS(t)
	uri := kms.CreateKey(t, "drill")
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{{Name: "default", URI: uri}}
		c.KMSTimeout = time.Second
	})
	signer := s.Token(t, "signer")
	runFault(t, faultCase{s: s, host: s.RegistryHost, push: &authn.Basic{Username: "ci", Password: signer}, db: sqliteIndex(s)}, kms.Stop, func() { kms.Restart(t) })
}

func TestDrillDatabaseDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	reg := testenv.StartDockerRegistry(t)
	log := testenv.WithSharedLog(t)
	s := testenv.Start(t, func(c *app.Config) {
		log(c)
		c.DatabaseURL, c.EmbeddedRegistry.Enabled = pg.URL, false
		c.Registries = []app.Registry{{Host: reg.Host}}
		c.RequestTimeout = 3 * time.Second
	})
	db := func(t *testing.T) *index.DB {
		d, err := index.OpenPostgres(context.Background(), pg.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	runFault(t, faultCase{s: s, host: reg.Host, push: authn.Anonymous, db: db, gate: denies("")}, pg.Stop, func() { pg.Restart(t) })
}

func TestDrillDiskFull(t *testing.T) {
	dir := testenv.MountTmpfs(t, 256<<20)
	s := testenv.Start(t, func(c *app.Config) {
		c.DataDir = filepath.Join(dir, "data")
	})
	signer := s.Token(t, "signer")
	var free func()
	runFault(t, faultCase{s: s, host: s.RegistryHost, push: &authn.Basic{Username: "ci", Password: signer}, db: sqliteIndex(s)},
		func() { free = testenv.Fill(t, dir) }, func() { free() })
}
