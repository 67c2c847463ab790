//go:build load

package main

// make load: 100,000 verifies and 10,000 signs (ATTESTD_LOAD_VERIFIES,
// ATTESTD_LOAD_SIGNS) against attestd as a real process, on one process
// with SQLite and the embedded registry, then on two replicas sharing
// PostgreSQL and Debian's docker-registry. It prints p50/p99 per route, the
// peak RSS of each process, and checks zero 5xx and that acknowledged
// signatures = signatures in the registry = evidence rows = events.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

func envInt(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return d
}

// pushMany pushes n small images to host/load/app and returns their digests.
func pushMany(t *testing.T, host string, auth authn.Authenticator, n int) []name.Digest {
	t.Helper()
	out := make([]name.Digest, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				img, err := random.Image(64, 1)
				if err != nil {
					t.Error(err)
					return
				}
				d, _ := img.Digest()
				ref, _ := name.NewDigest(fmt.Sprintf("%s/load/app%d@%s", host, i%16, d))
				if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
					t.Error(err)
					return
				}
				out[i] = ref
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}

// drive runs the signs (each client signing its share of the digests),
// then the verifies, spread over the clients, and reports. It returns the
// acknowledged signatures.
func drive(t *testing.T, label string, clients []*client.Client, digests []name.Digest, verifies int, procs []*testenv.Process) []testenv.Ack {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var outcomes []testenv.Outcome
	var acks []testenv.Ack
	run := func(sign bool, ops int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for i, cl := range clients {
			l := &testenv.Load{Signer: cl, Verifier: cl, Digests: digests, Policy: "load", Mix: [3]int{0, 0, 1}}
			per := ops / len(clients)
			if sign {
				l.Mix = [3]int{1, 0, 0}
				l.Digests = digests[i*len(digests)/len(clients) : (i+1)*len(digests)/len(clients)]
				per = len(l.Digests)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.Run(ctx, 16/len(clients), per, nil)
				mu.Lock()
				outcomes, acks = append(outcomes, l.Outcomes()...), append(acks, l.Acks()...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	signTook := run(true, len(digests))
	verifyTook := run(false, verifies)
	t.Logf("== %s", label)
	failed := 0
	for _, st := range testenv.Stats(outcomes) {
		t.Logf("   %s", st)
		for code, n := range st.Statuses {
			if code >= 500 || code == 0 {
				failed += n
			}
		}
	}
	t.Logf("   signs: %d in %s (%.0f/s); verifies: %d in %s (%.0f/s)", len(digests), signTook.Round(time.Millisecond), float64(len(digests))/signTook.Seconds(),
		verifies, verifyTook.Round(time.Millisecond), float64(verifies)/verifyTook.Seconds())
	for i, p := range procs {
		t.Logf("   peak RSS of process %d: %.0f MiB", i+1, p.PeakRSS())
	}
	if failed > 0 {
		t.Errorf("%s: %d answers were 5xx or failed, with no fault injected", label, failed)
	}
	return acks
}

// count checks acknowledged signatures = registry copies = evidence rows
// = signature events.
func count(t *testing.T, label string, db *index.DB, regs *oci.Registries, ks *keys.Set, digests []name.Digest, acks []testenv.Ack) {
	t.Helper()
	ctx := context.Background()
	// Allows are followed by VSAs, signed by jobs after the answer: wait
	// until the record stops growing, so that the registry and the index
	// are read at one state.
	last, still := -1, 0
	for deadline := time.Now().Add(10 * time.Minute); still < 3 && time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		rows, err := db.EvidenceRows(ctx, index.EvidenceFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == last {
			still++
		} else {
			last, still = len(rows), 0
		}
	}
	copies := testenv.Agreement(t, db, regs, ks, digests, acks)
	evs, err := db.Events(ctx, index.EventFilter{Kind: service.EventSignatureCreated, Limit: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	vsas, err := db.Events(ctx, index.EventFilter{Kind: service.EventVSAIssued, Limit: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("   %s: %d signatures acknowledged, %d signature events, %d VSAs issued for the allows; %d copies in the registry (2 layouts each) and as many evidence rows agree; 0 lost, 0 doubled",
		label, len(acks), len(evs), len(vsas), copies)
	if copies != 2*len(digests)+2*len(vsas) || len(acks) != len(digests) || len(evs) != len(digests) || len(vsas) > len(digests) {
		t.Errorf("%s: counts do not add up: %d digests, %d acknowledged, %d copies, %d signature events, %d VSAs", label, len(digests), len(acks), copies, len(evs), len(vsas))
	}
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	signs, verifies := envInt("ATTESTD_LOAD_SIGNS", 10_000), envInt("ATTESTD_LOAD_VERIFIES", 100_000)
	bin := buildBinary(t)
	policy := func(host string) []byte {
		return []byte("name: load\nmatch: {images: [\"" + host + "/load/**\"]}\nsignatures: {keys: [default]}\n")
	}

	t.Run("one process on SQLite and the embedded registry", func(t *testing.T) {
		dir := t.TempDir()
		p := testenv.StartProcess(t, bin, nil, "--data-dir", dir)
		host := "localhost:" + strings.Split(p.Addr, ":")[1]
		admin := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(dir, app.AdminTokenFile)))))
		ac := must(client.New("http://"+p.Addr, admin))
		tok := must(ac.CreateToken(ctx, "load", []string{"signer"}, []string{host + "/load/**"}))
		_ = must(ac.PutPolicy(ctx, policy(host)))
		digests := pushMany(t, host, &authn.Basic{Username: "ci", Password: tok.Secret}, signs)
		cl := must(client.New("http://"+p.Addr, tok.Secret))
		acks := drive(t, "one process (SQLite)", []*client.Client{cl}, digests, verifies, []*testenv.Process{p})
		db := must(index.OpenSQLite(ctx, filepath.Join(dir, "index.db")))
		defer db.Close()
		count(t, "one process", db, must(oci.NewRegistries([]oci.Host{{Name: host}}, oci.Options{})), must(app.StoredKeys(ctx, db)), digests, acks)
	})

	t.Run("two replicas on PostgreSQL and docker-registry", func(t *testing.T) {
		pg := testenv.StartPostgres(t)
		reg := testenv.StartDockerRegistry(t)
		keyDir := t.TempDir()
		pw := []byte("load-test-key-password")
		if _, err := keys.EnsureFileKey(keyDir, pw); err != nil {
			t.Fatal(err)
		}
		logURL, logKey := testenv.SharedLog(t)
		env := []string{"ATTESTD_KEY_PASSWORD=" + string(pw), "ATTESTD_DATABASE_URL=" + pg.URL, "ATTESTD_LOG_DATABASE_URL=" + logURL, "ATTESTD_LOG_KEY_FILE=" + logKey}
		args := func() []string {
			return []string{"--data-dir", t.TempDir(), "--embedded-registry=false", "--registries", reg.Host, "--keys", "default=file://" + filepath.Join(keyDir, keys.PrivateKeyFile)}
		}
		a := testenv.StartProcess(t, bin, env, args()...)
		b := testenv.StartProcess(t, bin, env, args()...)
		admin := bootstrapToken(t, a)
		ac := must(client.New("http://"+a.Addr, admin))
		tok := must(ac.CreateToken(ctx, "load", []string{"signer"}, []string{reg.Host + "/load/**"}))
		_ = must(ac.PutPolicy(ctx, policy(reg.Host)))
		digests := pushMany(t, reg.Host, authn.Anonymous, signs)
		ca, cb := must(client.New("http://"+a.Addr, tok.Secret)), must(client.New("http://"+b.Addr, tok.Secret))
		time.Sleep(500 * time.Millisecond) // the policy reaches b
		acks := drive(t, "two replicas (PostgreSQL)", []*client.Client{ca, cb}, digests, verifies, []*testenv.Process{a, b})
		db := must(index.OpenPostgres(ctx, pg.URL))
		defer db.Close()
		count(t, "two replicas", db, must(oci.NewRegistries([]oci.Host{{Name: reg.Host}}, oci.Options{})), must(app.StoredKeys(ctx, db)), digests, acks)
	})
}

// bootstrapToken reads the admin token the first replica wrote.
func bootstrapToken(t *testing.T, p *testenv.Process) string {
	t.Helper()
	for i, a := range p.Cmd.Args {
		if a == "--data-dir" {
			return strings.TrimSpace(string(must(os.ReadFile(filepath.Join(p.Cmd.Args[i+1], app.AdminTokenFile)))))
		}
	}
	t.Fatal("no data dir")
	return ""
}
