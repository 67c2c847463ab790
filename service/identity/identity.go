// Package identity verifies the OIDC ID tokens of CI workload identities
// (GitHub Actions, GitLab CI, Buildkite, CircleCI, Kubernetes service
// accounts) from issuers that are configured and pinned, and turns their
// verified claims into grants by rules: which actions, on which repository
// scopes, with which keys. It also derives, from the verified claims, the
// build facts attestd puts in the provenance it writes for such a caller.
//
// It MUST NOT parse or trust a JWT by hand: signatures and claims are
// checked by github.com/coreos/go-oidc with keys fetched, by go-jose, only
// from the issuer's own JWKS, and never from the token's headers (jku, jwk,
// x5u are ignored). Every rule is validated at load; a token no rule grants
// gets nothing (deny by default).
package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Errors of identity verification.
var (
	// ErrInvalid means the token is not a valid ID token of a configured
	// issuer for this audience (401).
	ErrInvalid = errors.New("invalid identity token")
	// ErrNoGrant means the token is valid but no rule grants it anything (403).
	ErrNoGrant = errors.New("no rule grants this identity")
	// ErrUnavailable means the issuer's discovery document or keys could not
	// be fetched (503).
	ErrUnavailable = errors.New("identity issuer unavailable")
)

// Kinds of issuer, which decide how claims become build facts.
const (
	KindGitHubActions = "github-actions"
	KindGitLabCI      = "gitlab-ci"
	KindBuildkite     = "buildkite"
	KindCircleCI      = "circleci"
	KindKubernetes    = "kubernetes"
	KindGeneric       = "generic"
)

var kinds = []string{KindGitHubActions, KindGitLabCI, KindBuildkite, KindCircleCI, KindKubernetes, KindGeneric}

// Issuer is one configured and pinned OIDC issuer.
type Issuer struct {
	// Name is how rules refer to it.
	Name string `yaml:"name"`
	// URL is the issuer, exactly as tokens name it (no trailing-slash
	// variants are accepted).
	URL string `yaml:"url"`
	// Audience is the audience tokens must carry: unique to this attestd.
	Audience string `yaml:"audience"`
	// Algorithms are the accepted signing algorithms (default RS256, ES256).
	Algorithms []string `yaml:"algorithms"`
	// Kind is the CI platform: github-actions, gitlab-ci, buildkite,
	// circleci, kubernetes or generic.
	Kind string `yaml:"kind"`
	// JWKSURL overrides the discovery document's jwks_uri; it must be on the
	// issuer's host either way.
	JWKSURL string `yaml:"jwks_url,omitempty"`
}

// Identity is a verified workload identity.
type Identity struct {
	Issuer     string // the issuer URL
	IssuerName string
	Kind       string
	Subject    string
	// Claims are the token's verified claims.
	Claims map[string]any
	Expiry time.Time
}

// String names the identity: issuer and subject.
func (i Identity) String() string { return i.Issuer + "#" + i.Subject }

// Claim returns a string claim, or "".
func (i Identity) Claim(name string) string {
	s, _ := i.Claims[name].(string)
	if s == "" {
		if f, ok := i.Claims[name].(float64); ok {
			return fmt.Sprint(int64(f))
		}
	}
	return s
}

// Grant is what a rule gives an identity.
type Grant struct {
	Rule         string
	Roles        []string
	Repositories []string
	// Keys are the key names it may sign with.
	Keys []string
}

// Verifier verifies ID tokens of the configured issuers and applies rules.
type Verifier struct {
	issuers map[string]*issuer // by URL
	rules   []*rule
	client  *http.Client
	now     func() time.Time
}

