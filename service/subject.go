package service

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

// SubjectRef names an artifact: an image reference, or a repository and a digest.
type SubjectRef struct {
	Image      string
	Repository string
	Digest     string
}

func (s SubjectRef) ref() (string, error) {
	switch {
	case s.Image != "" && s.Repository == "" && s.Digest == "":
		return s.Image, nil
	case s.Image == "" && s.Repository != "" && s.Digest != "":
		return s.Repository + "@" + s.Digest, nil
	}
	return "", fmt.Errorf("%w: a subject is an image reference, or a repository with a digest", ErrInvalid)
}

// pin parses s, runs check on its repository ("host/path", in canonical
// form) before any registry call, and resolves it to a digest once. check
// is nil for reads; writes pass the caller's and the key's scopes.
func pin(ctx context.Context, r resolver, s SubjectRef, check func(repo string) error) (oci.Resolved, error) {
	str, err := s.ref()
	if err != nil {
		return oci.Resolved{}, err
	}
	ref, err := r.Parse(str)
	if err != nil {
		return oci.Resolved{}, registryErr(err)
	}
	if check != nil {
		if err := check(ref.Context().Name()); err != nil {
			return oci.Resolved{}, err
		}
	}
	subj, err := r.Resolve(ctx, ref)
	if err != nil {
		return oci.Resolved{}, registryErr(err)
	}
	return subj, nil
}

// writeScope is the check of a write by p, signed with key (nil for no
// signature), in a repository: the caller's token scopes, then the key's.
func writeScope(p Principal, a Action, key *keys.Key) func(repo string) error {
	return func(repo string) error {
		if err := AuthorizeRepository(p, a, repo); err != nil {
			return err
		}
		if key != nil && !key.Allows(repo) {
			return fmt.Errorf("%w: key %s may not sign in %s (allowed: %s)", ErrForbidden, key.Name(), repo, strings.Join(key.Repositories(), ", "))
		}
		if key != nil && p.Keys != nil && !slices.Contains(p.Keys, key.Name()) {
			return fmt.Errorf("%w: %s may sign only with %s, not %s", ErrForbidden, p.Name, strings.Join(p.Keys, ", "), key.Name())
		}
		return nil
	}
}

// subjectTags returns the tag a subject was named by, if it was named by
// one. The subject is already parsed and checked by pin.
func subjectTags(s SubjectRef) []string {
	if s.Image == "" {
		return nil
	}
	ref, err := name.ParseReference(s.Image)
	if err != nil {
		return nil
	}
	return refTags(ref)
}

// identityOf names p's workload identity for signed annotations, or "".
func identityOf(p Principal) string {
	if p.Identity == nil {
		return ""
	}
	return p.Identity.String()
}
