package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RevisionQuarantines changes with every quarantine added or lifted.
const RevisionQuarantines = "quarantines"

// Quarantine kinds.
const (
	QuarantineDigest = "digest"
	QuarantineKey    = "key"
)

// ErrQuarantined means the subject is under an active quarantine already.
var ErrQuarantined = errors.New("already quarantined")

// ErrLifted means the quarantine was lifted already.
var ErrLifted = errors.New("already lifted")

// Quarantine blocks a digest (Subject is sha256:…) or a key (Subject is
// its key id) everywhere until it is lifted. Lifted rows are kept.
type Quarantine struct {
	ID      string
	Kind    string
	Subject string
	// KeyName is the key's name when it was quarantined, for people.
	KeyName   string
	Reason    string
	Actor     string
	CreatedAt time.Time
	// LiftedAt is set once lifted, with LiftedBy and LiftReason.
	LiftedAt   *time.Time
	LiftedBy   string
	LiftReason string
}

// AddQuarantine stores q and evs in one transaction and bumps the
// quarantine revision. A subject already under an active quarantine is
// ErrQuarantined.
func (d *DB) AddQuarantine(ctx context.Context, q Quarantine, evs ...Event) (int64, error) {
	var rev int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, d.q(`SELECT COUNT(*) FROM quarantines WHERE kind = ? AND subject = ? AND lifted_at IS NULL`), q.Kind, q.Subject).Scan(&n); err != nil {
			return fmt.Errorf("read quarantines: %w", err)
		}
		if n > 0 {
			return ErrQuarantined
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO quarantines (id, kind, subject, key_name, reason, actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			q.ID, q.Kind, q.Subject, q.KeyName, q.Reason, q.Actor, q.CreatedAt.UTC()); err != nil {
			return fmt.Errorf("store quarantine: %w", err)
		}
		var err error
		if rev, err = d.bump(ctx, tx, RevisionQuarantines); err != nil {
			return err
		}
		_, err = d.appendEvents(ctx, tx, evs)
		return err
	})
	return rev, err
}

