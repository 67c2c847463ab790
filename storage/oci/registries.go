// Package oci reads and writes signatures and attestations in OCI registries,
// in cosign's layouts: the legacy `sha256-<hex>.sig` tag and sigstore bundles
// stored as OCI 1.1 referrers (with the tag-schema fallback where a registry
// has no referrers API).
//
// It MUST talk only to configured registry hosts: a reference to any other
// host is refused before a request is made, and a registry's credentials go
// only to that registry and the token realms configured for it. It MUST NOT
// trust what a registry returns without checking digests and sizes, and it
// MUST NOT buffer more of a response than its cap, nor more of all responses
// at once than the read budget.
package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors callers map to responses.
var (
	// ErrHostNotAllowed means a reference names a registry that is not configured.
	ErrHostNotAllowed = errors.New("registry host is not configured")
	// ErrBadReference means a reference does not parse.
	ErrBadReference = errors.New("invalid image reference")
	// ErrNotFound means the registry has no such manifest.
	ErrNotFound = errors.New("not found in registry")
	// ErrTooLarge means a registry object is over its configured cap.
	ErrTooLarge = errors.New("registry object over size limit")
	// ErrDigestMismatch means a registry returned content whose digest is not the one requested.
	ErrDigestMismatch = errors.New("registry returned content with a different digest")
	// ErrUnavailable means the registry could not be reached, failed (5xx),
	// or did not answer in time: retry later.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrDenied means the registry refused attestd's credentials (401, 403):
	// a configuration to fix, not an outage.
	ErrDenied = errors.New("registry refused attestd's credentials")
)

// Host is one configured registry.
type Host struct {
	// Name is host[:port] as written in image references.
	Name string
	// Insecure makes attestd use plain http. Loopback hosts use http anyway.
	Insecure bool
	// Auth is the authenticator for this host; nil means the keychain, then anonymous.
	Auth authn.Authenticator
	// NoReferrersAPI says the registry is known to serve no OCI 1.1
	// referrers API (the embedded distribution registry): referrer lists
	// are read from the tag-schema fallback index directly, saving the
	// request that would answer 404.
	NoReferrersAPI bool
	// TokenRealms are the hosts (host[:port]) of this registry's token
	// service where it is not the registry itself (e.g. auth.docker.io for
	// index.docker.io). The registry's credentials MUST NOT go to any host
	// that is neither Name nor listed here, whatever realm the registry's
	// WWW-Authenticate challenge names.
	TokenRealms []string
}

// Registries is the set of registries attestd may talk to.
type Registries struct {
	mu          sync.Mutex
	clients     map[string]hostClients // per host: reused connections and auth
	hosts       map[string]Host
	guards      map[string]*guard // per host: the transport its requests go through
	keychain    authn.Keychain
	transport   http.RoundTripper // shared by the guards: one connection pool
	userAgent   string
	maxManifest int64
	maxBlob     int64
	limits      *readLimits
}

// Options configures Registries.
type Options struct {
	// Keychain supplies credentials for hosts without their own Auth (e.g. a docker config file).
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil means a default with timeouts.
	Transport http.RoundTripper
	// UserAgent is sent with every request.
	UserAgent string
	// MaxManifestBytes caps every manifest, index or referrer list read,
	// before it is buffered. Zero means 4 MiB.
	MaxManifestBytes int64
	// ReadBudgetBytes caps the bytes of registry response bodies (manifests,
	// referrer lists, blobs) being read into memory at once, across all
	// registries and requests. A read waits for its share, up to its
	// context's deadline. Zero means 256 MiB.
	ReadBudgetBytes int64
}

// DefaultReadBudgetBytes is the read budget when Options sets none.
const DefaultReadBudgetBytes = 256 << 20

