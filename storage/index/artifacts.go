package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Artifact is a repository and digest the record names: anything uploaded,
// registered, signed, attested or reindexed (gate decisions alone do not
// make one). ID orders artifacts by when they were first recorded.
type Artifact struct {
	ID                 int64
	Repository, Digest string
	FirstAt            time.Time
	// Provenance are the provenance facts indexed for it, when asked for.
	Provenance []Provenance
}

// Provenance is what a SLSA provenance attestation says about its subject,
// indexed for search. Rows are unique per artifact and content.
type Provenance struct {
	Repository, Digest                     string
	SourceRepo, Commit, Builder, BuildType string
}

// dbTime scans a time from either engine: PostgreSQL gives a time.Time,
// SQLite gives its text form where the column is an expression (MIN, MAX).
type dbTime struct{ t time.Time }

func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		d.t = x.UTC()
		return nil
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	case nil:
		d.t = time.Time{}
		return nil
	}
	return fmt.Errorf("a time from %T", v)
}

func (d *dbTime) parse(s string) error {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999 -0700 MST", "2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			d.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("a time from %q", s)
}

// artifactID returns the id of repository and digest, recording the
// artifact first (at at) if it is new.
func (d *DB) artifactID(ctx context.Context, tx *sql.Tx, repository, digest string, at time.Time) (int64, error) {
	if err := d.touchArtifact(ctx, tx, repository, digest, at); err != nil {
		return 0, err
	}
	var id int64
	if err := tx.QueryRowContext(ctx, d.q(`SELECT id FROM artifacts WHERE repository = ? AND digest = ?`), repository, digest).Scan(&id); err != nil {
		return 0, fmt.Errorf("record artifact: %w", err)
	}
	return id, nil
}

func (d *DB) touchArtifact(ctx context.Context, tx *sql.Tx, repository, digest string, at time.Time) error {
	_, err := tx.ExecContext(ctx, d.q(`INSERT INTO artifacts (repository, digest, first_at) VALUES (?, ?, ?) ON CONFLICT (repository, digest) DO NOTHING`),
		repository, digest, at.UTC())
	if err != nil {
		return fmt.Errorf("record artifact: %w", err)
	}
	return nil
}

// indexEvent records what e tells the artifact index: its subject (unless
// it is a gate decision), its provenance facts and its SBOMs' packages.
// Each step is idempotent, and runs whether or not the event itself is
// new: reindex fills the index from evidence recorded before it existed.
// It returns how many SBOM documents were indexed for the first time.
func (d *DB) indexEvent(ctx context.Context, tx *sql.Tx, e Event) (int, error) {
	if e.Repository != "" && e.Digest != "" && e.Decision == nil {
		if err := d.touchArtifact(ctx, tx, e.Repository, e.Digest, e.At); err != nil {
			return 0, err
		}
	}
	for _, p := range e.Provenance {
		id, err := d.artifactID(ctx, tx, p.Repository, p.Digest, e.At)
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO provenance (artifact_id, source_repo, commit_sha, builder, build_type) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`), id, p.SourceRepo, p.Commit, p.Builder, p.BuildType); err != nil {
			return 0, fmt.Errorf("record provenance: %w", err)
		}
	}
	n := 0
	for _, s := range e.SBOMs {
		fresh, err := d.indexSBOM(ctx, tx, e, s)
		if err != nil {
			return 0, err
		}
		if fresh {
			n++
		}
	}
	return n, nil
}

// ArtifactsByDigest returns the artifacts of digest, in every repository.
func (d *DB) ArtifactsByDigest(ctx context.Context, digest string) ([]Artifact, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT id, repository, digest, first_at FROM artifacts WHERE digest = ? ORDER BY id`), digest)
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	out, err := scanArtifacts(rows)
	if err != nil {
		return nil, err
	}
	return out, d.withProvenance(ctx, out)
}

func scanArtifacts(rows *sql.Rows) ([]Artifact, error) {
	defer rows.Close()
	var out []Artifact
	for rows.Next() {
		var a Artifact
		var at dbTime
		if err := rows.Scan(&a.ID, &a.Repository, &a.Digest, &at); err != nil {
			return nil, fmt.Errorf("read artifact: %w", err)
		}
		a.FirstAt = at.t
		out = append(out, a)
	}
	return out, rows.Err()
}

