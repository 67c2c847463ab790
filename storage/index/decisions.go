package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Decision is one recorded gate decision.
type Decision struct {
	ID, Image, Digest, Policy, Revision, Mode, Breakglass, Caller string
	// Repository is the repository judged; Namespace, WorkloadKind and
	// WorkloadName say where, for admission.
	Repository, Namespace, WorkloadKind, WorkloadName string
	RequestID                                         string
	At                                                time.Time
	Allowed, WouldDeny                                bool
	// Detail is the decision as JSON, with every requirement and reason.
	Detail string
}

const decisionColumns = `id, at, image, digest, policy, revision, mode, allowed, would_deny, breakglass, caller, detail,
	repository, namespace, workload_kind, workload_name, request_id`

func (d *DB) insertDecision(ctx context.Context, tx *sql.Tx, x Decision) error {
	_, err := tx.ExecContext(ctx, d.q(`INSERT INTO decisions (`+decisionColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		x.ID, x.At.UTC(), x.Image, x.Digest, x.Policy, x.Revision, x.Mode, x.Allowed, x.WouldDeny, x.Breakglass, x.Caller, x.Detail,
		x.Repository, x.Namespace, x.WorkloadKind, x.WorkloadName, x.RequestID)
	if err != nil {
		return fmt.Errorf("record decision: %w", err)
	}
	return nil
}

func scanDecision(s scanner) (Decision, error) {
	var x Decision
	err := s.Scan(&x.ID, &x.At, &x.Image, &x.Digest, &x.Policy, &x.Revision, &x.Mode, &x.Allowed, &x.WouldDeny, &x.Breakglass, &x.Caller, &x.Detail,
		&x.Repository, &x.Namespace, &x.WorkloadKind, &x.WorkloadName, &x.RequestID)
	if errors.Is(err, sql.ErrNoRows) {
		return Decision{}, ErrNotFound
	}
	x.At = x.At.UTC()
	return x, err
}

// DecisionByID returns a recorded decision.
func (d *DB) DecisionByID(ctx context.Context, id string) (Decision, error) {
	return scanDecision(d.db.QueryRowContext(ctx, d.q(`SELECT `+decisionColumns+` FROM decisions WHERE id = ?`), id))
}

// DecisionsFor returns the decisions about digest, newest first, at most limit.
func (d *DB) DecisionsFor(ctx context.Context, digest string, limit int) ([]Decision, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+decisionColumns+` FROM decisions WHERE digest = ? ORDER BY at DESC, id LIMIT ?`), digest, limit)
	if err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		x, err := scanDecision(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// Reuse counts the times a decision's allow was served again from the
// verdict cache, where (namespace and workload, for admission).
type Reuse struct {
	DecisionID                            string
	Namespace, WorkloadKind, WorkloadName string
	Count                                 int64
	First, Last                           time.Time
}

// AddReuse adds counts in one transaction: each row's count is added, its
// first time kept and its last time advanced.
func (d *DB) AddReuse(ctx context.Context, rs []Reuse) error {
	if len(rs) == 0 {
		return nil
	}
	return d.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			_, err := tx.ExecContext(ctx, d.q(`INSERT INTO decision_reuse (decision_id, namespace, workload_kind, workload_name, count, first_at, last_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(decision_id, namespace, workload_kind, workload_name) DO UPDATE SET
					count = decision_reuse.count + excluded.count,
					last_at = CASE WHEN excluded.last_at > decision_reuse.last_at THEN excluded.last_at ELSE decision_reuse.last_at END`),
				r.DecisionID, r.Namespace, r.WorkloadKind, r.WorkloadName, r.Count, r.First.UTC(), r.Last.UTC())
			if err != nil {
				return fmt.Errorf("record decision reuse: %w", err)
			}
		}
		return nil
	})
}

// Reuses returns the reuse counts of a decision.
func (d *DB) Reuses(ctx context.Context, decisionID string) ([]Reuse, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT decision_id, namespace, workload_kind, workload_name, count, first_at, last_at
		FROM decision_reuse WHERE decision_id = ? ORDER BY namespace, workload_kind, workload_name`), decisionID)
	if err != nil {
		return nil, fmt.Errorf("list decision reuse: %w", err)
	}
	defer rows.Close()
	var out []Reuse
	for rows.Next() {
		var r Reuse
		if err := rows.Scan(&r.DecisionID, &r.Namespace, &r.WorkloadKind, &r.WorkloadName, &r.Count, &r.First, &r.Last); err != nil {
			return nil, err
		}
		r.First, r.Last = r.First.UTC(), r.Last.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}