// Options tune a Verifier.
type Options struct {
	// Client fetches discovery documents and JWKS; nil means a client with
	// timeouts.
	Client *http.Client
	// RefreshInterval is the least time between two JWKS fetches of one
	// issuer, however many unknown key ids tokens name (default 1 minute).
	RefreshInterval time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// New validates issuers and rules and returns the verifier. Discovery and
// keys are fetched lazily, on the first token of each issuer, and cached.
func New(issuers []Issuer, rules []Rule, o Options) (*Verifier, error) {
	v := &Verifier{issuers: map[string]*issuer{}, client: o.Client, now: o.Now}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	if v.now == nil {
		v.now = time.Now
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = time.Minute
	}
	names := map[string]bool{}
	var errs []error
	for _, is := range issuers {
		u, err := url.Parse(is.URL)
		switch {
		case is.Name == "" || names[is.Name]:
			errs = append(errs, fmt.Errorf("issuer %q: a unique name is required", is.Name))
		case err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && !loopback(u.Hostname())):
			errs = append(errs, fmt.Errorf("issuer %s: url %q: want https:// (http only on loopback)", is.Name, is.URL))
		case is.Audience == "":
			errs = append(errs, fmt.Errorf("issuer %s: an audience is required, unique to this attestd", is.Name))
		case !slices.Contains(kinds, is.Kind):
			errs = append(errs, fmt.Errorf("issuer %s: kind %q: want one of %s", is.Name, is.Kind, strings.Join(kinds, ", ")))
		}
		if len(is.Algorithms) == 0 {
			is.Algorithms = []string{oidc.RS256, oidc.ES256}
		}
		for _, a := range is.Algorithms {
			if !slices.Contains([]string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}, a) {
				errs = append(errs, fmt.Errorf("issuer %s: algorithm %q: want an asymmetric JWS algorithm", is.Name, a))
			}
		}
		if is.JWKSURL != "" {
			ju, err := url.Parse(is.JWKSURL)
			if err != nil || ju.Host != u.Host {
				errs = append(errs, fmt.Errorf("issuer %s: jwks_url must be on the issuer's host %s", is.Name, u.Host))
			}
		}
		names[is.Name] = true
		v.issuers[is.URL] = newIssuer(is, v.client, o.RefreshInterval, v.now)
	}
	for i, r := range rules {
		cr, err := compileRule(r, names)
		if err != nil {
			errs = append(errs, fmt.Errorf("oidc rule %d (%s): %w", i, r.Name, err))
			continue
		}
		v.rules = append(v.rules, cr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

func loopback(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// Enabled reports whether any issuer is configured.
func (v *Verifier) Enabled() bool { return v != nil && len(v.issuers) > 0 }

// LooksLikeJWT reports whether a credential has the shape of a compact JWS;
// attestd tokens never do.
func LooksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && !strings.HasPrefix(s, "atd_") && len(s) < 16<<10
}

// Verify checks raw as an ID token of a configured issuer for its audience
// and returns the identity and the grant of the first rule that matches.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, Grant, error) {
	if !v.Enabled() {
		return Identity{}, Grant{}, ErrInvalid
	}
	// Which issuer: read the unverified iss with go-jose only to choose the
	// pinned issuer whose keys then verify everything.
	tok, err := jwt.ParseSigned(raw, allAlgorithms)
	if err != nil {
		return Identity{}, Grant{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Identity{}, Grant{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	is, ok := v.issuers[unverified.Issuer]
	if !ok {
		return Identity{}, Grant{}, fmt.Errorf("%w: issuer %q is not configured", ErrInvalid, unverified.Issuer)
	}
	idt, err := is.verify(ctx, raw)
	if err != nil {
		return Identity{}, Grant{}, err
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, Grant{}, fmt.Errorf("%w: claims: %w", ErrInvalid, err)
	}
	id := Identity{Issuer: idt.Issuer, IssuerName: is.cfg.Name, Kind: is.cfg.Kind, Subject: idt.Subject, Claims: claims, Expiry: idt.Expiry}
	for _, r := range v.rules {
		ok, err := r.match(id)
		if err != nil {
			continue // a rule that cannot be evaluated on these claims grants nothing
		}
		if ok {
			return id, r.grant, nil
		}
	}
	return id, Grant{}, fmt.Errorf("%w: %s", ErrNoGrant, id)
}

var allAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}
