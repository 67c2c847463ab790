package index

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestTokensRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := db.InsertToken(ctx, Token{ID: "a", Name: "ci", Roles: []string{"signer", "verifier"}, Hash: "h1", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertToken(ctx, Token{ID: "b", Name: "ci2", Roles: []string{"admin"}, Hash: "h1", CreatedAt: now}); err == nil {
		t.Error("duplicate hash accepted")
	}
	got, err := db.TokenByHash(ctx, "h1")
	if err != nil || got.ID != "a" || len(got.Roles) != 2 || !got.CreatedAt.Equal(now) {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	if err := db.RevokeToken(ctx, "a", now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TokenByHash(ctx, "h1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoked token still found: %v", err)
	}
	if err := db.RevokeToken(ctx, "a", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("second revoke = %v", err)
	}
	_ = db.Close()

	// Reopening keeps data and does not re-run migrations.
	db, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts, err := db.ListTokens(ctx, 10)
	if err != nil || len(ts) != 1 || ts[0].RevokedAt == nil {
		t.Errorf("after reopen: %+v %v", ts, err)
	}
}

// TestTokensFromBeforeScopesKeepEveryRepository: a token stored before
// tokens had repository scopes keeps every repository after the upgrade.
func TestTokensFromBeforeScopesKeepEveryRepository(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	stmts := append([]string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`}, migrations[:7]...)
	stmts = append(stmts, `INSERT INTO schema_version (version) VALUES (7)`,
		`INSERT INTO tokens (id, name, roles, hash, created_at) VALUES ('old', 'ci', 'signer', 'h-old', '2026-01-01 00:00:00')`)
	for _, s := range stmts {
		if _, err := old.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	_ = old.Close()
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok, err := db.TokenByHash(ctx, "h-old")
	if err != nil || len(tok.Repositories) != 1 || tok.Repositories[0] != "**" {
		t.Errorf("a token from before scopes: %+v %v, want repositories [**]", tok, err)
	}
}
