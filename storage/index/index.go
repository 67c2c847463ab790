// Package index is attestd's metadata index: API tokens today, and the
// evidence index later. SQLite (modernc.org/sqlite, no cgo) is the default.
//
// It MUST NOT be the only copy of evidence: evidence lives in the registry.
// Token secrets MUST be stored only as hashes.
package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver
)

// ErrNotFound means no row matched.
var ErrNotFound = errors.New("not found")

// DB is the index database.
type DB struct {
	db *sql.DB
}

// OpenSQLite opens (and migrates) the SQLite index at path.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	db.SetMaxOpenConns(4)
	d := &DB{db: db}
	if err := d.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Ping checks the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.db.PingContext(ctx) }

var migrations = []string{
	`CREATE TABLE tokens (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL,
		roles      TEXT NOT NULL,
		hash       TEXT NOT NULL UNIQUE,
		created_at TIMESTAMP NOT NULL,
		revoked_at TIMESTAMP
	)`,
	`CREATE TABLE keys (
		name       TEXT PRIMARY KEY,
		key_id     TEXT NOT NULL,
		public_pem TEXT NOT NULL,
		state      TEXT NOT NULL,
		is_default INTEGER NOT NULL DEFAULT 0,
		not_before TIMESTAMP NOT NULL,
		not_after  TIMESTAMP,
		revoked_at TIMESTAMP,
		reason     TEXT NOT NULL DEFAULT '',
		updated_at TIMESTAMP NOT NULL
	)`,
	`CREATE TABLE revisions (
		name  TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	)`,
	`CREATE TABLE decisions (
		id         TEXT PRIMARY KEY,
		at         TIMESTAMP NOT NULL,
		image      TEXT NOT NULL,
		digest     TEXT NOT NULL,
		policy     TEXT NOT NULL,
		revision   TEXT NOT NULL,
		mode       TEXT NOT NULL,
		allowed    INTEGER NOT NULL,
		would_deny INTEGER NOT NULL,
		breakglass TEXT NOT NULL DEFAULT '',
		caller     TEXT NOT NULL,
		detail     TEXT NOT NULL
	)`,
	`CREATE INDEX decisions_digest ON decisions (digest, at)`,
	`CREATE TABLE policies (
		name       TEXT PRIMARY KEY,
		document   BLOB NOT NULL,
		updated_at TIMESTAMP NOT NULL
	)`,
	`CREATE TABLE sboms (
		digest       TEXT NOT NULL,
		format       TEXT NOT NULL,
		tool_version TEXT NOT NULL,
		job_id       INTEGER NOT NULL,
		result       TEXT NOT NULL,
		created_at   TIMESTAMP NOT NULL,
		PRIMARY KEY (digest, format, tool_version)
	)`,
	// Tokens from before repository scopes keep every repository.
	`ALTER TABLE tokens ADD COLUMN repositories TEXT NOT NULL DEFAULT '["**"]'`,
}

func (d *DB) migrate(ctx context.Context) error {
	if _, err := d.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var v int
	if err := d.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i := v; i < len(migrations); i++ {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, i+1); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", i+1, err)
		}
	}
	return nil
}

// Token is a stored API token. The secret itself is never stored.
type Token struct {
	ID    string
	Name  string
	Roles []string
	// Repositories are the repository patterns the token may write to.
	Repositories []string
	Hash         string
	CreatedAt    time.Time
	RevokedAt    *time.Time
}

// InsertToken stores t.
func (d *DB) InsertToken(ctx context.Context, t Token) error {
	_, err := d.db.ExecContext(ctx,
		`INSERT INTO tokens (id, name, roles, repositories, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, strings.Join(t.Roles, ","), jsonList(t.Repositories), t.Hash, t.CreatedAt.UTC())
	if err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	return nil
}

// TokenByHash returns the unrevoked token with the given hash.
func (d *DB) TokenByHash(ctx context.Context, hash string) (Token, error) {
	row := d.db.QueryRowContext(ctx,
		`SELECT id, name, roles, repositories, hash, created_at, revoked_at FROM tokens WHERE hash = ? AND revoked_at IS NULL`, hash)
	return scanToken(row)
}

// ListTokens lists every token, newest first, at most limit.
func (d *DB) ListTokens(ctx context.Context, limit int) ([]Token, error) {
	rows, err := d.db.QueryContext(ctx,
		`SELECT id, name, roles, repositories, hash, created_at, revoked_at FROM tokens ORDER BY created_at DESC, id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// CountTokens counts tokens, revoked or not.
func (d *DB) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := d.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n)
	return n, err
}

