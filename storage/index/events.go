package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Event is one recorded state change. Its evidence rows and its decision,
// where set, are written in the same transaction.
type Event struct {
	// Seq orders events; it is set when the event is read back.
	Seq int64
	// ID is unique: the recorder sets it.
	ID   string
	Kind string
	At   time.Time
	// Repository, Digest and Tags name the subject, where there is one.
	Repository, Digest string
	Tags               []string
	// ActorID, ActorName and ActorKind say who caused it (a token, or
	// attestd itself); never a secret.
	ActorID, ActorName, ActorKind string
	// KeyID, KeyName and KeyVersion name the signing key, where one signed.
	KeyID, KeyName, KeyVersion string
	PredicateType              string
	RequestID                  string
	// Locations are the registry locations written, as a JSON array.
	Locations json.RawMessage
	// Detail is the rest, as a JSON object.
	Detail json.RawMessage
	// Evidence are the evidence rows this event wrote or found. Rows
	// already recorded are kept as they are.
	Evidence []Evidence
	// Decision is the gate decision this event records, if any.
	Decision *Decision
	// OnlyIfNew skips the event when none of its evidence rows is new
	// (reindex: evidence found again is not a new event).
	OnlyIfNew bool
	// LogIndex is the event's index in the audit log, nil until it is
	// sequenced there; it is set when the event is read back.
	LogIndex *int64
	// Provenance and SBOMs are what the event's attestations tell the
	// artifact index; they are indexed in the same transaction, once, even
	// when an OnlyIfNew event is skipped.
	Provenance []Provenance
	SBOMs      []SBOMDoc
}

// Evidence is one copy of a signature or attestation in a registry: the
// index's rebuildable view of what the registry holds.
type Evidence struct {
	Repository, Digest string
	// Format is "legacy-tag" or "referrer"; Content identifies the copy
	// within its layout (the referrer manifest digest, or the hash of a
	// legacy layer's content).
	Format, Content string
	// Kind is "signature" or "attestation".
	Kind          string
	Ref           string
	KeyID         string
	PredicateType string
	Origin        string
	SignedAt      *time.Time
	// EventID is the event that first recorded it.
	EventID    string
	RecordedAt time.Time
}

// Appended counts what AppendEvents wrote: events (OnlyIfNew events may be
// skipped), evidence rows not recorded before, and SBOM documents indexed
// for the first time. IDs are the ids of the events written, in order.
type Appended struct {
	Events, Evidence int
	SBOMs            int
	IDs              []string
}

// AppendEvents writes events, with their evidence rows and decisions, in
// one transaction: all of them are durable when it returns nil, or none.
func (d *DB) AppendEvents(ctx context.Context, evs []Event) (Appended, error) {
	var out Appended
	ctx, ids := withIDCollector(ctx)
	err := d.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = d.appendEvents(ctx, tx, evs)
		return err
	})
	if err == nil {
		d.ids.put(ids.m) // committed: the package ids are right
	}
	return out, err
}

