package index

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// PutPolicy stores a policy document under name, and evs, and bumps the
// policy revision.
func (d *DB) PutPolicy(ctx context.Context, name string, doc []byte, evs ...Event) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO policies (name, document, updated_at) VALUES (?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET document=excluded.document, updated_at=excluded.updated_at`), name, doc, time.Now().UTC()); err != nil {
			return fmt.Errorf("store policy: %w", err)
		}
		if _, err := d.bump(ctx, tx, RevisionPolicies); err != nil {
			return err
		}
		_, err := d.appendEvents(ctx, tx, evs)
		return err
	})
}

// DeletePolicy removes a stored policy, writes evs, and bumps the policy
// revision.
func (d *DB) DeletePolicy(ctx context.Context, name string, evs ...Event) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`DELETE FROM policies WHERE name = ?`), name)
		if err != nil {
			return fmt.Errorf("delete policy: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err = d.bump(ctx, tx, RevisionPolicies); err != nil {
			return err
		}
		_, err = d.appendEvents(ctx, tx, evs)
		return err
	})
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
