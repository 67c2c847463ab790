// Package tlog holds the pure formats of attestd's audit log: the log entry
// (an event's RFC 8785 canonical JSON), signed checkpoints (c2sp.org
// tlog-checkpoint in the signed-note format, Ed25519), and the checks an
// auditor makes with them: a checkpoint's signature against a pinned key,
// consistency between two checkpoints, and an entry's inclusion under one.
//
// The server (package service builds entries, storage/auditlog appends them
// with tessera) and the auditor's client (attestctl audit verify-log) share
// it, so both sides compute the same bytes. It does no I/O and MUST NOT
// import net/http, os or any other attestd package: it is fuzzed.
//
// Merkle proofs are checked with transparency-dev/merkle (RFC 6962
// hashing); nothing here hashes a tree by hand.
package tlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Errors a verifier reports. Each names what did not hold.
var (
	// ErrSignature means a checkpoint is not signed by the pinned log key.
	ErrSignature = errors.New("checkpoint signature does not verify with the pinned log key")
	// ErrMalformed means a checkpoint, key or proof could not be parsed.
	ErrMalformed = errors.New("malformed")
	// ErrFork means two checkpoints signed by the log key commit to
	// different trees of the same size: the log showed two histories.
	ErrFork = errors.New("fork: two signed checkpoints of the same size with different roots")
	// ErrRollback means the latest checkpoint is smaller than one seen
	// before: the log was truncated or replaced.
	ErrRollback = errors.New("rollback: the log is smaller than a checkpoint seen before")
	// ErrInconsistent means a consistency proof does not connect two
	// checkpoints: the earlier history was rewritten.
	ErrInconsistent = errors.New("inconsistent: the later checkpoint does not extend the earlier one")
	// ErrNotIncluded means an entry's inclusion proof does not lead to the
	// checkpoint's root: the entry, or the tiles it was proven with, were
	// changed.
	ErrNotIncluded = errors.New("not included under the checkpoint")
)

// MaxEntryBytes is the largest entry tlog-tiles allows.
const MaxEntryBytes = 1<<16 - 1

// Actor says who caused an event.
type Actor struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// Key names the key that signed, in an event.
type Key struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// Entry is one event as the log holds it. Its fields and JSON names are
// those of the event in GET /v1/events, less the index's own sequence
// number and the log index (which only exist once it is stored). It MUST
// NOT hold a secret.
type Entry struct {
	ID            string          `json:"id"`
	Kind          string          `json:"kind"`
	At            time.Time       `json:"at"`
	Repository    string          `json:"repository,omitempty"`
	Digest        string          `json:"digest,omitempty"`
	Tags          []string        `json:"tags,omitempty"`
	Actor         Actor           `json:"actor"`
	Key           *Key            `json:"key,omitempty"`
	PredicateType string          `json:"predicate_type,omitempty"`
	RequestID     string          `json:"request_id,omitempty"`
	Locations     json.RawMessage `json:"locations,omitempty"`
	Detail        json.RawMessage `json:"detail,omitempty"`
}

// Canonical returns the entry's bytes in the log: its RFC 8785 canonical
// JSON. Empty locations ([] or null) and an empty detail ({} or null) are
// left out, the time is UTC to the microsecond (what the index keeps), so
// the same event gives the same bytes whichever side builds them.
func (e Entry) Canonical() ([]byte, error) {
	if e.ID == "" || e.Kind == "" {
		return nil, fmt.Errorf("%w entry: an entry needs an id and a kind", ErrMalformed)
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	if isEmptyJSON(e.Locations, "[]") {
		e.Locations = nil
	}
	if isEmptyJSON(e.Detail, "{}") {
		e.Detail = nil
	}
	if len(e.Tags) == 0 {
		e.Tags = nil
	}
	if e.Key != nil && *e.Key == (Key{}) {
		e.Key = nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%w entry: %w", ErrMalformed, err)
	}
	out, err := jsoncanonicalizer.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("%w entry: %w", ErrMalformed, err)
	}
	if len(out) > MaxEntryBytes {
		return nil, fmt.Errorf("%w entry: %d bytes, over the log's %d", ErrMalformed, len(out), MaxEntryBytes)
	}
	return out, nil
}

