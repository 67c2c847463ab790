package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/tlog"
)

// logFixture is a real attestd with a few signed images, the log key
// pinned, and a checkpoint saved by a first verify-log run.
type logFixture struct {
	s                  *testenv.Server
	dataDir            string
	srv, auditor       string
	keyFile, cpFile    string
	digests            []string
	signer             string
	size               uint64
	logDir, checkpoint string
}

func newLogFixture(t *testing.T, dataDir string) *logFixture {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := testenv.Start(t, func(c *app.Config) { c.DataDir = dataDir })
	f := &logFixture{s: s, dataDir: dataDir, srv: "--server=" + s.URL, logDir: filepath.Join(dataDir, "log")}
	f.checkpoint = filepath.Join(f.logDir, layout.CheckpointPath)
	f.auditor = s.Token(t, "auditor")
	f.signer = s.Token(t, "signer")
	for _, repo := range []string{"tamper/a", "tamper/b", "tamper/c"} {
		_, d, _ := testenv.PushRandom(t, s.RegistryHost, repo, &authn.Basic{Username: "ci", Password: f.signer})
		if _, err := s.Client(t, f.signer).Sign(context.Background(), d.String()); err != nil {
			t.Fatal(err)
		}
		f.digests = append(f.digests, d.DigestStr())
	}
	dir := t.TempDir()
	f.keyFile, f.cpFile = filepath.Join(dir, "log.pub"), filepath.Join(dir, "checkpoint.txt")
	key, err := run(t, "", f.srv, "audit", "log-key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	// The first run proves every entry so far, and so waits for (and
	// saves) a checkpoint of the log's whole size: nothing appends after.
	page, err := s.Client(t, f.auditor).Events(context.Background(), client.EventQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := uint64(0)
	for _, e := range page.Events {
		if e.LogIndex != nil {
			n = max(n, *e.LogIndex+1)
		}
	}
	out, err := f.verify(t, "--range", "0:"+strconv.FormatUint(n, 10))
	if err != nil {
		t.Fatalf("verify-log before tampering: %v\n%s", err, out)
	}
	cp, err := tlog.OpenCheckpoint(mustRead(t, f.cpFile), f.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if f.size = cp.Size; f.size != n {
		t.Fatalf("the saved checkpoint has size %d, the log %d entries", f.size, n)
	}
	return f
}

func (f *logFixture) verify(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, f.auditor, append([]string{f.srv, "audit", "verify-log", "--log-key", f.keyFile, "--since", f.cpFile, "--wait", "15s"}, args...)...)
}

func (f *logFixture) verifier(t *testing.T) note.Verifier {
	t.Helper()
	v, err := tlog.NewVerifier(string(mustRead(t, f.keyFile)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// logIndex is the log index of the first event about digest.
func (f *logFixture) logIndex(t *testing.T, digest string) uint64 {
	t.Helper()
	page, err := f.s.Client(t, f.auditor).Events(context.Background(), client.EventQuery{Digest: digest})
	if err != nil || len(page.Events) == 0 || page.Events[0].LogIndex == nil {
		t.Fatalf("events of %s: %+v, %v", digest, page, err)
	}
	return *page.Events[0].LogIndex
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustFail runs verify-log and checks it fails saying all of want.
func mustFail(t *testing.T, out string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("verify-log passed a tampered log:\n%s", out)
	}
	t.Logf("verify-log: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("verify-log's message %q does not say %q", err, w)
		}
	}
}

// bundlePath is the entry bundle file holding the log's entries at size.
func bundlePath(f *logFixture, size uint64) string {
	return filepath.Join(f.logDir, layout.EntriesPath(0, layout.PartialTileSize(0, 0, size)))
}

// TestVerifyLogEntryEdited: an entry edited on disk (an event's kind
// rewritten, same length) no longer hashes to the leaf the checkpoint
// commits to.
func TestVerifyLogEntryEdited(t *testing.T) {
	f := newLogFixture(t, "")
	idx := f.logIndex(t, f.digests[1])
	p := bundlePath(f, f.size)
	b := mustRead(t, p)
	edited := bytes.ReplaceAll(b, []byte(`"kind":"signature.created"`), []byte(`"kind":"signature.revoked"`))
	if bytes.Equal(b, edited) {
		t.Fatal("no signature entry to edit in the bundle")
	}
	if err := os.WriteFile(p, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := f.verify(t, "--digest", f.digests[1])
	mustFail(t, out, err, "entry "+strconv.FormatUint(idx, 10), "not included", "changed")
}

// TestVerifyLogTileEdited: a hash edited in a tile on disk breaks the
// inclusion proofs built from it.
func TestVerifyLogTileEdited(t *testing.T) {
	f := newLogFixture(t, "")
	p := filepath.Join(f.logDir, layout.TilePath(0, 0, layout.PartialTileSize(0, 0, f.size)))
	b := mustRead(t, p)
	b[0] ^= 0xff // the first leaf's hash: every other entry's proof climbs through it
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := f.verify(t, "--range", "1:"+strconv.FormatUint(f.size, 10))
	mustFail(t, out, err, "not included")
}

// TestVerifyLogEntryDeleted: the bundle holding an event's entry deleted.
func TestVerifyLogEntryDeleted(t *testing.T) {
	f := newLogFixture(t, "")
	if err := os.Remove(bundlePath(f, f.size)); err != nil {
		t.Fatal(err)
	}
	out, err := f.verify(t, "--digest", f.digests[2])
	mustFail(t, out, err, "does not serve it")
}

// TestVerifyLogTruncatedAndRegrown: the log directory is put back to an
// older copy while attestd is down (history after it dropped), and attestd
// then appends new events over the same indices. The checkpoint saved
// before does not extend into the regrown log.
func TestVerifyLogTruncatedAndRegrown(t *testing.T) {
	dataDir := t.TempDir()
	f := newLogFixture(t, dataDir)
	f.s.Stop()
	backup := filepath.Join(t.TempDir(), "log")
	copyDir(t, f.logDir, backup)
	// Grow the log, and save a checkpoint of the grown log.
	s := testenv.Start(t, func(c *app.Config) { c.DataDir = dataDir })
	f.s, f.srv = s, "--server="+s.URL
	for range 3 {
		if _, err := s.Client(t, f.signer).Sign(context.Background(), s.RegistryHost+"/tamper/a@"+f.digests[0]); err != nil {
			t.Fatal(err)
		}
	}
	// (--digest waits for a checkpoint covering the new events: the saved
	// one is past the copy's size.)
	if out, err := f.verify(t, "--digest", f.digests[0]); err != nil {
		t.Fatalf("verify-log of the grown log: %v\n%s", err, out)
	}
	s.Stop()
	// Truncate: the older copy comes back. Regrow: new events take the
	// indices the dropped ones had, and more.
	if err := os.RemoveAll(f.logDir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, f.logDir)
	s = testenv.Start(t, func(c *app.Config) { c.DataDir = dataDir })
	f.s, f.srv = s, "--server="+s.URL
	for range 6 {
		if _, err := s.Client(t, f.signer).Sign(context.Background(), s.RegistryHost+"/tamper/b@"+f.digests[1]); err != nil {
			t.Fatal(err)
		}
	}
	// Seen while the regrown log is still smaller than the saved
	// checkpoint, it is a rollback; once past it, a rewrite.
	saved, err := tlog.OpenCheckpoint(mustRead(t, f.cpFile), f.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if latest := f.diskCheckpoint(t); latest.Size < saved.Size {
		out, err := f.verify(t)
		mustFail(t, out, err, "rollback", "saved in")
	}
	for range 4 {
		if _, err := s.Client(t, f.signer).Sign(context.Background(), s.RegistryHost+"/tamper/b@"+f.digests[1]); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for f.diskCheckpoint(t).Size <= saved.Size {
		if time.Now().After(deadline) {
			t.Fatalf("the regrown log's checkpoint did not pass size %d", saved.Size)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := f.verify(t)
	mustFail(t, out, err, "inconsistent", "saved in")
}

// diskCheckpoint is the checkpoint the POSIX log holds on disk.
func (f *logFixture) diskCheckpoint(t *testing.T) tlog.Checkpoint {
	t.Helper()
	cp, err := tlog.OpenCheckpoint(mustRead(t, f.checkpoint), f.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestVerifyLogFork: a second checkpoint of the same size with another
// root, signed with the real log key (a log that shows two histories).
func TestVerifyLogFork(t *testing.T) {
	f := newLogFixture(t, "")
	k, err := auditlog.LoadKey(filepath.Join(f.dataDir, auditlog.KeyFile), "")
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	forged, err := note.Sign(&note.Note{Text: string(flog.Checkpoint{Origin: k.Signer.Name(), Size: f.size, Hash: root}.Marshal())}, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.checkpoint, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := f.verify(t)
	mustFail(t, out, err, "fork", "size "+strconv.FormatUint(f.size, 10))
}

// TestVerifyLogOtherKey: a checkpoint signed by a key other than the
// pinned one, under the same origin.
func TestVerifyLogOtherKey(t *testing.T) {
	f := newLogFixture(t, "")
	cp, err := tlog.OpenCheckpoint(mustRead(t, f.checkpoint), f.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := note.GenerateKey(rand.Reader, cp.Origin)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := note.NewSigner(skey)
	forged, err := note.Sign(&note.Note{Text: string(flog.Checkpoint{Origin: cp.Origin, Size: cp.Size, Hash: cp.Root}.Marshal())}, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.checkpoint, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := f.verify(t)
	mustFail(t, out, err, "signature does not verify with the pinned log key", "another key")
	// A pinned key that is not the log's fails the same way, untampered log or not.
	if err := os.WriteFile(f.checkpoint, cp.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, vkey, _ := note.GenerateKey(rand.Reader, cp.Origin)
	if err := os.WriteFile(f.keyFile, []byte(vkey), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = f.verify(t)
	mustFail(t, out, err, "pinned log key")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
	}
}
