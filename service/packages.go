package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/attestd/attestd/sbom/inventory"
	"github.com/attestd/attestd/sbom/vers"
	"github.com/attestd/attestd/storage/index"
)

// packageIndex is the package index: which artifacts hold which packages.
type packageIndex interface {
	Packages(ctx context.Context, q index.PackageQuery) ([]index.Package, error)
	ArtifactsHolding(ctx context.Context, packageIDs []int64, after int64, limit int) ([]index.Holding, error)
	ArtifactsLicensed(ctx context.Context, license string, after int64, limit int) ([]index.Holding, error)
}

// packageRows reads artifacts and packages by id.
type packageRows interface {
	ArtifactsByID(ctx context.Context, ids []int64) ([]index.Artifact, error)
	PackagesByID(ctx context.Context, ids []int64) ([]index.Package, error)
}

type admissionReader interface {
	Admissions(ctx context.Context, digests []string) ([]index.Admission, error)
}

// Packages answers "which artifacts contain package X (in version range
// V, under license L), and where did they run" from the package index:
// every SBOM attestation recorded, attestd's own and the ones CI uploads.
// Version ranges are purl vers ranges, ordered by each ecosystem's rules.
type Packages struct {
	index      packageIndex
	rows       packageRows
	admissions admissionReader
}

// NewPackages returns the package query service.
func NewPackages(ix packageIndex, rows packageRows, ad admissionReader) *Packages {
	return &Packages{index: ix, rows: rows, admissions: ad}
}

// PackageQuery selects packages: a purl (pkg:type/namespace/name, with a
// version for that version only), or a name with a type (the ecosystem)
// or without, and a vers range; or a license (an SPDX id) alone or with
// the others.
type PackageQuery struct {
	PURL, Name, Type string
	Range            string
	License          string
	Cursor           string
	Limit            int
}

// PackageMatch is an artifact holding selected packages: the versions
// found, and where it was admitted.
type PackageMatch struct {
	Repository, Digest string
	FirstAt            time.Time
	Packages           []index.Package
	// More counts the selected packages not listed (over
	// maxPackagesPerMatch).
	More       int
	Admissions []Admitted
}

// PackagePage is one page of matches, in the order artifacts were first
// recorded; Next continues it ("" at the end).
type PackagePage struct {
	Range   string
	Matches []PackageMatch
	Next    string
}

const (
	defaultPackagePage  = 100
	maxPackagePage      = 1000
	maxPackagesPerMatch = 50
)

