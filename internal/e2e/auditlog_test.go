package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	tclient "github.com/transparency-dev/tessera/client"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/tlog"
)

// sharedLog returns a config change that puts replicas on one audit log: a
// fresh database on the test MariaDB and one log key file.
func sharedLog(t *testing.T) func(*app.Config) { return testenv.WithSharedLog(t) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// checkpointOf waits for a checkpoint of at least size and opens it with
// the log's key.
func checkpointOf(t *testing.T, s *testenv.Server, token string, size uint64) tlog.Checkpoint {
	t.Helper()
	_, key := get(t, s.URL+"/v1/log/key", "")
	v, err := tlog.NewVerifier(string(key))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, raw := get(t, s.URL+"/log/checkpoint", token)
		if code == http.StatusOK {
			cp, err := tlog.OpenCheckpoint(raw, v)
			if err != nil {
				t.Fatalf("/log/checkpoint: %v", err)
			}
			if cp.Size >= size {
				return cp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d within 15 s (last answer %d)", size, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAuditLogServed: the log is served in the tlog-tiles layout to
// auditors only (unless log_public), tessera's client reads it, and the
// proof endpoints' proofs verify against its signed checkpoints.
func TestAuditLogServed(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	auditor, verifier := s.Token(t, "auditor"), s.Token(t, "verifier")
	signer := s.Token(t, "signer")
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "log/app", &authn.Basic{Username: "ci", Password: signer})
	res, err := s.Client(t, signer).Sign(ctx, d.String())
	if err != nil || res.LogIndex == nil {
		t.Fatalf("sign: %+v, %v: no log index", res, err)
	}

	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/log/checkpoint", "", http.StatusUnauthorized},
		{"/log/checkpoint", verifier, http.StatusForbidden},
		{"/log/tile/entries/000.p/1", signer, http.StatusForbidden},
		{"/v1/log/proof/inclusion?index=0&size=1", "", http.StatusUnauthorized},
		{"/log/checkpoint", auditor, http.StatusOK},
		{"/log/../v1/keys", auditor, http.StatusNotFound},
		{"/log/tile/x/y", auditor, http.StatusBadRequest},
		{"/v1/log/key", "", http.StatusOK},
	} {
		if code, body := get(t, s.URL+tc.path, tc.token); code != tc.want {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, code, tc.want, body)
		}
	}

	// tessera's client reads the log as any tlog-tiles log.
	cp := checkpointOf(t, s, auditor, *res.LogIndex+1)
	u := s.Client(t, auditor)
	f, err := u.LogFetcher()
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := tclient.GetEntryBundle(ctx, f.ReadEntryBundle, *res.LogIndex/256, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	entry := bundle.Entries[*res.LogIndex%256]
	var e tlog.Entry
	if err := json.Unmarshal(entry, &e); err != nil || e.Kind != "signature.created" || e.Digest != d.DigestStr() || strings.Contains(string(entry), signer) {
		t.Errorf("the signature's entry: %s (%v)", entry, err)
	}
	// The proof endpoints: inclusion of that entry, consistency between two checkpoints.
	p, err := u.InclusionProof(ctx, *res.LogIndex, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckInclusion(cp, *res.LogIndex, entry, p.Hashes); err != nil {
		t.Errorf("the served inclusion proof: %v", err)
	}
	if _, err := s.Client(t, signer).Sign(ctx, d.String()); err != nil {
		t.Fatal(err)
	}
	cp2 := checkpointOf(t, s, auditor, cp.Size+1)
	cons, err := u.ConsistencyProof(ctx, cp.Size, cp2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckConsistency(cp, cp2, cons.Hashes); err != nil {
		t.Errorf("the served consistency proof: %v", err)
	}
	if err := tlog.CheckConsistency(cp, cp2, p.Hashes); !errors.Is(err, tlog.ErrInconsistent) {
		t.Errorf("a wrong consistency proof passed: %v", err)
	}
	var ce *client.Error
	if _, err := u.InclusionProof(ctx, 0, cp2.Size+100); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("a proof for a size past the log: %v", err)
	}

	// Every answer that recorded an event carries its own log index.
	idx := map[string]*uint64{"sign": res.LogIndex}
	reg, err := s.Client(t, signer).Register(ctx, d.String())
	idx["register"] = reg.LogIndex
	must(t, err)
	att, err := s.Client(t, signer).Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: "https://example.com/test/v1", Predicate: json.RawMessage(`{"a":1}`)})
	must(t, err)
	idx["attest"] = att.LogIndex
	pol, err := s.Admin.PutPolicy(ctx, []byte("name: logged\nmatch: {images: [\""+s.RegistryHost+"/log/**\"]}\nsignatures: {keys: [default]}\n"))
	must(t, err)
	idx["policy put"] = pol.LogIndex
	dec, err := s.Client(t, verifier).Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "logged"})
	must(t, err)
	idx["verify"] = dec.LogIndex
	tok, err := s.Admin.CreateToken(ctx, "logged", []string{"verifier"}, nil)
	must(t, err)
	idx["token"] = tok.LogIndex
	distinct := map[uint64]string{}
	for what, i := range idx {
		if i == nil {
			t.Errorf("the %s answer has no log index", what)
			continue
		}
		if other, dup := distinct[*i]; dup {
			t.Errorf("the %s and %s answers share log index %d", what, other, *i)
		}
		distinct[*i] = what
	}

	// log_public opens the log and its proofs to anonymous readers.
	pub := testenv.Start(t, func(c *app.Config) { c.LogPublic = true })
	checkpointOf(t, pub, "", 1)
	if code, body := get(t, pub.URL+"/v1/log/proof/inclusion?index=0&size=1", ""); code != http.StatusOK {
		t.Errorf("a public log's proof, anonymously: %d %s", code, body)
	}
}

