package index_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/index/indextest"
)

func TestConformanceSQLite(t *testing.T) {
	indextest.Run(t, func(t *testing.T) (*index.DB, func() *index.DB) {
		path := filepath.Join(t.TempDir(), "index.db")
		return openFor(t, path)
	})
}

// TestConformancePostgres runs the suite on a fresh database of the
// PostgreSQL that scripts/with-services starts.
func TestConformancePostgres(t *testing.T) {
	base := os.Getenv("ATTESTD_TEST_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ATTESTD_TEST_POSTGRES_URL is not set: scripts/with-services starts PostgreSQL")
		}
		t.Skip("ATTESTD_TEST_POSTGRES_URL is not set (make test sets it)")
	}
	indextest.Run(t, func(t *testing.T) (*index.DB, func() *index.DB) {
		return openFor(t, FreshPostgres(t, base))
	})
}

// openFor opens the index at u, closing it (and any reopened one) at the
// end of the test.
func openFor(t *testing.T, u string) (*index.DB, func() *index.DB) {
	t.Helper()
	ctx := context.Background()
	db, err := index.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	cur := db
	t.Cleanup(func() { _ = cur.Close() })
	return db, func() *index.DB {
		_ = cur.Close()
		next, err := index.Open(ctx, u)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		cur = next
		return next
	}
}

// FreshPostgres creates an empty database on the server at base and
// returns its URL; it is dropped when the test ends.
func FreshPostgres(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "idx_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return u.String()
}

// TestUpgradeFromUnversionedIndex: an index made before versioned
// migrations (schema_version 7) upgrades in place, and its tokens keep
// every repository.
func TestUpgradeFromUnversionedIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	init, err := os.ReadFile(filepath.Join("migrations", "sqlite", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version (version) VALUES (7)`}
	for _, s := range strings.Split(string(init), ";") {
		if strings.Contains(s, "CREATE") {
			stmts = append(stmts, s)
		}
	}
	stmts = append(stmts, `INSERT INTO tokens (id, name, roles, hash, created_at) VALUES ('old', 'ci', 'signer', 'h-old', '2026-01-01 00:00:00')`)
	for _, s := range stmts {
		if _, err := old.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	_ = old.Close()
	db, err := index.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok, err := db.TokenByHash(ctx, "h-old")
	if err != nil || len(tok.Repositories) != 1 || tok.Repositories[0] != "**" {
		t.Errorf("a token from before scopes: %+v %v, want repositories [**]", tok, err)
	}
	if _, err := db.Events(ctx, index.EventFilter{}); err != nil {
		t.Errorf("the upgraded index has no events table: %v", err)
	}
}

// TestArtifactsBackfilledFromEvents: an index recorded before the
// artifact index (migration 0005) lists, after it, every subject its
// events name (decisions aside), first-recorded first.
func TestArtifactsBackfilledFromEvents(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)`}
	for v, n := range []string{"0001_init.sql", "0002_token_repositories.sql", "0003_events.sql"} {
		b, err := os.ReadFile(filepath.Join("migrations", "sqlite", n))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range strings.Split(string(b), ";\n") {
			if strings.Contains(s, "CREATE") || strings.Contains(s, "ALTER") {
				stmts = append(stmts, s)
			}
		}
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, '%s')`, v+1, n))
	}
	stmts = append(stmts,
		`INSERT INTO events (id, kind, at, repository, digest) VALUES ('e1', 'artifact.uploaded', '2026-11-01 10:00:00 +0000 UTC', 'reg/b', 'sha256:bb')`,
		`INSERT INTO events (id, kind, at, repository, digest) VALUES ('e2', 'signature.created', '2026-11-01 10:01:00 +0000 UTC', 'reg/a', 'sha256:aa')`,
		`INSERT INTO events (id, kind, at, repository, digest) VALUES ('e3', 'signature.created', '2026-11-01 10:02:00 +0000 UTC', 'reg/b', 'sha256:bb')`,
		`INSERT INTO events (id, kind, at, repository, digest) VALUES ('e4', 'decision.made', '2026-11-01 10:03:00 +0000 UTC', 'reg/c', 'sha256:cc')`)
	for _, s := range stmts {
		if _, err := old.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	_ = old.Close()
	db, err := index.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	as, err := db.Artifacts(ctx, index.ArtifactFilter{})
	if err != nil || len(as) != 2 || as[0].Repository != "reg/b" || as[1].Repository != "reg/a" || as[0].FirstAt.Minute() != 0 {
		t.Errorf("backfilled artifacts: %+v, %v", as, err)
	}
}