// NewRegistries returns the registry set for hosts.
func NewRegistries(hosts []Host, o Options) (*Registries, error) {
	r := &Registries{
		clients:     map[string]hostClients{},
		hosts:       make(map[string]Host, len(hosts)),
		keychain:    o.Keychain,
		transport:   o.Transport,
		userAgent:   o.UserAgent,
		maxManifest: o.MaxManifestBytes,
		maxBlob:     maxBundleBytes,
	}
	if r.keychain == nil {
		r.keychain = authn.NewMultiKeychain() // anonymous
	}
	if r.transport == nil {
		r.transport = DefaultTransport()
	}
	if r.maxManifest <= 0 {
		r.maxManifest = 4 << 20
	}
	budget := o.ReadBudgetBytes
	if budget <= 0 {
		budget = DefaultReadBudgetBytes
	}
	r.limits = &readLimits{manifest: r.maxManifest, blob: r.maxBlob, budget: newReadBudget(budget)}
	r.guards = make(map[string]*guard, len(hosts))
	for _, h := range hosts {
		n := strings.ToLower(strings.TrimSpace(h.Name))
		if !isHostPort(n) {
			return nil, fmt.Errorf("registry host %q: must be host[:port]", h.Name)
		}
		h.Name = n
		g := &guard{registry: n, allowed: []string{n}, next: r.transport, limits: r.limits}
		for _, realm := range h.TokenRealms {
			rn := strings.ToLower(strings.TrimSpace(realm))
			if !isHostPort(rn) {
				return nil, fmt.Errorf("registry %s: token realm %q: must be host[:port], without scheme or path", h.Name, realm)
			}
			g.allowed = append(g.allowed, rn)
		}
		r.hosts[n] = h
		r.guards[n] = g
	}
	return r, nil
}

func isHostPort(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/@ ?#\\")
}

// DefaultTransport is an HTTP transport with connect, TLS and header timeouts.
func DefaultTransport() http.RoundTripper {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
}

// CloseIdleConnections closes idle connections to registries (at shutdown:
// when attestd is its own registry, a connection it opened and never used
// would otherwise hold up its graceful shutdown).
func (r *Registries) CloseIdleConnections() {
	if c, ok := r.transport.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Hosts lists the configured host names.
func (r *Registries) Hosts() []string {
	out := make([]string, 0, len(r.hosts))
	for h := range r.hosts {
		out = append(out, h)
	}
	return out
}

// Parse parses s and checks that its registry is configured. It makes no request.
//
// It MUST refuse a reference that is not already canonical: a repository
// path with an empty, "." or ".." segment (a key scoped to team-a/** must
// not sign host/team-a/../team-b/app, which a path-normalising proxy would
// store in team-b), upper case, an implied registry or library/ prefix, or a
// host not written as configured. What is accepted names exactly the
// repository the string says.
func (r *Registries) Parse(s string) (name.Reference, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadReference)
	}
	if len(s) > 1024 {
		return nil, fmt.Errorf("%w: longer than 1024 characters", ErrBadReference)
	}
	given, err := canonicalName(s)
	if err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	h, ok := r.hosts[strings.ToLower(ref.Context().RegistryStr())]
	if !ok {
		return nil, fmt.Errorf("%w: %s (configured: %s)", ErrHostNotAllowed, ref.Context().RegistryStr(), strings.Join(r.Hosts(), ", "))
	}
	if h.Insecure {
		ref, err = name.ParseReference(s, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadReference, err)
		}
	}
	if got := ref.Context().RegistryStr() + "/" + ref.Context().RepositoryStr(); got != given || ref.Context().RegistryStr() != h.Name {
		return nil, fmt.Errorf("%w: %q names repository %s; write it in that canonical form (host as configured: %s)", ErrBadReference, s, got, h.Name)
	}
	return ref, nil
}

