package auditlog_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/tlog"
)

// mariaDB returns the URL of a fresh database on the test MariaDB (started
// by scripts/with-services); without one the test fails under CI and is
// skipped elsewhere.
func mariaDB(t *testing.T) string {
	t.Helper()
	base := os.Getenv("ATTESTD_TEST_MARIADB_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ATTESTD_TEST_MARIADB_URL is not set: run under scripts/with-services with mariadb-server installed")
		}
		t.Skip("ATTESTD_TEST_MARIADB_URL is not set (MariaDB, started by scripts/with-services)")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	dsn, err := auditlog.MySQLDSN(strings.TrimSuffix(base, "/") + "/mysql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(base, "/") + "/" + name
}

func key(t *testing.T, dir string) auditlog.Key {
	t.Helper()
	auditlog.RouteLogs(slog.New(slog.DiscardHandler))
	k, err := auditlog.EnsureKey(filepath.Join(dir, auditlog.KeyFile), "attestd/test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type opener func(t *testing.T) *auditlog.Log

// TestPOSIX and TestMySQL run one suite on each backend with the real
// storage: tessera on files in a temp dir, and on MariaDB.
func TestPOSIX(t *testing.T) {
	dir := t.TempDir()
	k := key(t, dir)
	suite(t, k, func(t *testing.T) *auditlog.Log {
		l, err := auditlog.OpenPOSIX(context.Background(), filepath.Join(dir, "log"), auditlog.Options{Signer: k.Signer, CheckpointInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestMySQL(t *testing.T) {
	url := mariaDB(t)
	k := key(t, t.TempDir())
	suite(t, k, func(t *testing.T) *auditlog.Log {
		l, err := auditlog.OpenMySQL(context.Background(), url, auditlog.Options{Signer: k.Signer})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func suite(t *testing.T, k auditlog.Key, open opener) {
	ctx := context.Background()
	v, err := tlog.NewVerifier(k.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	l := open(t)
	// 300 entries from 30 concurrent appenders: every one gets its own
	// index, and the indices are 0..299.
	const n, writers = 300, 30
	entries := make(map[uint64][]byte)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch [][]byte
			for i := range n / writers {
				batch = append(batch, []byte(fmt.Sprintf(`{"id":"w%d-%d"}`, w, i)))
			}
			idx, err := l.Append(ctx, batch)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for i, x := range idx {
				if _, dup := entries[x]; dup {
					t.Errorf("index %d given twice", x)
				}
				entries[x] = batch[i]
			}
		}()
	}
	wg.Wait()
	if len(entries) != n {
		t.Fatalf("%d distinct indices for %d entries", len(entries), n)
	}
	for i := range uint64(n) {
		if _, ok := entries[i]; !ok {
			t.Fatalf("index %d missing: indices are not contiguous", i)
		}
	}
	// Sequenced means readable at once, before any checkpoint covers it.
	got, err := l.Entries(ctx, 0, n, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if string(e) != string(entries[uint64(i)]) {
			t.Fatalf("entry %d reads back as %s, was appended as %s", i, e, entries[uint64(i)])
		}
	}
	cp := waitCheckpoint(t, l, v, n)
	for _, i := range []uint64{0, 1, 255, 256, n - 1} {
		p, err := l.InclusionProof(ctx, i, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckInclusion(cp, i, entries[i], p); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	// The partial tile and bundle of the tree's size hold exactly its
	// entries; on MySQL, where a row holds the largest bundle, a smaller
	// one is served cut to the size asked for.
	if b, err := l.Tile(ctx, 0, 1, n-256); err != nil || len(b) != (n-256)*32 {
		t.Errorf("tile 0/1.p/%d: %d bytes, %v", n-256, len(b), err)
	}
	if b, err := l.EntryBundle(ctx, 1, n-256); err != nil || !strings.HasSuffix(string(b), string(entries[n-1])) {
		t.Errorf("bundle 1.p/%d does not end with entry %d: %q, %v", n-256, n-1, b, err)
	}
	if l.Backend() == "mysql" {
		if b, err := l.Tile(ctx, 0, 1, 7); err != nil || len(b) != 7*32 {
			t.Errorf("tile 0/1.p/7: %d bytes, %v", len(b), err)
		}
		if b, err := l.EntryBundle(ctx, 1, 3); err != nil || !strings.HasSuffix(string(b), string(entries[258])) {
			t.Errorf("bundle 1.p/3 does not end with entry 258: %q, %v", b, err)
		}
	}
	if _, err := l.Tile(ctx, 0, 1, 0); !errors.Is(err, auditlog.ErrNotFound) {
		t.Errorf("a full tile the log does not have yet: %v", err)
	}
	if _, err := l.InclusionProof(ctx, 5, n+1); !errors.Is(err, auditlog.ErrInvalid) {
		t.Errorf("a proof for a size past the log: %v", err)
	}
	if _, err := l.ConsistencyProof(ctx, 9, 3); !errors.Is(err, auditlog.ErrInvalid) {
		t.Errorf("a consistency proof backwards: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Reopened, the log goes on from where it was, and its next checkpoint
	// is consistent with the last.
	l = open(t)
	defer l.Close(ctx)
	idx, err := l.Append(ctx, [][]byte{[]byte(`{"id":"after"}`)})
	if err != nil || idx[0] != n {
		t.Fatalf("append after reopening: %v, %v", idx, err)
	}
	cp2 := waitCheckpoint(t, l, v, n+1)
	p, err := l.ConsistencyProof(ctx, cp.Size, cp2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckConsistency(cp, cp2, p); err != nil {
		t.Error(err)
	}
}

func waitCheckpoint(t *testing.T, l *auditlog.Log, v interface {
	Name() string
	KeyHash() uint32
	Verify(msg, sig []byte) bool
}, size uint64) tlog.Checkpoint {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		raw, err := l.Checkpoint(context.Background())
		if err == nil {
			cp, err := tlog.OpenCheckpoint(raw, v)
			if err != nil {
				t.Fatalf("the log's checkpoint: %v", err)
			}
			if cp.Size >= size {
				return cp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d within 15 s (last: %v)", size, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, auditlog.KeyFile)
	k := key(t, dir)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	again, err := auditlog.EnsureKey(p, "")
	if err != nil || again.Verifier != k.Verifier {
		t.Fatalf("the key changed on reload: %v", err)
	}
	if !strings.HasPrefix(k.Verifier, "attestd/test+") {
		t.Errorf("verifier key %q does not name the origin", k.Verifier)
	}
	if _, err := auditlog.EnsureKey(p, "attestd/other"); err == nil || !strings.Contains(err.Error(), "attestd/test") {
		t.Errorf("a key for another origin was accepted: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.key"), []byte("nonsense"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auditlog.LoadKey(filepath.Join(dir, "bad.key"), ""); err == nil {
		t.Error("a malformed key file loaded")
	}
}

func TestMySQLDSN(t *testing.T) {
	for in, want := range map[string]string{
		"mysql://u:p@db:3307/log?tls=skip-verify": "u:p@tcp(db:3307)/log?tls=skip-verify",
		"mysql://u@db/log":                        "u@tcp(db:3306)/log",
	} {
		got, err := auditlog.MySQLDSN(in)
		if err != nil || !strings.HasPrefix(got, strings.SplitN(want, "?", 2)[0]) {
			t.Errorf("MySQLDSN(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"postgres://x/y", "mysql://db", "mysql:///log", "mysql://db/a/b"} {
		if _, err := auditlog.MySQLDSN(bad); err == nil {
			t.Errorf("MySQLDSN(%q) accepted", bad)
		}
	}
}