// withProvenance fills the provenance facts of as.
func (d *DB) withProvenance(ctx context.Context, as []Artifact) error {
	if len(as) == 0 {
		return nil
	}
	at := make(map[int64]int, len(as))
	args := make([]any, 0, len(as))
	for i, a := range as {
		at[a.ID] = i
		args = append(args, a.ID)
	}
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT artifact_id, source_repo, commit_sha, builder, build_type FROM provenance
		WHERE artifact_id IN (`+placeholders(len(args))+`) ORDER BY artifact_id, source_repo, commit_sha, builder, build_type`), args...)
	if err != nil {
		return fmt.Errorf("list provenance: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var p Provenance
		if err := rows.Scan(&id, &p.SourceRepo, &p.Commit, &p.Builder, &p.BuildType); err != nil {
			return err
		}
		a := &as[at[id]]
		p.Repository, p.Digest = a.Repository, a.Digest
		a.Provenance = append(a.Provenance, p)
	}
	return rows.Err()
}

// ArtifactFilter selects artifacts; zero fields select everything. Every
// field given must hold.
type ArtifactFilter struct {
	Repository string
	// SourceRepo and Commit match indexed provenance facts (both on the
	// same provenance when both are given).
	SourceRepo, Commit string
	// SignedBy matches the actor (token name or id) of an event of one of
	// SignerKinds about the artifact.
	SignedBy    string
	SignerKinds []string
	// KeyID and PredicateType match an evidence row of the artifact.
	KeyID, PredicateType string
	// Since and Until bound when the artifact was first recorded.
	Since, Until time.Time
	// After is a cursor: only artifacts with a greater ID.
	After int64
	// Limit caps the page; zero means 100.
	Limit int
}

// Artifacts returns the artifacts f selects in the order they were first
// recorded, with their provenance facts.
func (d *DB) Artifacts(ctx context.Context, f ArtifactFilter) ([]Artifact, error) {
	where := []string{"a.id > ?"}
	args := []any{f.After}
	if f.Repository != "" {
		where, args = append(where, "a.repository = ?"), append(args, f.Repository)
	}
	switch {
	case f.SourceRepo != "" && f.Commit != "":
		where, args = append(where, "a.id IN (SELECT artifact_id FROM provenance WHERE source_repo = ? AND commit_sha = ?)"), append(args, f.SourceRepo, f.Commit)
	case f.SourceRepo != "":
		where, args = append(where, "a.id IN (SELECT artifact_id FROM provenance WHERE source_repo = ?)"), append(args, f.SourceRepo)
	case f.Commit != "":
		where, args = append(where, "a.id IN (SELECT artifact_id FROM provenance WHERE commit_sha = ?)"), append(args, f.Commit)
	}
	if f.SignedBy != "" {
		if len(f.SignerKinds) == 0 {
			return nil, errors.New("list artifacts: signed by whom, in which kinds of event")
		}
		where = append(where, `EXISTS (SELECT 1 FROM events e WHERE e.digest = a.digest AND e.repository = a.repository
			AND (e.actor_name = ? OR e.actor_id = ?) AND e.kind IN (`+placeholders(len(f.SignerKinds))+`))`)
		args = append(args, f.SignedBy, f.SignedBy)
		for _, k := range f.SignerKinds {
			args = append(args, k)
		}
	}
	if f.KeyID != "" {
		where, args = append(where, "EXISTS (SELECT 1 FROM evidence x WHERE x.digest = a.digest AND x.repository = a.repository AND x.key_id = ?)"), append(args, f.KeyID)
	}
	if f.PredicateType != "" {
		where, args = append(where, "EXISTS (SELECT 1 FROM evidence x WHERE x.digest = a.digest AND x.repository = a.repository AND x.predicate_type = ?)"), append(args, f.PredicateType)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "a.first_at >= ?"), append(args, f.Since.UTC())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "a.first_at < ?"), append(args, f.Until.UTC())
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	args = append(args, f.Limit)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT a.id, a.repository, a.digest, a.first_at FROM artifacts a WHERE `+strings.Join(where, " AND ")+` ORDER BY a.id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	out, err := scanArtifacts(rows)
	if err != nil {
		return nil, err
	}
	return out, d.withProvenance(ctx, out)
}

// ArtifactsByID returns the artifacts with the given ids, in id order.
func (d *DB) ArtifactsByID(ctx context.Context, ids []int64) ([]Artifact, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT id, repository, digest, first_at FROM artifacts WHERE id IN (`+placeholders(len(args))+`) ORDER BY id`), args...)
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	return scanArtifacts(rows)
}

// placeholders returns n comma-separated ? placeholders.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