// appendEvents writes events within tx: a state change and its event
// commit together or not at all.
func (d *DB) appendEvents(ctx context.Context, tx *sql.Tx, evs []Event) (Appended, error) {
	var out Appended
	for _, e := range evs {
		fresh := 0
		for _, x := range e.Evidence {
			res, err := tx.ExecContext(ctx, d.q(`INSERT INTO evidence (repository, digest, format, content, kind, ref, key_id, predicate_type, origin, signed_at, event_id, recorded_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
				x.Repository, x.Digest, x.Format, x.Content, x.Kind, x.Ref, x.KeyID, x.PredicateType, x.Origin, utcPtr(x.SignedAt), e.ID, e.At.UTC())
			if err != nil {
				return Appended{}, fmt.Errorf("record evidence: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				fresh++
			}
		}
		out.Evidence += fresh
		sboms, ierr := d.indexEvent(ctx, tx, e)
		if ierr != nil {
			return Appended{}, ierr
		}
		out.SBOMs += sboms
		if e.OnlyIfNew && fresh == 0 {
			continue
		}
		if e.Decision != nil {
			if err := d.insertDecision(ctx, tx, *e.Decision); err != nil {
				return Appended{}, err
			}
		}
		locs, detail := e.Locations, e.Detail
		if len(locs) == 0 {
			locs = json.RawMessage("[]")
		}
		if len(detail) == 0 {
			detail = json.RawMessage("{}")
		}
		_, err := tx.ExecContext(ctx, d.q(`INSERT INTO events (id, kind, at, repository, digest, tags, actor_id, actor_name, actor_kind,
			key_id, key_name, key_version, predicate_type, request_id, locations, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			e.ID, e.Kind, e.At.UTC(), e.Repository, e.Digest, jsonList(e.Tags), e.ActorID, e.ActorName, e.ActorKind,
			e.KeyID, e.KeyName, e.KeyVersion, e.PredicateType, e.RequestID, string(locs), string(detail))
		if err != nil {
			return Appended{}, fmt.Errorf("record event: %w", err)
		}
		out.Events++
		out.IDs = append(out.IDs, e.ID)
	}
	return out, nil
}

// EventFilter selects events. Zero fields select everything.
type EventFilter struct {
	Digest, Kind, Actor string
	Since, Until        time.Time
	// After is a cursor: only events with a greater Seq.
	After int64
	// Limit caps the page; zero means 100.
	Limit int
	// Unlogged selects only events not yet in the audit log.
	Unlogged bool
}

// Events returns the events selected by f, oldest first.
func (d *DB) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	add("seq > ?", f.After)
	if f.Digest != "" {
		add("digest = ?", f.Digest)
	}
	if f.Kind != "" {
		if k, ok := strings.CutSuffix(f.Kind, ".*"); ok {
			add("kind LIKE ?", k+".%")
		} else {
			add("kind = ?", f.Kind)
		}
	}
	if f.Actor != "" {
		where = append(where, "(actor_name = ? OR actor_id = ?)")
		args = append(args, f.Actor, f.Actor)
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until.UTC())
	}
	if f.Unlogged {
		where = append(where, "log_index IS NULL")
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	args = append(args, f.Limit)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT seq, id, kind, at, repository, digest, tags, actor_id, actor_name, actor_kind,
		key_id, key_name, key_version, predicate_type, request_id, locations, detail, log_index
		FROM events WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var tags, locs, detail string
		var logIndex sql.NullInt64
		if err := rows.Scan(&e.Seq, &e.ID, &e.Kind, &e.At, &e.Repository, &e.Digest, &tags, &e.ActorID, &e.ActorName, &e.ActorKind,
			&e.KeyID, &e.KeyName, &e.KeyVersion, &e.PredicateType, &e.RequestID, &locs, &detail, &logIndex); err != nil {
			return nil, fmt.Errorf("read event: %w", err)
		}
		if logIndex.Valid {
			e.LogIndex = &logIndex.Int64
		}
		e.At = e.At.UTC()
		if err := json.Unmarshal([]byte(tags), &e.Tags); err != nil {
			return nil, fmt.Errorf("read event %s: %w", e.ID, err)
		}
		e.Locations, e.Detail = json.RawMessage(locs), json.RawMessage(detail)
		out = append(out, e)
	}
	return out, rows.Err()
}

// SetLogIndexes records where events are in the audit log: ids[i] at
// indexes[i], in one transaction. An event that has its index already
// keeps it (an event appended twice is named by its first index).
func (d *DB) SetLogIndexes(ctx context.Context, ids []string, indexes []int64) error {
	if len(ids) != len(indexes) {
		return fmt.Errorf("set log indexes: %d ids, %d indexes", len(ids), len(indexes))
	}
	if len(ids) == 0 {
		return nil
	}
	return d.tx(ctx, func(tx *sql.Tx) error {
		for i, id := range ids {
			if _, err := tx.ExecContext(ctx, d.q(`UPDATE events SET log_index = ? WHERE id = ? AND log_index IS NULL`), indexes[i], id); err != nil {
				return fmt.Errorf("set log index of %s: %w", id, err)
			}
		}
		return nil
	})
}

// MaxLogIndex is the highest audit log index an event has, -1 for none.
func (d *DB) MaxLogIndex(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := d.db.QueryRowContext(ctx, `SELECT MAX(log_index) FROM events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("max log index: %w", err)
	}
	if !n.Valid {
		return -1, nil
	}
	return n.Int64, nil
}

// EvidenceFilter selects evidence rows; zero fields select everything.
type EvidenceFilter struct {
	Repository, Digest string
}

// EvidenceRows returns the evidence rows selected by f, in a stable order.
func (d *DB) EvidenceRows(ctx context.Context, f EvidenceFilter) ([]Evidence, error) {
	where, args := []string{"1 = 1"}, []any{}
	if f.Repository != "" {
		where, args = append(where, "repository = ?"), append(args, f.Repository)
	}
	if f.Digest != "" {
		where, args = append(where, "digest = ?"), append(args, f.Digest)
	}
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT repository, digest, format, content, kind, ref, key_id, predicate_type, origin, signed_at, event_id, recorded_at
		FROM evidence WHERE `+strings.Join(where, " AND ")+` ORDER BY repository, digest, format, content`), args...)
	if err != nil {
		return nil, fmt.Errorf("list evidence: %w", err)
	}
	defer rows.Close()
	var out []Evidence
	for rows.Next() {
		var x Evidence
		var signed sql.NullTime
		if err := rows.Scan(&x.Repository, &x.Digest, &x.Format, &x.Content, &x.Kind, &x.Ref, &x.KeyID, &x.PredicateType, &x.Origin, &signed, &x.EventID, &x.RecordedAt); err != nil {
			return nil, fmt.Errorf("read evidence: %w", err)
		}
		x.SignedAt, x.RecordedAt = nullTime(signed), x.RecordedAt.UTC()
		out = append(out, x)
	}
	return out, rows.Err()
}