// RevokeToken marks a token revoked. It returns ErrNotFound if no unrevoked token has that id.
func (d *DB) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := d.db.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, at.UTC(), id)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func jsonList(xs []string) string {
	if xs == nil {
		xs = []string{}
	}
	b, _ := json.Marshal(xs)
	return string(b)
}

func scanToken(s scanner) (Token, error) {
	var t Token
	var roles, repos string
	var revoked sql.NullTime
	if err := s.Scan(&t.ID, &t.Name, &roles, &repos, &t.Hash, &t.CreatedAt, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Token{}, ErrNotFound
		}
		return Token{}, fmt.Errorf("read token: %w", err)
	}
	if roles != "" {
		t.Roles = strings.Split(roles, ",")
	}
	if err := json.Unmarshal([]byte(repos), &t.Repositories); err != nil {
		return Token{}, fmt.Errorf("read token %s repositories: %w", t.ID, err)
	}
	if revoked.Valid {
		r := revoked.Time
		t.RevokedAt = &r
	}
	return t, nil
}

// KeyRecord is the lifecycle state of a signing key. The public key is kept
// so that verification works when the KMS is down, even across restarts.
type KeyRecord struct {
	Name      string
	KeyID     string
	PublicPEM string
	State     string
	Default   bool
	NotBefore time.Time
	NotAfter  *time.Time
	RevokedAt *time.Time
	Reason    string
}

