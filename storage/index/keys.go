package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

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
		k.NotBefore = k.NotBefore.UTC()
		k.NotAfter, k.RevokedAt = nullTime(notAfter), nullTime(revoked)
		out = append(out, k)
	}
	return out, rows.Err()
}

// SaveKeys writes the given key records and evs in one transaction and
// bumps the key-set revision, so that anything cached against the old key
// set, on any replica, is recognisably stale.
func (d *DB) SaveKeys(ctx context.Context, recs []KeyRecord, evs ...Event) (int64, error) {
	var rev int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UTC()
		for _, k := range recs {
			_, err := tx.ExecContext(ctx, d.q(`INSERT INTO keys (name, key_id, public_pem, state, is_default, not_before, not_after, revoked_at, reason, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(name) DO UPDATE SET key_id=excluded.key_id, public_pem=excluded.public_pem, state=excluded.state,
					is_default=excluded.is_default, not_before=excluded.not_before, not_after=excluded.not_after,
					revoked_at=excluded.revoked_at, reason=excluded.reason, updated_at=excluded.updated_at`),
				k.Name, k.KeyID, k.PublicPEM, k.State, k.Default, k.NotBefore.UTC(), utcPtr(k.NotAfter), utcPtr(k.RevokedAt), k.Reason, now)
			if err != nil {
				return fmt.Errorf("save key %s: %w", k.Name, err)
			}
		}
		var err error
		if rev, err = d.bump(ctx, tx, RevisionKeys); err != nil {
			return err
		}
		_, err = d.appendEvents(ctx, tx, evs)
		return err
	})
	return rev, err
}

// Revision names.
const (
	// RevisionKeys changes with every key state or default change.
	RevisionKeys = "keys"
	// RevisionPolicies changes with every stored policy change.
	RevisionPolicies = "policies"
)

// Revision returns the current revision of name (0 if never bumped).
func (d *DB) Revision(ctx context.Context, name string) (int64, error) {
	var v int64
	err := d.db.QueryRowContext(ctx, d.q(`SELECT value FROM revisions WHERE name = ?`), name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// Revisions returns every revision by name: one cheap read a replica polls
// to learn that shared state changed.
func (d *DB) Revisions(ctx context.Context) (map[string]int64, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT name, value FROM revisions`)
	if err != nil {
		return nil, fmt.Errorf("read revisions: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var n string
		var v int64
		if err := rows.Scan(&n, &v); err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, rows.Err()
}

func (d *DB) bump(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, d.q(`INSERT INTO revisions (name, value) VALUES (?, 1)
		ON CONFLICT(name) DO UPDATE SET value = revisions.value + 1 RETURNING value`), name).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("bump revision %s: %w", name, err)
	}
	return v, nil
}
