package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/index"
)

type deploymentStore interface {
	Admissions(ctx context.Context, digests []string) ([]index.Admission, error)
	Revalidations(ctx context.Context, f index.RevalidationFilter) ([]index.Revalidation, error)
	SignedBy(ctx context.Context, keyID string, limit int) ([]index.Signed, error)
}

// Bounds of one deployments query.
const (
	maxDeploymentsPage    = 1000
	maxDeploymentsDigests = 1000
)

// Deployments answers where digests run: the admission inventory (allows
// recorded with a namespace, and cached allows reused in one), with the
// latest re-validation of each.
type Deployments struct {
	store deploymentStore
	keys  quarantineKeys
	quar  keyQuarantine
	// maxDigests caps the digests one query follows (maxDeploymentsDigests).
	maxDigests int
}

// NewDeployments returns the deployments service: ks names keys and their
// states, q says which keys are quarantined (for the blast radius).
func NewDeployments(store deploymentStore, ks quarantineKeys, q keyQuarantine) *Deployments {
	return &Deployments{store: store, keys: ks, quar: q, maxDigests: maxDeploymentsDigests}
}

// DeploymentQuery selects deployments. At least one of Digest, Key or
// Compliant is given.
type DeploymentQuery struct {
	Digest string
	// Key (a name or id) selects the digests whose valid signatures are all
	// by this key: the blast radius of the key.
	Key       string
	Namespace string
	// Compliant selects by the latest re-validation; deployments not
	// re-validated yet are left out.
	Compliant *bool
	// Limit caps the answer (at most 1000; 0 means 100).
	Limit int
}

// Deployment is where a digest was admitted, and whether it would be
// admitted now.
type Deployment struct {
	index.Admission
	Repository string
	// Compliant, Reason and CheckedAt are the latest re-validation, if any.
	Compliant *bool
	Reason    string
	CheckedAt *time.Time
}

// DeploymentList is the answer; Truncated says the query selected more
// than the limit (or than the digests one query follows).
type DeploymentList struct {
	Deployments []Deployment
	Truncated   bool
}

// List answers q (roles auditor, admin).
func (s *Deployments) List(ctx context.Context, p Principal, q DeploymentQuery) (DeploymentList, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return DeploymentList{}, err
	}
	if q.Limit < 0 || q.Limit > maxDeploymentsPage {
		return DeploymentList{}, fmt.Errorf("%w: limit is at most %d", ErrInvalid, maxDeploymentsPage)
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Digest == "" && q.Key == "" && q.Compliant == nil {
		return DeploymentList{}, fmt.Errorf("%w: give a digest, a key or compliant", ErrInvalid)
	}
	out := DeploymentList{Deployments: []Deployment{}}
	repos := map[string]string{}
	var digests []string
	switch {
	case q.Digest != "":
		h, err := v1.NewHash(q.Digest)
		if err != nil {
			return DeploymentList{}, fmt.Errorf("%w: digest %q is not algorithm:hex", ErrInvalid, q.Digest)
		}
		digests = []string{h.String()}
	case q.Key != "":
		var err error
		if digests, out.Truncated, err = s.signedOnlyBy(ctx, q.Key, repos); err != nil {
			return DeploymentList{}, err
		}
	default:
		rs, err := s.store.Revalidations(ctx, index.RevalidationFilter{Namespace: q.Namespace, Compliant: q.Compliant, Limit: s.maxDigests + 1})
		if err != nil {
			return DeploymentList{}, fmt.Errorf("%w: read re-validations: %w", ErrUnavailable, err)
		}
		if len(rs) > s.maxDigests {
			rs, out.Truncated = rs[:s.maxDigests], true
		}
		for _, r := range rs {
			if !slices.Contains(digests, r.Digest) {
				digests = append(digests, r.Digest)
			}
		}
	}
	if len(digests) == 0 {
		return out, nil
	}
	adms, err := s.store.Admissions(ctx, digests)
	if err != nil {
		return DeploymentList{}, fmt.Errorf("%w: read admissions: %w", ErrUnavailable, err)
	}
	type at struct{ digest, ns string }
	checked := map[at]index.Revalidation{}
	for i := 0; i < len(digests); i += maxDeploymentsDigests {
		rs, err := s.store.Revalidations(ctx, index.RevalidationFilter{Digests: digests[i:min(i+maxDeploymentsDigests, len(digests))], Namespace: q.Namespace, Limit: 10 * maxDeploymentsPage})
		if err != nil {
			return DeploymentList{}, fmt.Errorf("%w: read re-validations: %w", ErrUnavailable, err)
		}
		for _, r := range rs {
			k := at{r.Digest, r.Namespace}
			if prev, ok := checked[k]; !ok || prev.Compliant && !r.Compliant {
				checked[k] = r // where repositories differ, the worst counts
			}
		}
	}
	for _, a := range adms {
		if q.Namespace != "" && a.Namespace != q.Namespace {
			continue
		}
		d := Deployment{Admission: a, Repository: repos[a.Digest]}
		if r, ok := checked[at{a.Digest, a.Namespace}]; ok {
			ok, when := r.Compliant, r.CheckedAt
			d.Compliant, d.Reason, d.CheckedAt = &ok, r.Reason, &when
			if d.Repository == "" {
				d.Repository = r.Repository
			}
		}
		if q.Compliant != nil && (d.Compliant == nil || *d.Compliant != *q.Compliant) {
			continue
		}
		if len(out.Deployments) == q.Limit {
			out.Truncated = true
			break
		}
		out.Deployments = append(out.Deployments, d)
	}
	return out, nil
}

// signedOnlyBy returns the digests whose valid image signatures are all by
// the key ref names: the record's evidence rows say which keys signed each
// copy; a signature by a revoked or quarantined key does not count.
func (s *Deployments) signedOnlyBy(ctx context.Context, ref string, repos map[string]string) ([]string, bool, error) {
	var k *keys.Key
	if kk, ok := s.keys.ByID(ref); ok {
		k = kk
	} else if kk, _, err := s.keys.Get(ref); err == nil && ref != "" {
		k = kk
	} else {
		return nil, false, fmt.Errorf("%w: no key %q in the key set", ErrInvalid, ref)
	}
	signed, err := s.store.SignedBy(ctx, k.ID(), s.maxDigests+1)
	if err != nil {
		return nil, false, fmt.Errorf("%w: read evidence: %w", ErrUnavailable, err)
	}
	truncated := len(signed) > s.maxDigests
	if truncated {
		signed = signed[:s.maxDigests]
	}
	var out []string
	for _, sg := range signed {
		alone := true
		for _, other := range sg.KeyIDs {
			if other != k.ID() && s.counts(other) {
				alone = false
				break
			}
		}
		if alone && !slices.Contains(out, sg.Digest) {
			out = append(out, sg.Digest)
			repos[sg.Digest] = sg.Repository
		}
	}
	return out, truncated, nil
}

// counts reports whether signatures by the key with id keyID count today:
// it is in the key set, not revoked and not quarantined.
func (s *Deployments) counts(keyID string) bool {
	k, ok := s.keys.ByID(keyID)
	if !ok {
		return false
	}
	if _, st, err := s.keys.Get(k.Name()); err != nil || st.State == keys.Revoked {
		return false
	}
	if s.quar != nil {
		if x, err := s.quar.Key(keyID); err != nil || x != nil {
			return false
		}
	}
	return true
}
