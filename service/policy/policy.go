// Package policy is the gate's policy model: which images a policy covers,
// which keys must have signed them, which attestations must hold (with CEL
// conditions over the verified predicate), and what to do when they don't.
//
// It is pure: it parses, validates and evaluates, and MUST NOT fetch
// anything. A policy is validated entirely at load; a bad one is refused
// with the reason, including a CEL expression whose estimated cost is over
// the limit.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"gopkg.in/yaml.v3"

	"github.com/attestd/attestd/internal/repomatch"
)

// ErrInvalid means a policy document is malformed or does not validate.
var ErrInvalid = errors.New("invalid policy")

// Mode says what a failed policy does.
type Mode string

// Modes. enforce denies; warn allows with warnings; audit allows and
// records what would have been denied.
const (
	Enforce Mode = "enforce"
	Warn    Mode = "warn"
	Audit   Mode = "audit"
)

// Cost limits of CEL conditions: the estimate at load, and the runtime
// budget of one evaluation.
const (
	MaxCost       = 10_000_000
	maxListSize   = 100_000 // what the estimator assumes a predicate list may hold
	maxPolicySize = 256 << 10
)

// Policy is one gate policy.
type Policy struct {
	Name         string        `yaml:"name"`
	Description  string        `yaml:"description,omitempty"`
	Match        Match         `yaml:"match"`
	Signatures   *Signatures   `yaml:"signatures,omitempty"`
	Attestations []Attestation `yaml:"attestations,omitempty"`
	Mode         Mode          `yaml:"mode,omitempty"`
	Breakglass   *Breakglass   `yaml:"breakglass,omitempty"`
	// AllowTags lets the validating admission webhook admit images by tag
	// that the mutating webhook did not pin. Off by default: a tag admitted
	// unpinned can be moved to unverified content after admission.
	AllowTags bool `yaml:"allowTags,omitempty"`
	// VerifiedLevels are the SLSA levels (e.g. SLSA_BUILD_LEVEL_2) that
	// passing this policy verifies; attestd writes them into the VSAs it
	// signs for the policy. Empty: the VSA states no level.
	VerifiedLevels []string `yaml:"verifiedLevels,omitempty"`
	// AcceptVSA, if set, lets a fresh PASSED verification summary for the
	// digest and this policy's name, signed by one of its keys with origin
	// attestd, stand in for evaluating the policy. Without one the policy
	// is evaluated in full.
	AcceptVSA *AcceptVSA `yaml:"acceptVSA,omitempty"`

	revision string
	source   []byte
	programs []cel.Program
}

// Match says which images, and for admission which namespaces, a policy covers.
type Match struct {
	// Images are repository patterns ("host/path"): path.Match globs, and
	// "host/team/**" for a subtree.
	Images []string `yaml:"images"`
	// Namespaces are the Kubernetes namespaces it covers ("*" for all).
	Namespaces []string `yaml:"namespaces,omitempty"`
}

// Signatures requires signatures by Threshold distinct keys of Keys.
type Signatures struct {
	// Keys are key names or key ids (sha256:…).
	Keys      []string `yaml:"keys"`
	Threshold int      `yaml:"threshold,omitempty"`
}

// Attestation requires a verified attestation of PredicateType, whose
// predicate satisfies Condition if one is given, and whose origin is
// accepted.
type Attestation struct {
	PredicateType string `yaml:"predicateType"`
	Condition     string `yaml:"condition,omitempty"`
	// Origin is who must have written the predicate: OriginAttestd (attestd
	// wrote it: its provenance and SBOMs), OriginCaller (submitted through
	// the API), or OriginAny (the default). It is read from inside the
	// signed statement.
	Origin string `yaml:"origin,omitempty"`
}

// Origins a requirement may accept.
const (
	OriginAny     = "any"
	OriginAttestd = "attestd"
	OriginCaller  = "caller"
)

// Accepts reports whether an attestation whose signed origin is origin
// ("" where it says none) meets the requirement.
func (a Attestation) Accepts(origin string) bool {
	return a.Origin == "" || a.Origin == OriginAny || a.Origin == origin
}

// AcceptVSA names the keys whose VSAs count, and how old one may be.
type AcceptVSA struct {
	// Keys are key names or key ids (sha256:…) of the key set.
	Keys []string `yaml:"keys"`
	// MaxAge bounds the VSA's timeVerified and signed time, e.g. 24h.
	MaxAge string `yaml:"maxAge"`

	maxAge time.Duration
}

// Age is MaxAge, parsed.
func (a *AcceptVSA) Age() time.Duration { return a.maxAge }

// maxVSAAge caps acceptVSA.maxAge: a summary is a cache of a verification,
// not a substitute for one.
const maxVSAAge = 30 * 24 * time.Hour

var levelRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// Breakglass lets a request be allowed despite the policy, with a
// justification, for at most MaxDuration. It is always recorded.
type Breakglass struct {
	Allowed     bool   `yaml:"allowed"`
	MaxDuration string `yaml:"maxDuration,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// env is the CEL environment of conditions.
var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("predicate", cel.DynType),
		cel.Variable("predicateType", cel.StringType),
		cel.Variable("digest", cel.StringType),
		cel.Variable("signedAt", cel.TimestampType),
		cel.Variable("now", cel.TimestampType),
		cel.Variable("origin", cel.StringType),
	)
})

// Parse reads and validates one policy document (YAML; JSON is YAML).
func Parse(b []byte) (*Policy, error) {
	if len(b) > maxPolicySize {
		return nil, fmt.Errorf("%w: over %d bytes", ErrInvalid, maxPolicySize)
	}
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, p.Name, err)
	}
	sum := sha256.Sum256(b)
	p.revision = hex.EncodeToString(sum[:])[:16]
	p.source = bytes.Clone(b)
	return &p, nil
}

func (p *Policy) validate() error {
	var errs []error
	if !nameRE.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("name %q: want lower-case letters, digits, '.', '_' or '-'", p.Name))
	}
	if len(p.Match.Images) == 0 {
		errs = append(errs, errors.New("match.images: at least one pattern"))
	}
	for _, im := range p.Match.Images {
		if !repomatch.Valid(im) {
			errs = append(errs, fmt.Errorf("match.images %q: bad pattern", im))
		}
	}
	switch p.Mode {
	case "":
		p.Mode = Enforce
	case Enforce, Warn, Audit:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want enforce, warn or audit", p.Mode))
	}
	if p.Signatures == nil && len(p.Attestations) == 0 {
		errs = append(errs, errors.New("a policy requires signatures, attestations or both"))
	}
	if s := p.Signatures; s != nil {
		if len(s.Keys) == 0 {
			errs = append(errs, errors.New("signatures.keys: at least one key"))
		}
		if s.Threshold == 0 {
			s.Threshold = 1
		}
		if s.Threshold < 1 || s.Threshold > len(s.Keys) {
			errs = append(errs, fmt.Errorf("signatures.threshold %d: want 1 to %d", s.Threshold, len(s.Keys)))
		}
	}
	e, err := env()
	if err != nil {
		return err
	}
	p.programs = make([]cel.Program, len(p.Attestations))
	for i, a := range p.Attestations {
		if u, err := url.Parse(a.PredicateType); err != nil || !u.IsAbs() {
			errs = append(errs, fmt.Errorf("attestations[%d].predicateType %q: want an absolute URI", i, a.PredicateType))
		}
		switch a.Origin {
		case "", OriginAny, OriginAttestd, OriginCaller:
		default:
			errs = append(errs, fmt.Errorf("attestations[%d].origin %q: want attestd, caller or any", i, a.Origin))
		}
		if a.Condition == "" {
			continue
		}
		prg, err := compile(e, a.Condition)
		if err != nil {
			errs = append(errs, fmt.Errorf("attestations[%d].condition: %w", i, err))
			continue
		}
		p.programs[i] = prg
	}
	for i, l := range p.VerifiedLevels {
		if !levelRE.MatchString(l) {
			errs = append(errs, fmt.Errorf("verifiedLevels[%d] %q: want upper-case letters, digits and '_', e.g. SLSA_BUILD_LEVEL_2", i, l))
		}
	}
	if len(p.VerifiedLevels) > 16 {
		errs = append(errs, errors.New("verifiedLevels: at most 16"))
	}
	if a := p.AcceptVSA; a != nil {
		if len(a.Keys) == 0 || len(a.Keys) > 64 {
			errs = append(errs, errors.New("acceptVSA.keys: 1 to 64 keys"))
		}
		for i, k := range a.Keys {
			if strings.TrimSpace(k) == "" {
				errs = append(errs, fmt.Errorf("acceptVSA.keys[%d]: empty", i))
			}
		}
		d, err := time.ParseDuration(a.MaxAge)
		if err != nil || d <= 0 || d > maxVSAAge {
			errs = append(errs, fmt.Errorf("acceptVSA.maxAge %q: want a duration from 1s to %s, such as 24h", a.MaxAge, maxVSAAge))
		}
		a.maxAge = d
	}
	if b := p.Breakglass; b != nil && b.Allowed {
		if _, err := time.ParseDuration(b.MaxDuration); err != nil || b.MaxDuration == "" {
			errs = append(errs, fmt.Errorf("breakglass.maxDuration %q: want a duration such as 4h", b.MaxDuration))
		}
	}
	return errors.Join(errs...)
}

// estimator bounds the size of anything reached through the predicate, so
// that the cost of comprehensions can be estimated.
type estimator struct{}

func (estimator) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: maxListSize}
}

func (estimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

func compile(e *cel.Env, expr string) (cel.Program, error) {
	if len(expr) > 4096 {
		return nil, errors.New("longer than 4096 characters")
	}
	ast, iss := e.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("must be a boolean, not %s", ast.OutputType())
	}
	est, err := e.EstimateCost(ast, estimator{})
	if err != nil {
		return nil, err
	}
	if est.Max > MaxCost {
		return nil, fmt.Errorf("estimated cost %d is over the limit %d", est.Max, MaxCost)
	}
	return e.Program(ast, cel.CostLimit(MaxCost), cel.InterruptCheckFrequency(100))
}

// Revision identifies this version of the policy: it changes with its text.
func (p *Policy) Revision() string { return p.revision }

// Source is the document the policy was parsed from.
func (p *Policy) Source() []byte { return bytes.Clone(p.source) }

// CoversImage reports whether the policy covers repository repo ("host/path").
func (p *Policy) CoversImage(repo string) bool {
	for _, pat := range p.Match.Images {
		if repomatch.Match(pat, repo) {
			return true
		}
	}
	return false
}

// CoversNamespace reports whether the policy covers namespace ns.
func (p *Policy) CoversNamespace(ns string) bool {
	for _, n := range p.Match.Namespaces {
		if n == "*" || n == ns {
			return true
		}
	}
	return false
}

// Input is what a condition sees: only verified content.
type Input struct {
	Predicate     any
	PredicateType string
	Digest        string
	SignedAt      time.Time
	Now           time.Time
	// Origin is who wrote the predicate, as signed ("" where unsaid).
	Origin string
}

// Eval evaluates the condition of attestation requirement i. No condition
// is true. An error (including the cost limit) is an error, never true.
func (p *Policy) Eval(i int, in Input) (bool, error) {
	prg := p.programs[i]
	if prg == nil {
		return true, nil
	}
	out, _, err := prg.Eval(map[string]any{
		"predicate": in.Predicate, "predicateType": in.PredicateType, "digest": in.Digest,
		"signedAt": in.SignedAt, "now": in.Now, "origin": in.Origin,
	})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition gave %v, not a boolean", out.Value())
	}
	return b, nil
}

// BreakglassFor checks a breakglass request: the policy must allow it, the
// justification must be given and the duration within the maximum.
func (p *Policy) BreakglassFor(justification string, d time.Duration) error {
	if p.Breakglass == nil || !p.Breakglass.Allowed {
		return fmt.Errorf("policy %s allows no breakglass", p.Name)
	}
	if strings.TrimSpace(justification) == "" {
		return errors.New("breakglass needs a justification")
	}
	max, _ := time.ParseDuration(p.Breakglass.MaxDuration)
	if d <= 0 || d > max {
		return fmt.Errorf("breakglass duration %s: want more than 0 and at most %s", d, max)
	}
	return nil
}

// Set is the loaded policies. It is safe for concurrent use.
type Set struct {
	mu       sync.RWMutex
	policies map[string]*Policy
}

// NewSet returns a set of ps; names must be unique.
func NewSet(ps ...*Policy) (*Set, error) {
	s := &Set{policies: map[string]*Policy{}}
	for _, p := range ps {
		if _, dup := s.policies[p.Name]; dup {
			return nil, fmt.Errorf("%w: policy %q defined twice", ErrInvalid, p.Name)
		}
		s.policies[p.Name] = p
	}
	return s, nil
}

// Put adds or replaces a policy.
func (s *Set) Put(p *Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies[p.Name] = p
}

// Replace replaces every policy with ps, by name.
func (s *Set) Replace(ps map[string]*Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = ps
}

// Delete removes a policy; it reports whether there was one.
func (s *Set) Delete(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.policies[name]
	delete(s.policies, name)
	return ok
}

// Get returns the policy called name.
func (s *Set) Get(name string) (*Policy, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.policies[name]
	return p, ok
}

// Covering returns every policy, by name, covering namespace ns and
// repository repo. Each of them must pass: where policies overlap, the
// strictest wins, and a policy in audit mode never switches off another.
func (s *Set) Covering(ns, repo string) []*Policy {
	var out []*Policy
	for _, p := range s.All() {
		if p.CoversNamespace(ns) && p.CoversImage(repo) {
			out = append(out, p)
		}
	}
	return out
}

// All lists the policies by name.
func (s *Set) All() []*Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Policy, 0, len(s.policies))
	for _, p := range s.policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
