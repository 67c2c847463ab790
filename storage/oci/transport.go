package oci

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"
)

// ErrForeignHost means a registry exchange tried to reach a host that is
// neither the registry nor one of the token realms configured for it (a
// registry's WWW-Authenticate challenge naming a token service elsewhere).
// It is the registry's misconfiguration, not an outage: nothing was sent
// there, and retrying will not help.
var ErrForeignHost = errors.New("request to a host that is not the configured registry or one of its token realms")

// guard is the HTTP transport one configured registry is reached through. It
// sits under ggcr's authentication transports, so it sees every request they
// make for the registry: the ping, token requests to the realm, manifests,
// blobs, and the hops of redirects.
//
// It MUST refuse any request to a host other than the registry and its
// configured token realms, except a credential-free GET or HEAD that follows
// a redirect (blob downloads sent on to storage): ggcr's bearer transport
// sends the registry's credentials to whatever realm a challenge names.
//
// It MUST NOT let a response body attestd buffers in memory (manifests,
// referrer lists, blobs) grow past its cap, and it MUST NOT hold more bytes
// of such bodies, across all registries, than the shared read budget.
type guard struct {
	registry string   // the configured host[:port]
	allowed  []string // the registry and its token realm hosts
	next     http.RoundTripper
	limits   *readLimits
}

// readLimits are the caps and the budget shared by the guards of one Registries.
type readLimits struct {
	manifest int64 // manifests, indexes and referrer lists
	blob     int64 // blobs read into memory
	budget   *readBudget
}

// readBudget is a weighted semaphore over the bytes of registry response
// bodies being read at once.
type readBudget struct {
	sem  *semaphore.Weighted
	size int64
}

func newReadBudget(size int64) *readBudget {
	return &readBudget{sem: semaphore.NewWeighted(size), size: size}
}

// RoundTrip checks the destination, sends the request, and caps and budgets
// the body of a manifest, referrers or blob response.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if !g.hostAllowed(req.URL) && !credentialFreeRedirect(req) {
		return nil, fmt.Errorf("%w: registry %s sent attestd to %s (%s %s); credentials go only to the registry and the token realms configured for it: "+
			"if %s is this registry's token service, add it to registries[].token_realms of %s",
			ErrForeignHost, g.registry, req.URL.Host, req.Method, redactURL(req.URL), req.URL.Host, g.registry)
	}
	kind, limit := g.limitFor(req)
	resp, err := g.next.RoundTrip(req)
	if err != nil || kind == "" || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, err
	}
	if resp.ContentLength > limit {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %d bytes, over the %d-byte cap: %w", kind, redactURL(originURL(req)), resp.ContentLength, limit, ErrTooLarge)
	}
	weight := limit
	if resp.ContentLength >= 0 {
		weight = resp.ContentLength
	}
	weight = min(weight, g.limits.budget.size) // one read may use the whole budget, never more
	if err := g.limits.budget.sem.Acquire(req.Context(), weight); err != nil {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("%w: %s %s: waited for %d bytes of the %d-byte registry read budget (registry_read_budget): %w",
			ErrUnavailable, kind, redactURL(originURL(req)), weight, g.limits.budget.size, err)
	}
	resp.Body = &cappedBody{
		rc: resp.Body, left: limit, kind: kind, limit: limit, url: redactURL(originURL(req)),
		release: sync.OnceFunc(func() { g.limits.budget.sem.Release(weight) }),
	}
	return resp, nil
}

// limitFor says whether the response to req is a body attestd reads into
// memory, and its cap. Redirect hops are judged by the request that started
// the chain: a blob download sent on to storage is still a blob.
func (g *guard) limitFor(req *http.Request) (string, int64) {
	if req.Method != http.MethodGet {
		return "", 0
	}
	switch kind := pathKind(originURL(req).Path); kind {
	case "manifest", "referrers":
		return kind, g.limits.manifest
	case "blob":
		return kind, g.limits.blob
	}
	return "", 0
}

// pathKind names the registry API object at path: /v2/<name>/manifests/<ref>,
// /v2/<name>/referrers/<digest> or /v2/<name>/blobs/<digest> (not uploads).
func pathKind(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 3 {
		return ""
	}
	switch segs[len(segs)-2] {
	case "manifests":
		return "manifest"
	case "referrers":
		return "referrers"
	case "blobs":
		return "blob"
	}
	return ""
}

func (g *guard) hostAllowed(u *url.URL) bool {
	got := hostKey(u.Host, u.Scheme)
	for _, h := range g.allowed {
		if hostKey(h, u.Scheme) == got {
			return true
		}
	}
	return false
}

// credentialFreeRedirect reports whether req is a GET or HEAD that follows
// a redirect and carries no credentials: the one kind of request that may
// go to a host the registry names (its blob storage).
func credentialFreeRedirect(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		req.Response != nil && req.Header.Get("Authorization") == "" && req.Header.Get("Cookie") == ""
}

// originURL is the URL of the request that started req's redirect chain.
func originURL(req *http.Request) *url.URL {
	for req.Response != nil && req.Response.Request != nil {
		req = req.Response.Request
	}
	return req.URL
}

// hostKey is host[:port] in lower case, without the scheme's default port.
func hostKey(hostport, scheme string) string {
	hostport = strings.ToLower(hostport)
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if (scheme == "https" && p == "443") || (scheme == "http" && p == "80") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}

// redactURL is u without its query (token requests carry scopes and may carry secrets).
func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.User, c.Fragment = "", nil, ""
	return c.String()
}

// cappedBody fails a read that goes past the cap, and returns its share of
// the read budget when closed. Whoever reads a response body MUST close it
// (ggcr and cosign do); the budget is held until then.
type cappedBody struct {
	rc      io.ReadCloser
	left    int64
	limit   int64
	kind    string
	url     string
	release func()
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		// One byte past the cap was read: the body is over it. Drop that byte.
		return n - 1, b.tooLarge()
	}
	return n, err
}

func (b *cappedBody) tooLarge() error {
	return fmt.Errorf("%s %s: more than the %d-byte cap: %w", b.kind, b.url, b.limit, ErrTooLarge)
}

func (b *cappedBody) Close() error {
	defer b.release()
	return b.rc.Close()
}
