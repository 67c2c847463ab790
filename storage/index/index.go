// Package index is attestd's record: API tokens, key states, policies and
// their revisions, gate decisions, SBOM results, the events of every state
// change, and the evidence rows those events wrote. One implementation
// runs on two engines: SQLite (modernc.org/sqlite, no cgo; the embedded
// default) and PostgreSQL (pgx), which replicas share. Each engine has one
// embedded, versioned migration set; package indextest is the conformance
// suite both pass.
//
// It MUST NOT be the only copy of evidence: evidence lives in the registry,
// and the evidence rows can be rebuilt from it (attestd reindex). Token
// secrets MUST be stored only as hashes. A write that returns nil MUST be
// durable.
package index

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver, "pgx"
	_ "modernc.org/sqlite"             // the SQLite driver
)

// ErrNotFound means no row matched.
var ErrNotFound = errors.New("not found")

// Engine names a database engine.
type Engine string

// Engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// DB is the index database.
type DB struct {
	db     *sql.DB
	engine Engine
	// ids caches package ids (packages.go).
	ids idCache
}

//go:embed migrations
var migrations embed.FS

// Open opens (and migrates) the index at url: a postgres:// or
// postgresql:// URL, or else the path of a SQLite file.
func Open(ctx context.Context, url string) (*DB, error) {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return OpenPostgres(ctx, url)
	}
	return OpenSQLite(ctx, url)
}

// OpenSQLite opens (and migrates) the SQLite index at path.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	db.SetMaxOpenConns(4)
	return open(ctx, db, SQLite)
}

// OpenPostgres opens (and migrates) the PostgreSQL index at url. Replicas
// opening it at once migrate one at a time, under an advisory lock.
func OpenPostgres(ctx context.Context, url string) (*DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	return open(ctx, db, Postgres)
}

func open(ctx context.Context, db *sql.DB, e Engine) (*DB, error) {
	d := &DB{db: db, engine: e}
	if err := d.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return d, nil
}

// Engine is the engine the index runs on.
func (d *DB) Engine() Engine { return d.engine }

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Ping checks the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.db.PingContext(ctx) }

// migrationLock is the PostgreSQL advisory lock key held while migrating.
const migrationLock = 0x617474657374 // "attest"

// migrate applies, in order and each in its own transaction, the embedded
// migrations of the engine that are not applied yet.
func (d *DB) migrate(ctx context.Context) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if d.engine == Postgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)
		}()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			_ = rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	dir := path.Join("migrations", string(d.engine))
	files, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, f.Name())
	}
	slices.Sort(names)
	for _, n := range names {
		v, err := strconv.Atoi(strings.SplitN(n, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with its version", n)
		}
		if applied[v] {
			continue
		}
		body, err := migrations.ReadFile(path.Join(dir, n))
		if err != nil {
			return err
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", n, err)
		}
		for _, stmt := range statements(string(body)) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("migrate %s: %w", n, err)
			}
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO schema_migrations (version, name) VALUES (?, ?)`), v, n); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate %s: %w", n, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", n, err)
		}
	}
	return nil
}

// statements splits a migration file into statements at semicolons that
// end a line, dropping comment lines.
func statements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// q rewrites a query written with ? placeholders for the engine.
func (d *DB) q(query string) string {
	if d.engine != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// tx runs f in a transaction and commits it.
func (d *DB) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

type scanner interface{ Scan(...any) error }