func isEmptyJSON(b json.RawMessage, empty string) bool {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || string(t) == "null" {
		return true
	}
	var v any
	if json.Unmarshal(t, &v) != nil {
		return false
	}
	switch x := v.(type) {
	case []any:
		return empty == "[]" && len(x) == 0
	case map[string]any:
		return empty == "{}" && len(x) == 0
	}
	return false
}

// EntryID reads the event id out of an entry, for matching entries the log
// holds against events in the index.
func EntryID(entry []byte) (string, error) {
	var e struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(entry, &e); err != nil || e.ID == "" {
		return "", fmt.Errorf("%w entry: no event id", ErrMalformed)
	}
	return e.ID, nil
}

// LeafHash is the RFC 6962 leaf hash of an entry.
func LeafHash(entry []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(entry) }

// Checkpoint is a verified checkpoint: the log's origin, its size and the
// root hash of its first Size entries.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Raw is the signed note, as served.
	Raw []byte
}

// NewVerifier parses a log verifier key in the signed-note format
// ("<origin>+<hash>+<base64 key>", as GET /v1/log/key serves it).
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w log key: %w", ErrMalformed, err)
	}
	return v, nil
}

// OpenCheckpoint checks that raw is a checkpoint signed by v's key for v's
// origin, and returns it. A checkpoint without a valid signature by that
// key (signed by another key, or edited after signing) is ErrSignature;
// one that does not parse is ErrMalformed.
func OpenCheckpoint(raw []byte, v note.Verifier) (Checkpoint, error) {
	if len(raw) > 1<<16 {
		return Checkpoint{}, fmt.Errorf("%w checkpoint: %d bytes", ErrMalformed, len(raw))
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fmt.Errorf("%w: no signature by %s (signed by another key?)", ErrSignature, v.Name())
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("%w: the signature by %s is invalid (edited after signing?)", ErrSignature, v.Name())
		}
		return Checkpoint{}, fmt.Errorf("%w checkpoint: %w", ErrMalformed, err)
	}
	var cp flog.Checkpoint
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		return Checkpoint{}, fmt.Errorf("%w checkpoint: %w", ErrMalformed, err)
	}
	if cp.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w checkpoint: origin %q, the pinned key is for %q", ErrMalformed, cp.Origin, v.Name())
	}
	if len(cp.Hash) != 32 {
		return Checkpoint{}, fmt.Errorf("%w checkpoint: root hash of %d bytes", ErrMalformed, len(cp.Hash))
	}
	return Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Raw: raw}, nil
}

// CheckConsistency checks that later extends earlier, both already opened
// with the pinned key, with a consistency proof from earlier.Size to
// later.Size. Same size and different roots is a fork; a smaller later
// checkpoint is a rollback; a proof that does not connect the roots means
// history was rewritten.
func CheckConsistency(earlier, later Checkpoint, consistency [][]byte) error {
	switch {
	case later.Size < earlier.Size:
		return fmt.Errorf("%w: a checkpoint of size %d was seen before, the latest has size %d", ErrRollback, earlier.Size, later.Size)
	case later.Size == earlier.Size:
		if !bytes.Equal(later.Root, earlier.Root) {
			return fmt.Errorf("%w: size %d, roots %x and %x", ErrFork, later.Size, earlier.Root, later.Root)
		}
		return nil
	case earlier.Size == 0:
		return nil // every tree extends the empty one
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, earlier.Size, later.Size, consistency, earlier.Root, later.Root); err != nil {
		return fmt.Errorf("%w: from size %d to %d: %s", ErrInconsistent, earlier.Size, later.Size, oneLine(err))
	}
	return nil
}

// CheckInclusion checks that entry is the leaf at index under cp, with an
// inclusion proof for index in a tree of cp.Size.
func CheckInclusion(cp Checkpoint, index uint64, entry []byte, inclusion [][]byte) error {
	if index >= cp.Size {
		return fmt.Errorf("%w: index %d is not below the checkpoint's size %d", ErrNotIncluded, index, cp.Size)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, LeafHash(entry), inclusion, cp.Root); err != nil {
		return fmt.Errorf("entry %d: %w (size %d): %s", index, ErrNotIncluded, cp.Size, oneLine(err))
	}
	return nil
}

// oneLine says what a merkle proof check found, on one line.
func oneLine(err error) string {
	var m proof.RootMismatchError
	if errors.As(err, &m) {
		return fmt.Sprintf("the proof leads to root %x, the checkpoint's is %x", m.CalculatedRoot, m.ExpectedRoot)
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
