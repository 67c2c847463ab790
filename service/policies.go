package service

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
)

// errPolicy wraps policy errors as invalid requests.
func policyErr(err error) error {
	if errors.Is(err, policy.ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// Policies manages the gate's policies at run time. Policies put through
// the API are stored in the index and outlive restarts.
type Policies struct {
	set   *policy.Set
	store policyStore
	rec   preparer
	files [][]byte

	mu  sync.Mutex
	rev int64
}

type policyStore interface {
	PutPolicy(ctx context.Context, name string, doc []byte, evs ...index.Event) error
	DeletePolicy(ctx context.Context, name string, evs ...index.Event) error
	Policies(ctx context.Context) (map[string][]byte, error)
	Revision(ctx context.Context, name string) (int64, error)
}

// NewPolicies returns the policy service over set: the policies of files
// (documents given in the configuration), then those stored in the index,
// which replace a file's policy of the same name. Changes are recorded as
// events in the same transaction (rec prepares them); Reload applies
// changes another replica made. A bad policy stops it with the reason.
func NewPolicies(ctx context.Context, set *policy.Set, files [][]byte, store policyStore, rec preparer) (*Policies, error) {
	s := &Policies{set: set, store: store, rec: rec, files: files, rev: -1}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the stored policies when the policy revision moved, and
// replaces the set's policies with the files' and the stored ones.
func (s *Policies) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev, err := s.store.Revision(ctx, index.RevisionPolicies)
	if err != nil {
		return err
	}
	if rev == s.rev {
		return nil
	}
	stored, err := s.store.Policies(ctx)
	if err != nil {
		return err
	}
	next := map[string]*policy.Policy{}
	for _, b := range s.files {
		p, err := policy.Parse(b)
		if err != nil {
			return fmt.Errorf("policy file: %w", err)
		}
		next[p.Name] = p
	}
	for n, b := range stored {
		p, err := policy.Parse(b)
		if err != nil {
			return fmt.Errorf("stored policy %s: %w", n, err)
		}
		next[p.Name] = p
	}
	s.set.Replace(next)
	s.rev = rev
	return nil
}

// Put validates doc and adds or replaces its policy. A bad policy is
// refused with the reason and changes nothing.
//
// The answer's log index is that of the change's event in the audit log.
func (s *Policies) Put(ctx context.Context, p Principal, doc []byte) (*policy.Policy, *uint64, error) {
	if err := Authorize(p, ActionManagePolicies); err != nil {
		return nil, nil, err
	}
	pol, err := policy.Parse(doc)
	if err != nil {
		return nil, nil, policyErr(err)
	}
	ev, err := s.rec.Prepare(ctx, Event{Kind: EventPolicyPut, Actor: p, Detail: map[string]any{"policy": pol.Name, "revision": pol.Revision(), "mode": string(pol.Mode)}})
	if err != nil {
		return nil, nil, err
	}
	if err := s.store.PutPolicy(ctx, pol.Name, doc, ev); err != nil {
		return nil, nil, fmt.Errorf("%w: store the policy: %w", ErrUnavailable, err)
	}
	s.set.Put(pol)
	idx, err := s.rec.Sequence(ctx, ev)
	if err != nil {
		return nil, nil, err
	}
	if len(idx) == 0 {
		return pol, nil, nil
	}
	return pol, &idx[0], nil
}

// Delete removes a policy.
func (s *Policies) Delete(ctx context.Context, p Principal, name string) error {
	if err := Authorize(p, ActionManagePolicies); err != nil {
		return err
	}
	ev, err := s.rec.Prepare(ctx, Event{Kind: EventPolicyDeleted, Actor: p, Detail: map[string]any{"policy": name}})
	if err != nil {
		return err
	}
	err = s.store.DeletePolicy(ctx, name, ev)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return fmt.Errorf("%w: delete the policy: %w", ErrUnavailable, err)
	}
	deleted := s.set.Delete(name)
	if err == nil {
		if _, err := s.rec.Sequence(ctx, ev); err != nil {
			return err
		}
	}
	if !deleted {
		return fmt.Errorf("%w: no policy %q", ErrNotFound, name)
	}
	return nil
}

// List returns the policies.
func (s *Policies) List(p Principal) ([]*policy.Policy, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return nil, err
	}
	return s.set.All(), nil
}
