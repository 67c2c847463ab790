package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

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

// InsertToken stores t, and evs in the same transaction.
func (d *DB) InsertToken(ctx context.Context, t Token, evs ...Event) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, d.q(`INSERT INTO tokens (id, name, roles, repositories, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
			t.ID, t.Name, strings.Join(t.Roles, ","), jsonList(t.Repositories), t.Hash, t.CreatedAt.UTC())
		if err != nil {
			return fmt.Errorf("insert token: %w", err)
		}
		_, err = d.appendEvents(ctx, tx, evs)
		return err
	})
}

const tokenColumns = `id, name, roles, repositories, hash, created_at, revoked_at` //nolint:gosec // column names, not a credential

// TokenByHash returns the unrevoked token with the given hash.
func (d *DB) TokenByHash(ctx context.Context, hash string) (Token, error) {
	row := d.db.QueryRowContext(ctx, d.q(`SELECT `+tokenColumns+` FROM tokens WHERE hash = ? AND revoked_at IS NULL`), hash)
	return scanToken(row)
}

// ListTokens lists every token, newest first, at most limit.
func (d *DB) ListTokens(ctx context.Context, limit int) ([]Token, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+tokenColumns+` FROM tokens ORDER BY created_at DESC, id LIMIT ?`), limit)
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

// RevisionTokens changes with every token revocation: replicas that cache
// verified tokens flush them when it moves.
const RevisionTokens = "tokens"

// RevokeToken marks a token revoked, bumps RevisionTokens, and writes evs
// in the same transaction. It returns ErrNotFound if no unrevoked token has that id.
func (d *DB) RevokeToken(ctx context.Context, id string, at time.Time, evs ...Event) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q(`UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), at.UTC(), id)
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
		if _, err := d.bump(ctx, tx, RevisionTokens); err != nil {
			return err
		}
		_, err = d.appendEvents(ctx, tx, evs)
		return err
	})
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
	t.CreatedAt = t.CreatedAt.UTC()
	t.RevokedAt = nullTime(revoked)
	return t, nil
}

func jsonList(xs []string) string {
	if xs == nil {
		xs = []string{}
	}
	b, _ := json.Marshal(xs)
	return string(b)
}

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

func utcPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}
