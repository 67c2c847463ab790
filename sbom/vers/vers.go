// Package vers parses version ranges in the purl "vers" notation
// (vers:<scheme>/<constraint>|<constraint>…, https://github.com/package-url/vers-spec)
// and tests versions against them with each ecosystem's own ordering, from
// osv-scalibr's semantic package: deb, rpm, apk, npm, pypi, maven, golang,
// cargo, gem and nuget. It compares no version by hand.
//
// It is pure and light (it is fuzzed): it MUST NOT do I/O, and a range or a
// version it cannot read is an error, never a match.
package vers

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/google/osv-scalibr/semantic"
)

// ErrInvalid means a range is malformed, or names a scheme this package
// does not order.
var ErrInvalid = errors.New("invalid version range")

// Limits on one range.
const (
	MaxLength      = 1024
	MaxConstraints = 64
)

// ecosystems maps vers schemes (which are purl types) to the ecosystem
// names of osv-scalibr's semantic package.
var ecosystems = map[string]string{
	"deb":    "Debian",
	"rpm":    "Red Hat",
	"apk":    "Alpine",
	"npm":    "npm",
	"pypi":   "PyPI",
	"maven":  "Maven",
	"golang": "Go",
	"cargo":  "crates.io",
	"gem":    "RubyGems",
	"nuget":  "NuGet",
}

// Schemes lists the schemes Parse accepts, sorted.
func Schemes() []string {
	out := make([]string, 0, len(ecosystems))
	for s := range ecosystems {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Supported reports whether scheme (a purl type) has an ordering here.
func Supported(scheme string) bool {
	_, ok := ecosystems[scheme]
	return ok
}

// Comparators of a constraint.
const (
	EQ = "="
	NE = "!="
	LT = "<"
	LE = "<="
	GT = ">"
	GE = ">="
)

// Constraint is one comparator and version.
type Constraint struct {
	Op      string
	Version string
	v       semantic.Version
}

// Range is a parsed vers range.
type Range struct {
	Scheme string
	// All is true for "vers:<scheme>/*": every version.
	All         bool
	Constraints []Constraint
}

// String is the range in its normal form: constraints sorted by version.
func (r *Range) String() string {
	if r.All {
		return "vers:" + r.Scheme + "/*"
	}
	parts := make([]string, len(r.Constraints))
	for i, c := range r.Constraints {
		op := c.Op
		if op == EQ {
			op = ""
		}
		parts[i] = op + url.PathEscape(c.Version)
	}
	return "vers:" + r.Scheme + "/" + strings.Join(parts, "|")
}

// Parse reads a vers range. The constraints are sorted by version and
// checked as the vers specification says: no version twice, and around
// each gap the comparators alternate (a "<" or "<=" is followed by a ">"
// or ">=", and the other way round; "!=" may be anywhere).
func Parse(s string) (r *Range, err error) {
	defer func() {
		if p := recover(); p != nil { // a comparison that panics is a bad range
			r, err = nil, fmt.Errorf("%w: %v", ErrInvalid, p)
		}
	}()
	if len(s) > MaxLength {
		return nil, fmt.Errorf("%w: longer than %d characters", ErrInvalid, MaxLength)
	}
	s = strings.Join(strings.Fields(s), "")
	rest, ok := strings.CutPrefix(s, "vers:")
	if !ok {
		return nil, fmt.Errorf("%w: %q does not start with \"vers:\"", ErrInvalid, s)
	}
	scheme, spec, ok := strings.Cut(rest, "/")
	if !ok || scheme == "" || spec == "" {
		return nil, fmt.Errorf("%w: want vers:<scheme>/<constraints>, such as vers:deb/>=1.0|<2.0", ErrInvalid)
	}
	scheme = strings.ToLower(scheme)
	if !Supported(scheme) {
		return nil, fmt.Errorf("%w: scheme %q: want one of %s", ErrInvalid, scheme, strings.Join(Schemes(), ", "))
	}
	r = &Range{Scheme: scheme}
	if spec == "*" {
		r.All = true
		return r, nil
	}
	items := strings.Split(spec, "|")
	if len(items) > MaxConstraints {
		return nil, fmt.Errorf("%w: more than %d constraints", ErrInvalid, MaxConstraints)
	}
	for _, it := range items {
		c := Constraint{Op: EQ}
		for _, op := range []string{NE, LE, GE, LT, GT, EQ} { // two-character comparators first
			if v, ok := strings.CutPrefix(it, op); ok {
				c.Op, it = op, v
				break
			}
		}
		if it == "" || it == "*" {
			return nil, fmt.Errorf("%w: constraint without a version", ErrInvalid)
		}
		if dec, err := url.PathUnescape(it); err == nil {
			it = dec // versions may be percent-encoded ("|" as %7C)
		}
		v, err := parseVersion(scheme, it)
		if err != nil {
			return nil, fmt.Errorf("%w: version %q: %w", ErrInvalid, it, err)
		}
		c.Version, c.v = it, v
		r.Constraints = append(r.Constraints, c)
	}
	var cmpErr error
	slices.SortStableFunc(r.Constraints, func(a, b Constraint) int {
		n, err := a.v.Compare(b.v)
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		return n
	})
	if cmpErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, cmpErr)
	}
	for i := 1; i < len(r.Constraints); i++ {
		if n, _ := r.Constraints[i-1].v.Compare(r.Constraints[i].v); n == 0 {
			return nil, fmt.Errorf("%w: version %s appears twice", ErrInvalid, r.Constraints[i].Version)
		}
	}
	// Ignoring "!=", an "=" is followed only by "=", ">" or ">="; and
	// ignoring "=" too, "<"/"<=" and ">"/">=" alternate.
	var prevAny, prev string
	for _, c := range r.Constraints {
		if c.Op == NE {
			continue
		}
		if prevAny == EQ && lower(c.Op) {
			return nil, fmt.Errorf("%w: %s%s after =: the = is inside it already", ErrInvalid, c.Op, c.Version)
		}
		prevAny = c.Op
		if c.Op == EQ {
			continue
		}
		if prev != "" && lower(prev) == lower(c.Op) {
			return nil, fmt.Errorf("%w: %s%s after %s: a %s must be followed by the other direction", ErrInvalid, c.Op, c.Version, prev, prev)
		}
		prev = c.Op
	}
	return r, nil
}

