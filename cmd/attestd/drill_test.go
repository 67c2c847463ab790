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
	"strconv"
	"strings"
	"sync"
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
	"github.com/attestd/attestd/internal/testenv"
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

// TestCrashDrill runs attestd as a real process under mixed load (sign,
// attest, verify, uploads, SBOM jobs) and kills it with SIGKILL at random
// moments, several times (ATTESTD_DRILL_KILLS, default 4). After the last
// restart and a reindex, the registry and the index agree exactly: every
// acknowledged write is in both, with its event; every evidence row names
// a copy the registry holds; no tag points at a manifest or blob that is
// not there; every SBOM job that was accepted completes; and every
// acknowledged write's event is in the audit log at the index the index
// names, proven under a checkpoint signed with the log key.
func TestCrashDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	ctx := context.Background()
	kills := 4
	if v := os.Getenv("ATTESTD_DRILL_KILLS"); v != "" {
		kills = must(strconv.Atoi(v))
	}
	bin := buildBinary(t)
	srv := &server{t: t, bin: bin, dir: t.TempDir(), addr: freePort(t)}
	srv.start()
	t.Cleanup(func() {
		if srv.cmd.ProcessState == nil {
			srv.kill()
		}
	})
	regHost := "localhost:" + strings.Split(srv.addr, ":")[1]
	admin := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(srv.dir, app.AdminTokenFile)))))
	ac := must(client.New("http://"+srv.addr, admin))
	tok := must(ac.CreateToken(ctx, "drill", []string{"signer"}, []string{regHost + "/drill/**"}))
	signer := must(client.New("http://"+srv.addr, tok.Secret))
	push := &authn.Basic{Username: "ci", Password: tok.Secret}
	if _, err := ac.PutPolicy(ctx, []byte("name: drill\nmatch: {images: [\""+regHost+"/drill/**\"]}\nsignatures: {keys: [default]}\n")); err != nil {
		t.Fatal(err)
	}

	// Images to write evidence about.
	var digests []name.Digest
	for i := range 4 {
		img := must(random.Image(256, 1))
		tag := must(name.NewTag(fmt.Sprintf("%s/drill/app%d:v1", regHost, i)))
		if err := remote.Write(tag, img, remote.WithAuth(push)); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, tag.Context().Digest(must(img.Digest()).String()))
	}

	// Load: sign, attest and verify; beside it, uploads and SBOM requests.
	load := &testenv.Load{Signer: signer, Verifier: signer, Digests: digests, Policy: "drill", Mix: [3]int{1, 2, 1}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); load.Run(ctx, 4, 0, stop) }()
	var mu sync.Mutex
	var uploads []name.Digest
	var jobs []int64
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := fmt.Sprintf("artifact %d at %s", i, time.Now().Format(time.RFC3339Nano))
			res, err := signer.Upload(ctx, strings.NewReader(body), client.UploadOptions{Repository: regHost + "/drill/files", Kind: "file", Size: int64(len(body))})
			if err == nil {
				mu.Lock()
				uploads = append(uploads, must(name.NewDigest(res.Image)))
				mu.Unlock()
			}
			if i%5 == 0 {
				j, err := signer.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: digests[i%len(digests)].String()}})
				if err == nil {
					mu.Lock()
					jobs = append(jobs, j.ID)
					mu.Unlock()
				}
			}
			time.Sleep(30 * time.Millisecond)
		}
	}()
	for range kills {
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		srv.kill()
		time.Sleep(100 * time.Millisecond)
		srv.start()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	acks := load.Acks()
	t.Logf("%d writes, %d uploads and %d SBOM jobs acknowledged across %d kills", len(acks), len(uploads), len(jobs), kills)
	for _, st := range testenv.Stats(load.Outcomes()) {
		t.Logf("%s", st)
	}
	if len(acks) == 0 || len(uploads) == 0 {
		t.Fatal("nothing was acknowledged")
	}

	// SBOM jobs accepted before a kill resume and complete.
	deadline := time.Now().Add(3 * time.Minute)
	for _, id := range jobs {
		for {
			j, err := signer.Job(ctx, id)
			if err == nil && j.State == "completed" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SBOM job %d did not complete after the restarts: %+v %v", id, j, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	srv.kill()

	// Reindex with attestd down, then serve again for the checks.
	out, err := exec.Command(bin, "reindex", "--listen", srv.addr, "--data-dir", srv.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Reindexed") {
		t.Fatalf("reindex: %v\n%s", err, out)
	}
	t.Logf("%s", lastLine(out))
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
	copies := testenv.Agreement(t, db, regs, keys, digests, acks)

	// Every acknowledged write's event is in the audit log, proven.
	inLog := map[string]bool{}
	logged := loggedEvents(t, srv.dir, db)
	for _, e := range must(db.Events(ctx, index.EventFilter{Limit: 100_000})) {
		if e.Kind == service.EventSignatureCreated || e.Kind == service.EventAttestationCreated {
			for _, l := range parseLocations(t, e.Locations) {
				inLog[l.Content] = inLog[l.Content] || logged[e.ID]
			}
		}
	}
	for _, a := range acks {
		for _, l := range a.Locations {
			if !inLog[l.Content] {
				t.Errorf("acknowledged %s %s has no event proven in the audit log", a.Kind, l.Content)
			}
		}
	}

	// Every acknowledged upload is in the registry, with its event.
	uploaded := map[string]bool{}
	for _, e := range must(db.Events(ctx, index.EventFilter{Kind: service.EventArtifactUploaded, Limit: 100_000})) {
		uploaded[e.Digest] = true
	}
	for _, u := range uploads {
		if _, err := remote.Head(u); err != nil {
			t.Errorf("acknowledged upload %s is not in the registry: %v", u, err)
		}
		if !uploaded[u.DigestStr()] {
			t.Errorf("acknowledged upload %s has no event", u)
		}
	}

	// No tag points at a manifest or blob that is not there.
	repos := map[string]name.Repository{}
	for _, d := range append(append([]name.Digest{}, digests...), uploads...) {
		repos[d.Context().Name()] = d.Context()
	}
	for _, repo := range repos {
		tags, err := remote.List(repo)
		if err != nil && !strings.Contains(err.Error(), "NAME_UNKNOWN") { // a repository pushed by digest only
			t.Fatal(err)
		}
		for _, tg := range tags {
			img, err := remote.Image(repo.Tag(tg))
			if err != nil {
				if _, ierr := remote.Index(repo.Tag(tg)); ierr != nil { // the referrers fallback is an index
					t.Errorf("tag %s:%s: %v", repo, tg, err)
				}
				continue
			}
			for _, l := range must(img.Layers()) {
				h := must(l.Digest())
				if _, err := remote.Layer(repo.Digest(h.String())); err != nil {
					t.Errorf("tag %s:%s names a missing blob %s: %v", repo, tg, h, err)
				}
			}
			if _, err := img.RawConfigFile(); err != nil {
				t.Errorf("tag %s:%s: config: %v", repo, tg, err)
			}
		}
	}
	t.Logf("%d copies in registry and index agree; %d uploads present; %d SBOM jobs completed; 0 lost, 0 doubled", copies, len(uploads), len(jobs))
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
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
