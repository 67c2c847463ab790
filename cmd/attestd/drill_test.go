package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
	"github.com/attestd/attestd/tlog"
)

// server is attestd run as a real process on a fixed data dir and port.
type server struct {
	t         *testing.T
	bin, dir  string
	addr      string
	cmd       *exec.Cmd
	done      chan error
	logs      *bytes.Buffer
	startedAt []time.Time
}

func (s *server) start() {
	s.t.Helper()
	s.logs = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, "serve", "--listen", s.addr, "--data-dir", s.dir, "--log-level", "warn")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan error, 1)
	go func(c *exec.Cmd, d chan error) { d <- c.Wait() }(s.cmd, s.done)
	for range 400 {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.startedAt = append(s.startedAt, time.Now())
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.t.Fatalf("attestd did not become ready\n%s", s.logs)
}

func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	if err := <-s.done; err != nil {
		s.t.Logf("attestd killed: %v", err)
	}
}

// ack is a write attestd acknowledged.
type ack struct {
	kind   string // signature or attestation
	digest string
	locs   []wire.Location
}

// TestCrashDrill runs attestd as a real process under concurrent sign and
// attest load and kills it with SIGKILL at random moments, several times.
// After the last restart and a reindex, the registry and the index agree
// exactly: every acknowledged write is in both, with its event, and that
// event is in the audit log at the index the index names, proven under a
// checkpoint signed with the log key; every evidence row names a copy the
// registry holds; no tag points at a manifest or blob that is not there.
func TestCrashDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	ctx := context.Background()
	bin := buildBinary(t)
	srv := &server{t: t, bin: bin, dir: t.TempDir(), addr: freePort(t)}
	srv.start()
	t.Cleanup(func() {
		if srv.cmd.ProcessState == nil {
			srv.kill()
		}
	})
	host := srv.addr
	regHost := "localhost:" + strings.Split(srv.addr, ":")[1]
	admin := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(srv.dir, app.AdminTokenFile)))))
	ac := must(client.New("http://"+host, admin))
	tok := must(ac.CreateToken(ctx, "drill", []string{"signer"}, []string{regHost + "/drill/**"}))
	signer := must(client.New("http://"+host, tok.Secret))

	// Images to write evidence about.
	var digests []name.Digest
	for i := range 4 {
		img := must(random.Image(256, 1))
		tag := must(name.NewTag(fmt.Sprintf("%s/drill/app%d:v1", regHost, i)))
		if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "ci", Password: tok.Secret})); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, tag.Context().Digest(must(img.Digest()).String()))
	}

	// Load: sign and attest until told to stop; keep what was acknowledged.
	var mu sync.Mutex
	var acks []ack
	var n, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d := digests[(w+i)%len(digests)]
				var a ack
				if i%3 == 0 {
					res, err := signer.Sign(ctx, d.String())
					if err != nil {
						failed.Add(1)
						time.Sleep(20 * time.Millisecond)
						continue
					}
					a = ack{kind: "signature", digest: d.DigestStr(), locs: res.Locations}
				} else {
					pred := fmt.Sprintf(`{"run":%d,"worker":%d,"at":%q}`, i, w, time.Now().Format(time.RFC3339Nano))
					res, err := signer.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: "https://example.com/drill/v1", Predicate: []byte(pred)})
					if err != nil {
						failed.Add(1)
						time.Sleep(20 * time.Millisecond)
						continue
					}
					a = ack{kind: "attestation", digest: d.DigestStr(), locs: res.Locations}
				}
				n.Add(1)
				mu.Lock()
				acks = append(acks, a)
				mu.Unlock()
			}
		}()
	}
	const kills = 4
	for range kills {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		srv.kill()
		time.Sleep(100 * time.Millisecond)
		srv.start()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	srv.kill()
	t.Logf("%d writes acknowledged, %d failed across %d kills", n.Load(), failed.Load(), kills)
	if n.Load() == 0 {
		t.Fatal("no write was acknowledged")
	}

	// Reindex with attestd down, then serve again for the checks.
	out, err := exec.Command(bin, "reindex", "--listen", srv.addr, "--data-dir", srv.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Reindexed") {
		t.Fatalf("reindex: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
	again, err := exec.Command(bin, "reindex", "--listen", srv.addr, "--data-dir", srv.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(again), " 0 new rows") {
		t.Errorf("a second reindex is not a no-op: %v\n%s", err, again)
	}
	srv.start()
	defer srv.kill()

	db := must(index.OpenSQLite(ctx, filepath.Join(srv.dir, "index.db")))
	defer db.Close()
	keys := must(app.StoredKeys(ctx, db))
	regs := must(oci.NewRegistries([]oci.Host{{Name: regHost}}, oci.Options{}))
	ev := service.NewEvidence(regs, keys)

	// The registry's verified copies, and the index's evidence rows.
	type copyID struct{ digest, format, content string }
	inRegistry := map[copyID]bool{}
	for _, d := range digests {
		sigs := must(ev.Signatures(ctx, d))
		atts := must(ev.Attestations(ctx, d, ""))
		for _, c := range sigs.Signatures {
			if !c.Valid {
				t.Errorf("an invalid signature in the registry: %+v", c)
			}
			inRegistry[copyID{d.DigestStr(), c.Format, c.Content}] = true
		}
		for _, a := range atts.Attestations {
			if !a.Valid {
				t.Errorf("an invalid attestation in the registry: %+v", a)
			}
			inRegistry[copyID{d.DigestStr(), a.Format, a.Content}] = true
		}
	}
	inIndex := map[copyID]bool{}
	for _, r := range must(db.EvidenceRows(ctx, index.EvidenceFilter{})) {
		inIndex[copyID{r.Digest, r.Format, r.Content}] = true
	}
	for c := range inRegistry {
		if !inIndex[c] {
			t.Errorf("in the registry, not in the index after reindex: %+v", c)
		}
	}
	for c := range inIndex {
		if !inRegistry[c] {
			t.Errorf("an evidence row with no copy in the registry: %+v", c)
		}
	}

	// Every acknowledged write is in both, and has its event in the log.
	recorded := map[string]bool{}
	inLog := map[string]bool{}
	logged := loggedEvents(t, srv.dir, db)
	for _, e := range must(db.Events(ctx, index.EventFilter{Limit: 100_000})) {
		if e.Kind == service.EventSignatureCreated || e.Kind == service.EventAttestationCreated {
			for _, l := range parseLocations(t, e.Locations) {
				recorded[l.Content] = true
				inLog[l.Content] = inLog[l.Content] || logged[e.ID]
			}
		}
	}
	for _, a := range acks {
		for _, l := range a.locs {
			c := copyID{a.digest, l.Kind, l.Content}
			if !inRegistry[c] || !inIndex[c] {
				t.Errorf("acknowledged %s %+v: in registry %v, in index %v", a.kind, l, inRegistry[c], inIndex[c])
			}
			if !recorded[l.Content] {
				t.Errorf("acknowledged %s %s has no event", a.kind, l.Content)
			}
			if !inLog[l.Content] {
				t.Errorf("acknowledged %s %s has no event proven in the audit log", a.kind, l.Content)
			}
		}
	}

	// No tag points at a manifest or blob that is not there.
	for _, d := range digests {
		repo := d.Context()
		tags := must(remote.List(repo))
		for _, tg := range tags {
			img, err := remote.Image(repo.Tag(tg))
			if err != nil {
				// an index (referrers fallback) rather than an image
				if _, ierr := remote.Index(repo.Tag(tg)); ierr != nil {
					t.Errorf("tag %s:%s: %v", repo, tg, err)
				}
				continue
			}
			layers := must(img.Layers())
			for _, l := range layers {
				h := must(l.Digest())
				if _, err := remote.Layer(repo.Digest(h.String())); err != nil {
					t.Errorf("tag %s:%s names a missing blob %s: %v", repo, tg, h, err)
				}
			}
			if _, err := img.RawConfigFile(); err != nil {
				t.Errorf("tag %s:%s: config: %v", repo, tg, err)
			}
		}
		if !slices.ContainsFunc(tags, func(s string) bool { return strings.HasSuffix(s, ".att") }) {
			t.Errorf("%s: no .att tag after the drill", repo)
		}
	}
}

// loggedEvents reads the POSIX audit log from disk (tessera's file
// fetcher) and returns the events whose entry is at the log index the index
// names, proven included under the latest checkpoint, which must verify
// with the log key.
func loggedEvents(t *testing.T, dir string, db *index.DB) map[string]bool {
	t.Helper()
	ctx := context.Background()
	key := must(auditlog.LoadKey(filepath.Join(dir, auditlog.KeyFile), ""))
	v := must(tlog.NewVerifier(key.Verifier))
	f := tclient.FileFetcher{Root: filepath.Join(dir, "log")}
	evs := must(db.Events(ctx, index.EventFilter{Limit: 100_000}))
	need := uint64(0)
	for _, e := range evs {
		if e.LogIndex != nil {
			need = max(need, uint64(*e.LogIndex)+1)
		}
	}
	var cp tlog.Checkpoint
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		cp = must(tlog.OpenCheckpoint(must(f.ReadCheckpoint(ctx)), v))
		if cp.Size >= need {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers log index %d (latest: %d)", need-1, cp.Size)
		}
	}
	pb := must(tclient.NewProofBuilder(ctx, cp.Size, f.ReadTile))
	out := map[string]bool{}
	for _, e := range evs {
		if e.LogIndex == nil {
			continue
		}
		i := uint64(*e.LogIndex)
		b := must(tclient.GetEntryBundle(ctx, f.ReadEntryBundle, i/256, cp.Size))
		entry := b.Entries[i%256]
		if want := must(service.LogEntry(e)); !bytes.Equal(entry, want) {
			t.Errorf("log entry %d is not event %s:\n%s\n%s", i, e.ID, entry, want)
			continue
		}
		if err := tlog.CheckInclusion(cp, i, entry, must(pb.InclusionProof(ctx, i))); err != nil {
			t.Errorf("event %s: %v", e.ID, err)
			continue
		}
		out[e.ID] = true
	}
	return out
}

func parseLocations(t *testing.T, b []byte) []wire.Location {
	t.Helper()
	var ls []wire.Location
	if len(b) > 0 {
		if err := json.Unmarshal(b, &ls); err != nil {
			t.Fatal(err)
		}
	}
	return ls
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