// lower reports whether op bounds from above (< or <=).
func lower(op string) bool { return op == LT || op == LE }

// Contains reports whether version is in the range, by the vers
// specification's algorithm. A version the scheme cannot read is an
// error, never a match.
func (r *Range) Contains(version string) (in bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			in, err = false, fmt.Errorf("version %q: %v", version, p)
		}
	}()
	v, err := parseVersion(r.Scheme, version)
	if err != nil {
		return false, err
	}
	if r.All {
		return true, nil
	}
	cmp := func(c Constraint) int {
		n, err := v.Compare(c.v)
		if err != nil {
			panic(err)
		}
		return n
	}
	var bounds []Constraint
	for _, c := range r.Constraints {
		switch c.Op {
		case EQ:
			if cmp(c) == 0 {
				return true, nil
			}
		case NE:
			if cmp(c) == 0 {
				return false, nil
			}
		default:
			bounds = append(bounds, c)
		}
	}
	if len(bounds) == 0 {
		// Only "!=" (and "=") constraints: every other version is in.
		for _, c := range r.Constraints {
			if c.Op == NE {
				return true, nil
			}
		}
		return false, nil
	}
	holds := func(c Constraint) bool {
		n := cmp(c)
		switch c.Op {
		case LT:
			return n < 0
		case LE:
			return n <= 0
		case GT:
			return n > 0
		case GE:
			return n >= 0
		}
		return false
	}
	first, last := bounds[0], bounds[len(bounds)-1]
	if lower(first.Op) && holds(first) {
		return true, nil
	}
	if !lower(last.Op) && holds(last) {
		return true, nil
	}
	for i := 0; i+1 < len(bounds); i++ {
		cur, next := bounds[i], bounds[i+1]
		if !lower(cur.Op) && lower(next.Op) && holds(cur) && holds(next) {
			return true, nil
		}
	}
	return false, nil
}

// parseVersion reads version in scheme's ordering. Debian, Alpine and PyPI
// refuse what they cannot read; the others order any string.
func parseVersion(scheme, version string) (semantic.Version, error) {
	if version == "" {
		return nil, errors.New("empty version")
	}
	if len(version) > 256 {
		return nil, errors.New("version longer than 256 characters")
	}
	eco, ok := ecosystems[scheme]
	if !ok {
		return nil, fmt.Errorf("no ordering for %q", scheme)
	}
	return semantic.Parse(version, eco)
}

// Compare orders two versions of scheme: -1, 0 or 1.
func Compare(scheme, a, b string) (n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			n, err = 0, fmt.Errorf("compare %q and %q: %v", a, b, p)
		}
	}()
	va, err := parseVersion(scheme, a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(scheme, b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb)
}