// LiftQuarantine lifts quarantine id, stores evs in the same transaction
// and bumps the quarantine revision. It returns the quarantine as lifted:
// ErrNotFound if there is none, ErrLifted if it was lifted before.
func (d *DB) LiftQuarantine(ctx context.Context, id, by, reason string, at time.Time, evs ...Event) (Quarantine, int64, error) {
	var rev int64
	var out Quarantine
	err := d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE quarantines SET lifted_at = ?, lifted_by = ?, lift_reason = ? WHERE id = ? AND lifted_at IS NULL`),
			at.UTC(), by, reason, id)
		if err != nil {
			return fmt.Errorf("lift quarantine: %w", err)
		}
		row := tx.QueryRowContext(ctx, d.q(`SELECT `+quarantineColumns+` FROM quarantines WHERE id = ?`), id)
		if out, err = scanQuarantine(row); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrLifted
		}
		if rev, err = d.bump(ctx, tx, RevisionQuarantines); err != nil {
			return err
		}
		_, err = d.appendEvents(ctx, tx, evs)
		return err
	})
	return out, rev, err
}

// QuarantineFilter selects quarantines; zero fields select everything.
type QuarantineFilter struct {
	// Active selects only those not lifted.
	Active  bool
	Kind    string
	Subject string
	// AfterAt and AfterID are a cursor: quarantines after that one, in
	// (created time, id) order.
	AfterAt time.Time
	AfterID string
	// Limit caps the page; zero means 100.
	Limit int
}

const quarantineColumns = `id, kind, subject, key_name, reason, actor, created_at, lifted_at, lifted_by, lift_reason`

func scanQuarantine(s scanner) (Quarantine, error) {
	var q Quarantine
	var created, lifted dbTime
	if err := s.Scan(&q.ID, &q.Kind, &q.Subject, &q.KeyName, &q.Reason, &q.Actor, &created, &lifted, &q.LiftedBy, &q.LiftReason); err != nil {
		return Quarantine{}, err
	}
	q.CreatedAt = created.t
	if !lifted.t.IsZero() {
		t := lifted.t
		q.LiftedAt = &t
	}
	return q, nil
}

// Quarantines returns the quarantines f selects, oldest first, in a stable
// (created time, id) order.
func (d *DB) Quarantines(ctx context.Context, f QuarantineFilter) ([]Quarantine, error) {
	where, args := []string{"1 = 1"}, []any{}
	add := func(cond string, v ...any) {
		where = append(where, cond)
		args = append(args, v...)
	}
	if f.Active {
		add("lifted_at IS NULL")
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if f.Subject != "" {
		add("subject = ?", f.Subject)
	}
	if !f.AfterAt.IsZero() {
		add("(created_at > ? OR (created_at = ? AND id > ?))", f.AfterAt.UTC(), f.AfterAt.UTC(), f.AfterID)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	args = append(args, f.Limit)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+quarantineColumns+` FROM quarantines WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at, id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list quarantines: %w", err)
	}
	defer rows.Close()
	var out []Quarantine
	for rows.Next() {
		q, err := scanQuarantine(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// Admitted is a repository, digest and namespace an allow admitted.
type Admitted struct {
	Repository, Digest, Namespace string
	// Image is the decision's image, for decisions from before the record
	// kept the repository.
	Image string
}

// AdmittedSince returns the distinct repository, digest and namespace
// triples admitted (an allow decided or reused with a namespace) at or
// after since, at most limit of them, in a stable order.
func (d *DB) AdmittedSince(ctx context.Context, since time.Time, limit int) ([]Admitted, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT repository, digest, namespace, MIN(image) FROM (
			SELECT repository, digest, namespace, image FROM decisions
				WHERE allowed = ? AND namespace <> '' AND digest <> '' AND at >= ?
			UNION ALL
			SELECT x.repository, x.digest, r.namespace, x.image FROM decision_reuse r JOIN decisions x ON x.id = r.decision_id
				WHERE r.namespace <> '' AND x.digest <> '' AND r.last_at >= ?
		) a GROUP BY repository, digest, namespace ORDER BY repository, digest, namespace LIMIT ?`), true, since.UTC(), since.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list admitted: %w", err)
	}
	defer rows.Close()
	var out []Admitted
	for rows.Next() {
		var a Admitted
		if err := rows.Scan(&a.Repository, &a.Digest, &a.Namespace, &a.Image); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Revalidation is the latest re-validation of an admitted repository,
// digest and namespace.
type Revalidation struct {
	Repository, Digest, Namespace string
	Compliant                     bool
	Reason                        string
	CheckedAt                     time.Time
}

// PutRevalidations stores the results of one run that started at start,
// in one transaction: each row replaces the previous result, and results
// older than start (no longer admitted in the window) are removed.
func (d *DB) PutRevalidations(ctx context.Context, rs []Revalidation, start time.Time) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO revalidations (repository, digest, namespace, compliant, reason, checked_at) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT(repository, digest, namespace) DO UPDATE SET compliant=excluded.compliant, reason=excluded.reason, checked_at=excluded.checked_at`),
				r.Repository, r.Digest, r.Namespace, r.Compliant, r.Reason, r.CheckedAt.UTC()); err != nil {
				return fmt.Errorf("store revalidation: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM revalidations WHERE checked_at < ?`), start.UTC()); err != nil {
			return fmt.Errorf("prune revalidations: %w", err)
		}
		return nil
	})
}

// RevalidationFilter selects re-validation results; zero fields select
// everything.
type RevalidationFilter struct {
	Digests   []string
	Namespace string
	Compliant *bool
	// Limit caps the answer; zero means 100.
	Limit int
}