// Find lists the artifacts holding the packages q selects (roles auditor,
// admin). A malformed purl or range, or a query over its limits, is
// ErrInvalid with the reason.
func (s *Packages) Find(ctx context.Context, p Principal, q PackageQuery) (PackagePage, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return PackagePage{}, err
	}
	limit, after, err := pageArgs(q.Limit, q.Cursor, defaultPackagePage, maxPackagePage)
	if err != nil {
		return PackagePage{}, err
	}
	pq := index.PackageQuery{Name: q.Name, Type: strings.ToLower(q.Type), HasType: q.Type != ""}
	version := ""
	if q.PURL != "" {
		if q.Name != "" || q.Type != "" {
			return PackagePage{}, fmt.Errorf("%w: give a purl, or a name and type, not both", ErrInvalid)
		}
		t, ns, n, v, err := inventory.ParsePURL(q.PURL)
		if err != nil {
			return PackagePage{}, fmt.Errorf("%w: purl %q: %w", ErrInvalid, q.PURL, err)
		}
		pq = index.PackageQuery{Type: t, Namespace: ns, Name: n, HasType: true, HasNamespace: true}
		version = v
	}
	if pq.Name == "" && q.License == "" {
		return PackagePage{}, fmt.Errorf("%w: give a purl, a name (with its type), or a license", ErrInvalid)
	}
	if pq.Name == "" && (q.Range != "" || q.Type != "") {
		return PackagePage{}, fmt.Errorf("%w: a range or a type needs a purl or a name", ErrInvalid)
	}
	if len(q.License) > 256 || len(pq.Name) > 1024 {
		return PackagePage{}, fmt.Errorf("%w: license or name too long", ErrInvalid)
	}
	var rng *vers.Range
	switch {
	case q.Range != "" && version != "":
		return PackagePage{}, fmt.Errorf("%w: give a version in the purl or a range, not both", ErrInvalid)
	case q.Range != "":
		if !pq.HasType {
			return PackagePage{}, fmt.Errorf("%w: a range needs the package's type (its ecosystem)", ErrInvalid)
		}
		if rng, err = vers.Parse(q.Range); err != nil {
			return PackagePage{}, fmt.Errorf("%w: range: %w", ErrInvalid, err)
		}
		if rng.Scheme != pq.Type {
			return PackagePage{}, fmt.Errorf("%w: range scheme %s does not order %s packages; use vers:%s/…", ErrInvalid, rng.Scheme, pq.Type, pq.Type)
		}
	}

	out := PackagePage{Matches: []PackageMatch{}}
	if rng != nil {
		out.Range = rng.String()
	}
	var hold []index.Holding
	selected := map[int64]bool{}
	if pq.Name == "" { // by license alone
		if hold, err = s.index.ArtifactsLicensed(ctx, q.License, after, limit); err != nil {
			return PackagePage{}, fmt.Errorf("%w: read the package index: %w", ErrUnavailable, err)
		}
	} else {
		cands, err := s.index.Packages(ctx, pq)
		if errors.Is(err, index.ErrTooBroad) {
			return PackagePage{}, fmt.Errorf("%w: %w: give the type and namespace (a purl), a range or a license", ErrInvalid, err)
		}
		if err != nil {
			return PackagePage{}, fmt.Errorf("%w: read the package index: %w", ErrUnavailable, err)
		}
		var ids []int64
		for _, c := range cands {
			if !versionSelected(c, version, rng) || !licensed(c, q.License) {
				continue
			}
			ids = append(ids, c.ID)
			selected[c.ID] = true
		}
		if len(ids) == 0 {
			return out, nil
		}
		if hold, err = s.index.ArtifactsHolding(ctx, ids, after, limit); err != nil {
			return PackagePage{}, fmt.Errorf("%w: read the package index: %w", ErrUnavailable, err)
		}
	}
	if len(hold) == 0 {
		return out, nil
	}
	if len(hold) == limit {
		out.Next = strconv.FormatInt(hold[len(hold)-1].ArtifactID, 10)
	}

	var aids, pids []int64
	more := map[int64]int{}
	for _, h := range hold {
		aids = append(aids, h.ArtifactID)
		if len(h.PackageIDs) > maxPackagesPerMatch {
			more[h.ArtifactID] = len(h.PackageIDs) - maxPackagesPerMatch
			h.PackageIDs = h.PackageIDs[:maxPackagesPerMatch]
		}
		pids = append(pids, h.PackageIDs...)
	}
	slices.Sort(pids)
	arts, err := s.rows.ArtifactsByID(ctx, aids)
	if err != nil {
		return PackagePage{}, fmt.Errorf("%w: read artifacts: %w", ErrUnavailable, err)
	}
	pkgs, err := s.rows.PackagesByID(ctx, slices.Compact(pids))
	if err != nil {
		return PackagePage{}, fmt.Errorf("%w: read packages: %w", ErrUnavailable, err)
	}
	byPkg := map[int64]index.Package{}
	for _, p := range pkgs {
		byPkg[p.ID] = p
	}
	byArt := map[int64]index.Artifact{}
	var digests []string
	for _, a := range arts {
		byArt[a.ID] = a
		if !slices.Contains(digests, a.Digest) {
			digests = append(digests, a.Digest)
		}
	}
	ad, err := s.admissions.Admissions(ctx, digests)
	if err != nil {
		return PackagePage{}, fmt.Errorf("%w: read admissions: %w", ErrUnavailable, err)
	}
	for _, h := range hold {
		a := byArt[h.ArtifactID]
		m := PackageMatch{Repository: a.Repository, Digest: a.Digest, FirstAt: a.FirstAt, More: more[h.ArtifactID], Packages: []index.Package{}, Admissions: []Admitted{}}
		for _, id := range h.PackageIDs {
			if p, ok := byPkg[id]; ok && (len(selected) == 0 || selected[id]) {
				m.Packages = append(m.Packages, p)
			}
		}
		for _, x := range ad {
			if x.Digest == a.Digest {
				m.Admissions = append(m.Admissions, Admitted(x))
			}
		}
		out.Matches = append(out.Matches, m)
	}
	return out, nil
}

// versionSelected reports whether package c's version is the one asked
// for, or in the range; a version its ecosystem cannot read is not.
func versionSelected(c index.Package, version string, rng *vers.Range) bool {
	switch {
	case version != "":
		if vers.Supported(c.Type) {
			n, err := vers.Compare(c.Type, c.Version, version)
			return err == nil && n == 0
		}
		return c.Version == version
	case rng != nil:
		in, err := rng.Contains(c.Version)
		return err == nil && in
	}
	return true
}

func licensed(c index.Package, license string) bool {
	if license == "" {
		return true
	}
	for _, l := range c.Licenses {
		if strings.EqualFold(l, license) {
			return true
		}
	}
	return false
}

// pageArgs checks a page size (0 for the default) and an artifact-id
// cursor.
func pageArgs(limit int, cursor string, def, maxPage int) (int, int64, error) {
	if limit == 0 {
		limit = def
	}
	if limit < 1 || limit > maxPage {
		return 0, 0, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalid, maxPage)
	}
	var after int64
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("%w: bad cursor", ErrInvalid)
		}
		after = n
	}
	return limit, after, nil
}