// canonicalName checks s against the distribution reference grammar, with
// no normalisation, and returns its name (host/path) as written. Every path
// segment MUST be a path component of that grammar: lower-case
// alphanumerics joined by single separators, never empty, "." or "..".
func canonicalName(s string) (string, error) {
	parsed, err := reference.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not a canonical reference (host/path with lower-case path segments, none empty, \".\" or \"..\"): %w", ErrBadReference, s, err)
	}
	named, ok := parsed.(reference.Named)
	if !ok {
		return "", fmt.Errorf("%w: %q has no repository name", ErrBadReference, s)
	}
	for _, seg := range strings.Split(reference.Path(named), "/") {
		if !pathComponent.MatchString(seg) {
			return "", fmt.Errorf("%w: %q: repository path segment %q is not canonical", ErrBadReference, s, seg)
		}
	}
	return named.Name(), nil
}

// pathComponent is the distribution grammar's path-component.
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

// remoteOptions returns the ggcr options for repo. It refuses unconfigured hosts.
func (r *Registries) remoteOptions(ctx context.Context, repo name.Repository) ([]remote.Option, error) {
	h, ok := r.hosts[strings.ToLower(repo.RegistryStr())]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrHostNotAllowed, repo.RegistryStr())
	}
	base := []remote.Option{
		remote.WithTransport(r.guards[h.Name]),
		remote.WithUserAgent(r.userAgent),
	}
	if h.Auth != nil {
		base = append(base, remote.WithAuth(h.Auth))
	} else {
		base = append(base, remote.WithAuthFromKeychain(r.keychain))
	}
	c, err := r.clientsFor(h.Name, base)
	if err != nil {
		return nil, err
	}
	return append(base, remote.WithContext(ctx), remote.Reuse(c.puller), remote.Reuse(c.pusher)), nil
}

// hostClients keep a host's pinged, authenticated transports between calls,
// so that a request does not ping and authenticate again.
type hostClients struct {
	puller *remote.Puller
	pusher *remote.Pusher
}

func (r *Registries) clientsFor(host string, base []remote.Option) (hostClients, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[host]; ok {
		return c, nil
	}
	pl, err := remote.NewPuller(base...)
	if err != nil {
		return hostClients{}, err
	}
	ps, err := remote.NewPusher(base...)
	if err != nil {
		return hostClients{}, err
	}
	c := hostClients{puller: pl, pusher: ps}
	r.clients[host] = c
	return c, nil
}

// classify maps a registry client error to this package's sentinels.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %w", ErrDenied, err)
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) ||
		errors.Is(err, ErrDenied) || errors.Is(err, ErrForeignHost) {
		return err // classified where it happened (this package's transport)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if strings.Contains(err.Error(), "does not match requested digest") {
		// ggcr's own check of a manifest fetched by digest (an unexported
		// error): the registry served other content.
		return fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	// Anything else a registry exchange fails with (it could not be
	// reached, a connection broke, a malformed response) is an outage.
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Access is how to reach a registry outside this package (the SBOM
// cataloger): its host, whether it speaks plain http, and basic credentials.
type Access struct {
	Host               string
	Insecure           bool
	Username, Password string
	Token              string
}

// AccessFor returns how to reach the registry of repo; it refuses
// unconfigured hosts like every other call.
func (r *Registries) AccessFor(repo name.Repository) (Access, error) {
	h, ok := r.hosts[strings.ToLower(repo.RegistryStr())]
	if !ok {
		return Access{}, fmt.Errorf("%w: %s", ErrHostNotAllowed, repo.RegistryStr())
	}
	a := Access{Host: h.Name, Insecure: h.Insecure || repo.Scheme() == "http"}
	auth := h.Auth
	if auth == nil {
		var err error
		if auth, err = r.keychain.Resolve(repo); err != nil {
			return Access{}, err
		}
	}
	cfg, err := auth.Authorization()
	if err != nil {
		return Access{}, err
	}
	a.Username, a.Password, a.Token = cfg.Username, cfg.Password, cfg.RegistryToken
	return a, nil
}

// Manifest returns the manifest at d, checked against its digest and the size cap.
func (r *Registries) Manifest(ctx context.Context, d name.Digest) ([]byte, error) {
	opts, err := r.remoteOptions(ctx, d.Context())
	if err != nil {
		return nil, err
	}
	_, raw, err := r.getManifest(ctx, d, opts)
	return raw, err
}