// Revalidations returns the results f selects, ordered by repository,
// digest and namespace.
func (d *DB) Revalidations(ctx context.Context, f RevalidationFilter) ([]Revalidation, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if len(f.Digests) <= chunk {
		return d.revalidations(ctx, f)
	}
	// Many digests: chunk by chunk, then in order and cut to the limit.
	var out []Revalidation
	for ds := f.Digests; len(ds) > 0; {
		n := min(len(ds), chunk)
		g := f
		g.Digests = ds[:n]
		rs, err := d.revalidations(ctx, g)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		ds = ds[n:]
	}
	slices.SortFunc(out, func(a, b Revalidation) int {
		return strings.Compare(a.Repository+"\x00"+a.Digest+"\x00"+a.Namespace, b.Repository+"\x00"+b.Digest+"\x00"+b.Namespace)
	})
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (d *DB) revalidations(ctx context.Context, f RevalidationFilter) ([]Revalidation, error) {
	where, args := []string{"1 = 1"}, []any{}
	if len(f.Digests) > 0 {
		where = append(where, "digest IN ("+placeholders(len(f.Digests))+")")
		for _, dg := range f.Digests {
			args = append(args, dg)
		}
	}
	if f.Namespace != "" {
		where, args = append(where, "namespace = ?"), append(args, f.Namespace)
	}
	if f.Compliant != nil {
		where, args = append(where, "compliant = ?"), append(args, *f.Compliant)
	}
	args = append(args, f.Limit)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT repository, digest, namespace, compliant, reason, checked_at FROM revalidations
		WHERE `+strings.Join(where, " AND ")+` ORDER BY repository, digest, namespace LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list revalidations: %w", err)
	}
	defer rows.Close()
	var out []Revalidation
	for rows.Next() {
		var r Revalidation
		var at dbTime
		if err := rows.Scan(&r.Repository, &r.Digest, &r.Namespace, &r.Compliant, &r.Reason, &at); err != nil {
			return nil, err
		}
		r.CheckedAt = at.t
		out = append(out, r)
	}
	return out, rows.Err()
}

// NonCompliantByNamespace counts the latest non-compliant results by
// namespace, for every namespace with a result (0 where all comply).
func (d *DB) NonCompliantByNamespace(ctx context.Context) (map[string]int, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT namespace, SUM(CASE WHEN compliant = ? THEN 1 ELSE 0 END) FROM revalidations GROUP BY namespace`), false)
	if err != nil {
		return nil, fmt.Errorf("count revalidations: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var ns string
		var n int
		if err := rows.Scan(&ns, &n); err != nil {
			return nil, err
		}
		out[ns] = n
	}
	return out, rows.Err()
}

// Signed is a repository and digest with the ids of every key whose
// signature the record holds for it.
type Signed struct {
	Repository, Digest string
	KeyIDs             []string
}

// SignedBy returns the repositories and digests that keyID signed (image
// signatures recorded as evidence rows), each with every key that signed
// it, at most limit of them, ordered by repository and digest.
func (d *DB) SignedBy(ctx context.Context, keyID string, limit int) ([]Signed, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT DISTINCT repository, digest FROM evidence WHERE kind = 'signature' AND key_id = ?
		ORDER BY repository, digest LIMIT ?`), keyID, limit)
	if err != nil {
		return nil, fmt.Errorf("list signed: %w", err)
	}
	var out []Signed
	at := map[string]int{}
	for rows.Next() {
		var s Signed
		if err := rows.Scan(&s.Repository, &s.Digest); err != nil {
			_ = rows.Close()
			return nil, err
		}
		at[s.Repository+"@"+s.Digest] = len(out)
		out = append(out, s)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	digests := map[string]bool{}
	var list []any
	for _, s := range out {
		if !digests[s.Digest] {
			digests[s.Digest] = true
			list = append(list, s.Digest)
		}
	}
	for len(list) > 0 {
		n := min(len(list), chunk)
		rows, err := d.db.QueryContext(ctx, d.q(`SELECT DISTINCT repository, digest, key_id FROM evidence
			WHERE kind = 'signature' AND key_id <> '' AND digest IN (`+placeholders(n)+`) ORDER BY repository, digest, key_id`), list[:n]...)
		if err != nil {
			return nil, fmt.Errorf("list signers: %w", err)
		}
		for rows.Next() {
			var repo, dg, k string
			if err := rows.Scan(&repo, &dg, &k); err != nil {
				_ = rows.Close()
				return nil, err
			}
			if i, ok := at[repo+"@"+dg]; ok {
				out[i].KeyIDs = append(out[i].KeyIDs, k)
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		list = list[n:]
	}
	return out, nil
}
