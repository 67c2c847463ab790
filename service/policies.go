package service

import (
	"context"
	"errors"
	"fmt"

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
}

type policyStore interface {
	PutPolicy(ctx context.Context, name string, doc []byte) error
	DeletePolicy(ctx context.Context, name string) error
}

// NewPolicies returns the policy service over set.
func NewPolicies(set *policy.Set, store policyStore) *Policies {
	return &Policies{set: set, store: store}
}

// Put validates doc and adds or replaces its policy. A bad policy is
// refused with the reason and changes nothing.
func (s *Policies) Put(ctx context.Context, p Principal, doc []byte) (*policy.Policy, error) {
	if err := Authorize(p, ActionManagePolicies); err != nil {
		return nil, err
	}
	pol, err := policy.Parse(doc)
	if err != nil {
		return nil, policyErr(err)
	}
	if err := s.store.PutPolicy(ctx, pol.Name, doc); err != nil {
		return nil, err
	}
	s.set.Put(pol)
	return pol, nil
}

// Delete removes a policy.
func (s *Policies) Delete(ctx context.Context, p Principal, name string) error {
	if err := Authorize(p, ActionManagePolicies); err != nil {
		return err
	}
	if err := s.store.DeletePolicy(ctx, name); err != nil && !errors.Is(err, index.ErrNotFound) {
		return err
	}
	if !s.set.Delete(name) {
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
