package oci

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxListed caps the repositories of a catalog and the tags of a
// repository read for reindexing.
const maxListed = 100_000

// Repositories lists the repositories of a configured registry through its
// catalog API (not every registry serves one), as "host/path" names.
func (r *Registries) Repositories(ctx context.Context, host string) ([]string, error) {
	h, ok := r.hosts[strings.ToLower(host)]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrHostNotAllowed, host)
	}
	var reg name.Registry
	var err error
	if h.Insecure {
		reg, err = name.NewRegistry(h.Name, name.Insecure)
	} else {
		reg, err = name.NewRegistry(h.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	opts, err := r.remoteOptions(ctx, reg.Repo("catalog"))
	if err != nil {
		return nil, err
	}
	// Pages of 100: distribution refuses larger ones.
	var repos []string
	last := ""
	for {
		page, err := remote.CatalogPage(reg, last, 100, opts...)
		if err != nil {
			return nil, fmt.Errorf("catalog of %s: %w", h.Name, classify(err))
		}
		repos = append(repos, page...)
		if len(repos) > maxListed {
			return nil, fmt.Errorf("catalog of %s: more than %d repositories: %w", h.Name, maxListed, ErrTooLarge)
		}
		if len(page) < 100 || page[len(page)-1] == last {
			break
		}
		last = page[len(page)-1]
	}
	out := make([]string, 0, len(repos))
	for _, p := range repos {
		out = append(out, h.Name+"/"+p)
	}
	return out, nil
}

// Tags lists the tags of repo.
func (r *Registries) Tags(ctx context.Context, repo name.Repository) ([]string, error) {
	opts, err := r.remoteOptions(ctx, repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(repo, opts...)
	if err != nil {
		if errors.Is(classify(err), ErrNotFound) {
			return nil, nil // a repository with no tag (pushed by digest only)
		}
		return nil, fmt.Errorf("tags of %s: %w", repo, classify(err))
	}
	if len(tags) > maxListed {
		return nil, fmt.Errorf("tags of %s: more than %d: %w", repo, maxListed, ErrTooLarge)
	}
	return tags, nil
}

// EvidenceSubject reports whether tag is one cosign and the referrers
// fallback use to store evidence about a digest (sha256-<hex>.sig, .att,
// .sbom, or sha256-<hex> itself), rather than a tag naming an artifact, and
// if so returns that digest ("sha256:<hex>").
func EvidenceSubject(tag string) (string, bool) {
	rest, ok := strings.CutPrefix(tag, "sha256-")
	if !ok {
		return "", false
	}
	hexPart, _, _ := strings.Cut(rest, ".")
	if len(hexPart) != 64 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return "", false
	}
	return "sha256:" + hexPart, true
}