// Keys lists every key record.
func (d *DB) Keys(ctx context.Context) ([]KeyRecord, error) {
	rows, err := d.db.QueryContext(ctx,
		`SELECT name, key_id, public_pem, state, is_default, not_before, not_after, revoked_at, reason FROM keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []KeyRecord
	for rows.Next() {
		var k KeyRecord
		var notAfter, revoked sql.NullTime
		if err := rows.Scan(&k.Name, &k.KeyID, &k.PublicPEM, &k.State, &k.Default, &k.NotBefore, &notAfter, &revoked, &k.Reason); err != nil {
			return nil, fmt.Errorf("read key: %w", err)
		}
		if notAfter.Valid {
			t := notAfter.Time
			k.NotAfter = &t
		}
		if revoked.Valid {
			t := revoked.Time
			k.RevokedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// SaveKeys writes the given key records in one transaction and bumps the
// key-set revision, so that anything cached against the old key set is
// recognisably stale.
func (d *DB) SaveKeys(ctx context.Context, recs []KeyRecord) (int64, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UTC()
	for _, k := range recs {
		_, err := tx.ExecContext(ctx, `INSERT INTO keys (name, key_id, public_pem, state, is_default, not_before, not_after, revoked_at, reason, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET key_id=excluded.key_id, public_pem=excluded.public_pem, state=excluded.state,
				is_default=excluded.is_default, not_before=excluded.not_before, not_after=excluded.not_after,
				revoked_at=excluded.revoked_at, reason=excluded.reason, updated_at=excluded.updated_at`,
			k.Name, k.KeyID, k.PublicPEM, k.State, k.Default, k.NotBefore.UTC(), utcPtr(k.NotAfter), utcPtr(k.RevokedAt), k.Reason, now)
		if err != nil {
			return 0, fmt.Errorf("save key %s: %w", k.Name, err)
		}
	}
	rev, err := bump(ctx, tx, "keys")
	if err != nil {
		return 0, err
	}
	return rev, tx.Commit()
}

// Revision returns the current revision of name (0 if never bumped).
func (d *DB) Revision(ctx context.Context, name string) (int64, error) {
	var v int64
	err := d.db.QueryRowContext(ctx, `SELECT value FROM revisions WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func bump(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO revisions (name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1`, name); err != nil {
		return 0, fmt.Errorf("bump revision %s: %w", name, err)
	}
	var v int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM revisions WHERE name = ?`, name).Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}

func utcPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

// Decision is one recorded gate decision.
type Decision struct {
	ID, Image, Digest, Policy, Revision, Mode, Breakglass, Caller string
	At                                                            time.Time
	Allowed, WouldDeny                                            bool
	// Detail is the decision as JSON, with every requirement and reason.
	Detail string
}

// InsertDecision records d.
func (d *DB) InsertDecision(ctx context.Context, x Decision) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO decisions (id, at, image, digest, policy, revision, mode, allowed, would_deny, breakglass, caller, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		x.ID, x.At.UTC(), x.Image, x.Digest, x.Policy, x.Revision, x.Mode, x.Allowed, x.WouldDeny, x.Breakglass, x.Caller, x.Detail)
	if err != nil {
		return fmt.Errorf("record decision: %w", err)
	}
	return nil
}

// DecisionByID returns a recorded decision.
func (d *DB) DecisionByID(ctx context.Context, id string) (Decision, error) {
	var x Decision
	err := d.db.QueryRowContext(ctx, `SELECT id, at, image, digest, policy, revision, mode, allowed, would_deny, breakglass, caller, detail FROM decisions WHERE id = ?`, id).
		Scan(&x.ID, &x.At, &x.Image, &x.Digest, &x.Policy, &x.Revision, &x.Mode, &x.Allowed, &x.WouldDeny, &x.Breakglass, &x.Caller, &x.Detail)
	if errors.Is(err, sql.ErrNoRows) {
		return Decision{}, ErrNotFound
	}
	return x, err
}

// PutPolicy stores a policy document under name and bumps the policy revision.
func (d *DB) PutPolicy(ctx context.Context, name string, doc []byte) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT INTO policies (name, document, updated_at) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET document=excluded.document, updated_at=excluded.updated_at`, name, doc, time.Now().UTC()); err != nil {
		return fmt.Errorf("store policy: %w", err)
	}
	if _, err := bump(ctx, tx, "policies"); err != nil {
		return err
	}
	return tx.Commit()
}

// DeletePolicy removes a stored policy.
func (d *DB) DeletePolicy(ctx context.Context, name string) error {
	res, err := d.db.ExecContext(ctx, `DELETE FROM policies WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete policy: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Policies returns every stored policy document by name.
func (d *DB) Policies(ctx context.Context) (map[string][]byte, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT name, document FROM policies`)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var n string
		var b []byte
		if err := rows.Scan(&n, &b); err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, rows.Err()
}

// SBOMRecord says where the SBOM of a digest, in a format, made by a tool
// version, is stored (Result, JSON), and which job made it.
type SBOMRecord struct {
	Digest, Format, ToolVersion string
	JobID                       int64
	Result                      string
}

// PutSBOM records an SBOM.
func (d *DB) PutSBOM(ctx context.Context, r SBOMRecord) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO sboms (digest, format, tool_version, job_id, result, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(digest, format, tool_version) DO UPDATE SET job_id=excluded.job_id, result=excluded.result`,
		r.Digest, r.Format, r.ToolVersion, r.JobID, r.Result, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("record sbom: %w", err)
	}
	return nil
}

// SBOM returns the recorded SBOM, or ErrNotFound.
func (d *DB) SBOM(ctx context.Context, digest, format, toolVersion string) (SBOMRecord, error) {
	r := SBOMRecord{Digest: digest, Format: format, ToolVersion: toolVersion}
	err := d.db.QueryRowContext(ctx, `SELECT job_id, result FROM sboms WHERE digest = ? AND format = ? AND tool_version = ?`, digest, format, toolVersion).Scan(&r.JobID, &r.Result)
	if errors.Is(err, sql.ErrNoRows) {
		return SBOMRecord{}, ErrNotFound
	}
	return r, err
}
