package keys

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of the key set.
var (
	// ErrUnknownKey means no key has the requested name.
	ErrUnknownKey = errors.New("unknown key")
	// ErrNotSigning means the key exists but may not sign: it is retired or revoked.
	ErrNotSigning = errors.New("key may not sign")
	// ErrRevoked means a signature was made by a revoked key.
	ErrRevoked = errors.New("key revoked")
	// ErrOutsideWindow means a signature is dated outside its key's validity window.
	ErrOutsideWindow = errors.New("signature outside the key's validity window")
)

// State is a key's place in its lifecycle.
type State string

// Key states. Active keys sign and verify. Retired keys verify signatures
// dated inside their window. Revoked keys verify nothing.
const (
	Active  State = "active"
	Retired State = "retired"
	Revoked State = "revoked"
)

// Status is a key's lifecycle state and validity window.
type Status struct {
	State     State
	NotBefore time.Time
	NotAfter  *time.Time
	RevokedAt *time.Time
	Reason    string
}

// Set is the key set: the keys that may sign, and every key whose
// signatures may still verify. It is safe for concurrent use; its state
// changes at run time (rotation, revocation) and each change bumps its
// revision.
type Set struct {
	mu     sync.RWMutex
	keys   []*Key
	byName map[string]*Key
	byID   map[string]*Key
	status map[string]Status
	def    string
	rev    int64
}

// NewSet returns a key set of ks, all active from now, with def the default.
// Names and key ids must be unique.
func NewSet(def string, ks ...*Key) (*Set, error) {
	s := &Set{byName: map[string]*Key{}, byID: map[string]*Key{}, status: map[string]Status{}}
	now := time.Now().UTC()
	for _, k := range ks {
		if _, dup := s.byName[k.name]; dup {
			return nil, fmt.Errorf("key name %q used twice", k.name)
		}
		if other, dup := s.byID[k.id]; dup {
			return nil, fmt.Errorf("keys %q and %q are the same key (%s)", other.name, k.name, k.id)
		}
		s.byName[k.name] = k
		s.byID[k.id] = k
		s.status[k.name] = Status{State: Active, NotBefore: now}
		s.keys = append(s.keys, k)
	}
	if _, ok := s.byName[def]; !ok {
		return nil, fmt.Errorf("default key %q is not configured", def)
	}
	s.def = def
	return s, nil
}

// Apply replaces the statuses and the default, and sets the revision.
// Keys not named in st keep theirs. def must name a key of the set; a
// default that is not an active signing key here signs nothing (Signer
// refuses it), but the statuses still apply: a revocation made elsewhere
// MUST take effect whatever this process can sign with.
func (s *Set) Apply(st map[string]Status, def string, rev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]Status, len(s.status))
	for n, v := range s.status {
		next[n] = v
	}
	for n, v := range st {
		if _, ok := s.byName[n]; !ok {
			return fmt.Errorf("%w %q", ErrUnknownKey, n)
		}
		next[n] = v
	}
	if _, ok := s.byName[def]; !ok {
		return fmt.Errorf("default key %q is not in the key set", def)
	}
	s.status, s.def, s.rev = next, def, rev
	return nil
}

// Add puts k in the set with status st, for a key that only verifies (one
// removed from configuration, known from the index).
func (s *Set) Add(k *Key, st Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.byName[k.name]; dup {
		return fmt.Errorf("key name %q used twice", k.name)
	}
	if other, dup := s.byID[k.id]; dup {
		return fmt.Errorf("keys %q and %q are the same key (%s)", other.name, k.name, k.id)
	}
	s.byName[k.name], s.byID[k.id], s.status[k.name] = k, k, st
	s.keys = append(s.keys, k)
	return nil
}

// Signer returns the key to sign with: the one called name, or the default
// for "". Only an active key is returned.
func (s *Set) Signer(name string) (*Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if name == "" {
		name = s.def
	}
	k, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, name)
	}
	if st := s.status[name]; st.State != Active || !k.CanSign() {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotSigning, name, st.State)
	}
	return k, nil
}

// Get returns the key called name (the default for "") whatever its state.
func (s *Set) Get(name string) (*Key, Status, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if name == "" {
		name = s.def
	}
	k, ok := s.byName[name]
	if !ok {
		return nil, Status{}, fmt.Errorf("%w %q", ErrUnknownKey, name)
	}
	return k, s.status[name], nil
}

// Accept decides whether a signature that verified with k, made at signedAt
// (zero if the signature carries no time), counts. A revoked key counts for
// nothing; a retired key only for signatures dated inside its window; an
// active key for anything dated after it became valid.
func (s *Set) Accept(k *Key, signedAt time.Time) error {
	s.mu.RLock()
	st, ok := s.status[k.name]
	s.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, k.name)
	}
	switch st.State {
	case Revoked:
		at := "unknown time"
		if st.RevokedAt != nil {
			at = st.RevokedAt.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("%w: %s was revoked at %s (%s)", ErrRevoked, k.name, at, st.Reason)
	case Retired:
		if signedAt.IsZero() {
			return fmt.Errorf("%w: %s is retired and the signature carries no signing time", ErrOutsideWindow, k.name)
		}
	}
	if !signedAt.IsZero() {
		// A little slack for clocks: attestd dates signatures itself.
		if signedAt.Before(st.NotBefore.Add(-time.Minute)) {
			return fmt.Errorf("%w: signed %s, before %s became valid at %s", ErrOutsideWindow, signedAt.Format(time.RFC3339), k.name, st.NotBefore.Format(time.RFC3339))
		}
		if st.NotAfter != nil && signedAt.After(*st.NotAfter) {
			return fmt.Errorf("%w: signed %s, after %s was retired at %s", ErrOutsideWindow, signedAt.Format(time.RFC3339), k.name, st.NotAfter.Format(time.RFC3339))
		}
	}
	return nil
}

// ByID returns the key with the given id.
func (s *Set) ByID(id string) (*Key, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.byID[id]
	return k, ok
}

// Default is the name of the default key.
func (s *Set) Default() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.def
}

// Revision changes whenever a key's state or the default changes.
func (s *Set) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Entry is one key with its status.
type Entry struct {
	Key     *Key
	Status  Status
	Default bool
}

// All lists every key with its status: the default first, then in order.
func (s *Set) All() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Entry, 0, len(s.keys))
	for _, k := range s.keys {
		e := Entry{Key: k, Status: s.status[k.name], Default: k.name == s.def}
		if e.Default {
			out = append([]Entry{e}, out...)
		} else {
			out = append(out, e)
		}
	}
	return out
}