// TestAuditLogDown: while the log cannot be written, a write is answered
// 503 with Retry-After and nothing is acknowledged; the event is in the
// index without a log index, and the outbox appends it once the log is
// back, where verify-log proves it.
func TestAuditLogDown(t *testing.T) {
	var tiles string
	logDown(t, nil, func(s *testenv.Server) {
		// A real fault: the log's tile directory replaced by a file, so
		// that tessera cannot write the next entry bundle.
		tiles = filepath.Join(s.DataDir, "log", "tile")
		if err := os.Rename(tiles, tiles+".aside"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tiles, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
	}, func(*testenv.Server) {
		if err := os.Remove(tiles); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tiles+".aside", tiles); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAuditLogDownMariaDB: the same on the shared backend, the fault a
// table of tessera's moved away in the real MariaDB.
func TestAuditLogDownMariaDB(t *testing.T) {
	shared := sharedLog(t)
	var db *sql.DB
	logDown(t, shared, func(*testenv.Server) {
		cfg := app.Defaults()
		shared(&cfg)
		dsn, err := auditlog.MySQLDSN(cfg.LogDatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		if db, err = sql.Open("mysql", dsn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if _, err := db.Exec("RENAME TABLE TiledLeaves TO TiledLeavesAside"); err != nil {
			t.Fatal(err)
		}
	}, func(*testenv.Server) {
		if _, err := db.Exec("RENAME TABLE TiledLeavesAside TO TiledLeaves"); err != nil {
			t.Fatal(err)
		}
	})
}

// logDown breaks the log with brk, checks that writes are refused and
// nothing acknowledged, repairs it, and checks that the outbox appends
// what was refused.
func logDown(t *testing.T, mod func(*app.Config), brk, repair func(*testenv.Server)) {
	t.Helper()
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) {
		if mod != nil {
			mod(c)
		}
		c.LogOutboxGrace = 200 * time.Millisecond
	})
	signer, auditor := s.Token(t, "signer"), s.Token(t, "auditor")
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "down/app", &authn.Basic{Username: "ci", Password: signer})
	brk(s)
	body, _ := json.Marshal(wire.SignRequest{Image: d.String()})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/signatures", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+signer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "audit log") {
		t.Fatalf("sign with the log down: %d (Retry-After %q) %s; want 503 naming the audit log", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if strings.Contains(string(b), `"log_index"`) {
		t.Errorf("a 503 carries a log index: %s", b)
	}
	au := s.Client(t, auditor)
	page, err := au.Events(ctx, client.EventQuery{Digest: d.DigestStr()})
	if err != nil || len(page.Events) != 1 || page.Events[0].LogIndex != nil {
		t.Fatalf("the event of the unacknowledged write: %+v, %v; want it in the index without a log index", page.Events, err)
	}
	// Changes written in the same transaction as their event are not
	// acknowledged either: no token secret is handed out, no policy put.
	var ce *client.Error
	if tok, err := s.Admin.CreateToken(ctx, "while-down", []string{"verifier"}, nil); !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || tok.Secret != "" {
		t.Errorf("a token created with the log down: %+v, %v; want 503 and no secret", tok, err)
	}
	if _, err := s.Admin.PutPolicy(ctx, []byte("name: down\nmatch: {images: [\"x/**\"]}\nsignatures: {keys: [default]}\n")); !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("a policy put with the log down: %v; want 503", err)
	}
	// verify-log says the event is not in the log yet.
	if out, err := verifyLog(t, s, auditor, "--digest", d.DigestStr(), "--wait", "1s"); err == nil || !strings.Contains(out, "not in the audit log") {
		t.Errorf("verify-log of an event the log does not have: %v\n%s", err, out)
	}

	// The log is back: the outbox appends the event.
	repair(s)
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, err = au.Events(ctx, client.EventQuery{Digest: d.DigestStr()})
		if err == nil && len(page.Events) == 1 && page.Events[0].LogIndex != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outbox did not append the event within 10 s: %+v, %v", page.Events, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := verifyLog(t, s, auditor, "--digest", d.DigestStr())
	if err != nil || !strings.Contains(out, "included: ") {
		t.Errorf("verify-log after the outbox: %v\n%s", err, out)
	}
}

// verifyLog runs the attestctl binary's audit verify-log against s, with
// the log key pinned from s.
func verifyLog(t *testing.T, s *testenv.Server, token string, args ...string) (string, error) {
	t.Helper()
	attestctlBin := filepath.Join(t.TempDir(), "attestctl")
	if out, err := exec.Command("go", "build", "-o", attestctlBin, "../../cmd/attestctl").CombinedOutput(); err != nil {
		t.Fatalf("build attestctl: %v\n%s", err, out)
	}
	keyFile := filepath.Join(t.TempDir(), "log.pub")
	key, err := exec.Command(attestctlBin, "--server", s.URL, "audit", "log-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(attestctlBin, append([]string{"--server", s.URL, "audit", "verify-log", "--log-key", keyFile}, args...)...)
	cmd.Env = append(os.Environ(), "ATTESTD_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAuditLogOrigin: log_origin names the log in its key and checkpoints;
// a data dir whose log key has another origin refuses to start under a
// new name (a log keeps its origin), and starts with the origin unset.
func TestAuditLogOrigin(t *testing.T) {
	dir := t.TempDir()
	s := testenv.Start(t, func(c *app.Config) { c.DataDir, c.LogOrigin = dir, "attestd/registry.example.com" })
	if _, key := get(t, s.URL+"/v1/log/key", ""); !strings.HasPrefix(string(key), "attestd/registry.example.com+") {
		t.Fatalf("log key %q does not name the configured origin", key)
	}
	cp := checkpointOf(t, s, s.AdminToken, 0)
	if cp.Origin != "attestd/registry.example.com" {
		t.Errorf("checkpoint origin %q", cp.Origin)
	}
	s.Stop()
	cfg := app.Defaults()
	cfg.DataDir, cfg.Listen, cfg.LogOrigin = dir, "127.0.0.1:0", "attestd/renamed.example.com"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a, err := app.New(context.Background(), cfg, "", ln, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "keeps its origin") {
		if a != nil {
			t.Error("attestd started under a new origin for an existing log")
		}
		t.Errorf("renaming the log: %v", err)
	}
	again := testenv.Start(t, func(c *app.Config) { c.DataDir = dir })
	if _, key := get(t, again.URL+"/v1/log/key", ""); !strings.HasPrefix(string(key), "attestd/registry.example.com+") {
		t.Errorf("restarted without log_origin, the log key is %q", key)
	}
}
