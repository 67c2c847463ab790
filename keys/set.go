package keys

import (
	"errors"
	"fmt"
	"sort"
)

// ErrUnknownKey means no configured key has the requested name.
var ErrUnknownKey = errors.New("unknown key")

// Set is the configured keys, one of which is the default for signing.
type Set struct {
	keys   []*Key
	byName map[string]*Key
	def    string
}

// NewSet returns the key set; def names the default key. Names and key ids
// must be unique.
func NewSet(def string, ks ...*Key) (*Set, error) {
	s := &Set{byName: map[string]*Key{}, def: def}
	ids := map[string]string{}
	for _, k := range ks {
		if _, dup := s.byName[k.name]; dup {
			return nil, fmt.Errorf("key name %q used twice", k.name)
		}
		if other, dup := ids[k.id]; dup {
			return nil, fmt.Errorf("keys %q and %q are the same key (%s)", other, k.name, k.id)
		}
		s.byName[k.name] = k
		ids[k.id] = k.name
		s.keys = append(s.keys, k)
	}
	if _, ok := s.byName[def]; !ok {
		return nil, fmt.Errorf("default key %q is not configured", def)
	}
	sort.SliceStable(s.keys, func(i, j int) bool { return s.keys[i].name == def && s.keys[j].name != def })
	return s, nil
}

// Get returns the key called name, or the default key for "".
func (s *Set) Get(name string) (*Key, error) {
	if name == "" {
		name = s.def
	}
	k, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, name)
	}
	return k, nil
}

// Default is the name of the default key.
func (s *Set) Default() string { return s.def }

// All lists the keys, the default first.
func (s *Set) All() []*Key { return append([]*Key(nil), s.keys...) }
