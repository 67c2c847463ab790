// Package hostile is a registry that misbehaves on purpose, for tests.
//
// A Registry is a real registry (go-containerregistry's pkg/registry, with
// the referrers API) behind a proxy. Everything it serves comes from the real
// registry except the faults a test injects, and a fault is injected only
// where no real registry can be made to misbehave that way: a manifest of
// 64 MiB, ten thousand referrers, a token realm on another host, a response
// that stalls half-way, slowness.
//
// Fixtures are pushed through Direct, the same registry without the proxy,
// so that injected faults (and a demanded bearer token) never get in the way
// of setting a test up. It lives in its own package so that storage tests
// can use it without linking attestd's whole application.
package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is a real registry behind a fault-injecting proxy.
type Registry struct {
	// Host is the proxy's host:port: what the code under test talks to.
	Host string
	// Direct is the host:port of the same registry without the proxy, for
	// pushing fixtures.
	Direct string

	backend http.Handler
	storage string // http://localhost:port of the blob storage redirects go to

	mu        sync.Mutex
	huge      map[string]hugeBody        // exact path → body
	injected  map[string][]byte          // manifest digest → injected manifest
	referrers map[string][]v1.Descriptor // subject digest → injected referrers
	stalls    map[string]*stall          // exact path → the next stall
	allStalls []*stall                   // every stall, released at the end
	slow      []slowRule
	bearer    *bearerRule
	redirect  bool
	slowInj   time.Duration // delay of each injected manifest

	hugeSent        atomic.Int64
	injectedFetches atomic.Int64
	requests        atomic.Int64
	redirects       atomic.Int64
	storageWithAuth atomic.Bool
}

type hugeBody struct {
	size          int64
	declareLength bool
	mediaType     string
}

type stall struct {
	declareLength bool
	once          sync.Once
	reached       chan struct{}
	release       chan struct{}
}

type slowRule struct {
	contains string
	delay    time.Duration
}

type bearerRule struct{ realm, token string }

// New starts a hostile registry that lives until the test ends.
func New(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{
		backend:   registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))),
		huge:      map[string]hugeBody{},
		injected:  map[string][]byte{},
		referrers: map[string][]v1.Descriptor{},
		stalls:    map[string]*stall{},
	}
	direct := httptest.NewServer(r.backend)
	proxy := httptest.NewServer(r)
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "" || req.Header.Get("Cookie") != "" {
			r.storageWithAuth.Store(true)
		}
		r.backend.ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		r.mu.Lock()
		for _, s := range r.allStalls {
			s.once.Do(func() { close(s.release) })
		}
		r.mu.Unlock()
		proxy.Close()
		storage.Close()
		direct.Close()
	})
	r.Host = strings.TrimPrefix(proxy.URL, "http://")
	r.Direct = strings.TrimPrefix(direct.URL, "http://")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(storage.URL, "http://"))
	r.storage = "http://localhost:" + port
	return r
}

// Huge makes GET of path (e.g. /v2/repo/manifests/sha256:...) answer with
// size bytes, generated as they are sent, with a Content-Length header only
// if declareLength. HEAD answers with the headers. HugeSent counts what
// was written.
func (r *Registry) Huge(path string, size int64, declareLength bool) {
	mt := string(types.OCIManifestSchema1)
	if strings.Contains(path, "/blobs/") {
		mt = "application/octet-stream"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.huge[path] = hugeBody{size: size, declareLength: declareLength, mediaType: mt}
}

// HugeSent is how many bytes of Huge bodies the proxy has written.
func (r *Registry) HugeSent() int64 { return r.hugeSent.Load() }

// HugeManifestRef is a by-digest reference on the proxy whose manifest is
// size bytes (see Huge); the digest is not the content's, as a hostile
// registry would not care.
func (r *Registry) HugeManifestRef(repo string, size int64, declareLength bool) string {
	d := fmt.Sprintf("sha256:%064x", size)
	r.Huge("/v2/"+repo+"/manifests/"+d, size, declareLength)
	return r.Host + "/" + repo + "@" + d
}

// InjectReferrers lists n more referrers of subject (a digest on the
// proxy) in the referrers API: cosign-shaped bundle manifests of the given
// artifact type and predicate-type annotation, each a distinct manifest the
// proxy serves. Their one layer is a real blob ("{}"). InjectedFetches
// counts GETs of them.
func (r *Registry) InjectReferrers(t testing.TB, subject name.Digest, n int, artifactType, predicateType string) {
	t.Helper()
	layer := static.NewLayer([]byte("{}"), types.MediaType(artifactType))
	repo, err := name.NewRepository(r.Direct + "/" + subject.Context().RepositoryStr())
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	ld, _ := layer.Digest()
	sd, err := v1.NewHash(subject.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	descs := make([]v1.Descriptor, 0, n)
	manifests := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		m := v1.Manifest{
			SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType,
			Config:      v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: ld, Size: 2},
			Layers:      []v1.Descriptor{{MediaType: types.MediaType(artifactType), Digest: ld, Size: 2}},
			Subject:     &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sd, Size: 1},
			Annotations: map[string]string{"dev.sigstore.bundle.predicateType": predicateType, "hostile.n": fmt.Sprint(i)},
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		h, _, _ := v1.SHA256(bytes.NewReader(raw))
		manifests[h.String()] = raw
		descs = append(descs, v1.Descriptor{
			MediaType: types.OCIManifestSchema1, ArtifactType: artifactType, Digest: h, Size: int64(len(raw)),
			Annotations: map[string]string{"dev.sigstore.bundle.predicateType": predicateType},
		})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range manifests {
		r.injected[k] = v
	}
	r.referrers[subject.DigestStr()] = append(r.referrers[subject.DigestStr()], descs...)
}

// SlowInjected delays every GET of an injected referrer manifest by d, as
// a registry under load (or one playing for time) would.
func (r *Registry) SlowInjected(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slowInj = d
}

// InjectedFetches counts GETs of injected referrer manifests.
func (r *Registry) InjectedFetches() int64 { return r.injectedFetches.Load() }

// Requests counts every request the proxy has received.
func (r *Registry) Requests() int64 { return r.requests.Load() }

// Stall makes the next response to path stop half-way through its body
// (headers and half the body sent, without a Content-Length unless
// declareLength) until release is called or the client goes away. reached
// is closed when the response has stalled.
func (r *Registry) Stall(path string, declareLength bool) (reached <-chan struct{}, release func()) {
	s := &stall{declareLength: declareLength, reached: make(chan struct{}), release: make(chan struct{})}
	r.mu.Lock()
	r.stalls[path] = s
	r.allStalls = append(r.allStalls, s)
	r.mu.Unlock()
	return s.reached, func() { s.once.Do(func() { close(s.release) }) }
}

// RedirectBlobs makes blob GETs answer 307 to the same path on another host
// (http://localhost:<port>), as registries that keep blobs in object
// storage do.
func (r *Registry) RedirectBlobs() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.redirect = true
}

// Redirects counts the blob GETs sent on to storage.
func (r *Registry) Redirects() int64 { return r.redirects.Load() }

// RedirectedWithCredentials reports whether storage ever received an
// Authorization header or a cookie.
func (r *Registry) RedirectedWithCredentials() bool { return r.storageWithAuth.Load() }

// Slow delays every request whose path contains s by d.
func (r *Registry) Slow(s string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slow = append(r.slow, slowRule{contains: s, delay: d})
}

// RequireBearer makes the proxy answer every request that lacks
// "Authorization: Bearer token" with 401 and a challenge naming realm, as a
// registry whose token service is elsewhere does.
func (r *Registry) RequireBearer(realm, token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bearer = &bearerRule{realm: realm, token: token}
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	r.mu.Lock()
	bearer, redirect := r.bearer, r.redirect
	var delay time.Duration
	for _, s := range r.slow {
		if strings.Contains(req.URL.Path, s.contains) {
			delay += s.delay
		}
	}
	huge, isHuge := r.huge[req.URL.Path]
	st := r.stalls[req.URL.Path]
	if st != nil {
		delete(r.stalls, req.URL.Path)
	}
	r.mu.Unlock()

	if bearer != nil && req.Header.Get("Authorization") != "Bearer "+bearer.token {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="hostile"`, bearer.realm))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bearer token required"}]}`)
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	switch {
	case redirect && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:"):
		r.redirects.Add(1)
		http.Redirect(w, req, r.storage+req.URL.Path, http.StatusTemporaryRedirect)
	case isHuge:
		r.serveHuge(w, req, huge)
	case st != nil:
		r.serveStalled(w, req, st)
	case r.serveInjected(w, req):
	default:
		r.backend.ServeHTTP(w, req)
	}
}

func (r *Registry) serveHuge(w http.ResponseWriter, req *http.Request, h hugeBody) {
	w.Header().Set("Content-Type", h.mediaType)
	if h.declareLength {
		w.Header().Set("Content-Length", fmt.Sprint(h.size))
	}
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return
	}
	// A JSON document that goes on and on: {"schemaVersion":2,"x":"aaaa…"}.
	head, tail := []byte(`{"schemaVersion":2,"x":"`), []byte(`"}`)
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	left := h.size
	write := func(b []byte) bool {
		b = b[:min(int64(len(b)), left)]
		n, err := w.Write(b)
		r.hugeSent.Add(int64(n))
		left -= int64(n)
		return err == nil
	}
	if !write(head) {
		return
	}
	for left > int64(len(tail)) {
		if !write(chunk[:min(int64(len(chunk)), left-int64(len(tail)))]) {
			return
		}
	}
	write(tail)
}

func (r *Registry) serveStalled(w http.ResponseWriter, req *http.Request, s *stall) {
	rec := httptest.NewRecorder()
	r.backend.ServeHTTP(rec, req)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	if !s.declareLength {
		w.Header().Del("Content-Length")
	}
	w.WriteHeader(rec.Code)
	body := rec.Body.Bytes()
	half := len(body) / 2
	_, _ = w.Write(body[:half])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	close(s.reached)
	select {
	case <-s.release:
	case <-req.Context().Done():
		return
	}
	_, _ = w.Write(body[half:])
}

// serveInjected answers requests for injected referrers and their manifests.
func (r *Registry) serveInjected(w http.ResponseWriter, req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	rest, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	if !ok {
		return false
	}
	i := strings.LastIndex(rest, "/")
	j := strings.LastIndex(rest[:max(i, 0)], "/")
	if i < 0 || j < 0 {
		return false
	}
	kind, ref := rest[j+1:i], rest[i+1:]
	r.mu.Lock()
	raw, isManifest := r.injected[ref]
	descs, hasReferrers := r.referrers[ref]
	delay := r.slowInj
	r.mu.Unlock()
	switch {
	case kind == "manifests" && isManifest:
		if req.Method == http.MethodGet {
			r.injectedFetches.Add(1)
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
				return true
			}
		}
		w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
		w.Header().Set("Docker-Content-Digest", ref)
		w.Header().Set("Content-Length", fmt.Sprint(len(raw)))
		if req.Method == http.MethodGet {
			_, _ = w.Write(raw)
		}
		return true
	case kind == "referrers" && hasReferrers:
		// The real registry's referrers, then the injected ones.
		rec := httptest.NewRecorder()
		r.backend.ServeHTTP(rec, req)
		idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
		if rec.Code == http.StatusOK {
			_ = json.Unmarshal(rec.Body.Bytes(), &idx)
		}
		idx.Manifests = append(idx.Manifests, descs...)
		b, _ := json.Marshal(idx)
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		if req.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
		return true
	}
	return false
}

// Realm is a token service on another host than the registry (its URL uses
// "localhost", the registry's "127.0.0.1"). It issues token for user and
// password, and records whether it ever received credentials.
type Realm struct {
	// URL is the realm URL for a WWW-Authenticate challenge.
	URL string
	// Host is its host:port.
	Host string

	user, password, token string
	sawAuthorization      atomic.Bool
	sawPassword           atomic.Bool
	requests              atomic.Int64
}

// NewRealm starts a token service that lives until the test ends.
func NewRealm(t testing.TB, user, password, token string) *Realm {
	t.Helper()
	rl := &Realm{user: user, password: password, token: token}
	srv := httptest.NewServer(rl)
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	rl.Host = "localhost:" + port
	rl.URL = "http://" + rl.Host + "/token"
	return rl
}

func (rl *Realm) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rl.requests.Add(1)
	if req.Header.Get("Authorization") != "" {
		rl.sawAuthorization.Store(true)
	}
	u, p, basic := req.BasicAuth()
	if req.Method == http.MethodPost {
		_ = req.ParseForm()
		if req.PostForm.Get("password") != "" || req.PostForm.Get("refresh_token") != "" {
			rl.sawPassword.Store(true)
		}
	}
	if basic && p != "" {
		rl.sawPassword.Store(true)
	}
	if !basic || u != rl.user || p != rl.password {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": rl.token})
}

// SawCredentials reports whether any request carried an Authorization
// header or a password.
func (rl *Realm) SawCredentials() bool { return rl.sawAuthorization.Load() || rl.sawPassword.Load() }

// Requests counts the requests the realm received.
func (rl *Realm) Requests() int64 { return rl.requests.Load() }

// PushRandom pushes a random image to repo (through Direct) and returns its
// digest reference on the proxy.
func (r *Registry) PushRandom(t testing.TB, repo string) (name.Digest, v1.Image) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(r.Direct + "/" + repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(r.Host + "/" + repo + "@" + h.String())
	if err != nil {
		t.Fatal(err)
	}
	return d, img
}

// OnDirect is ref (on the proxy) named on Direct, for pushing fixtures next to it.
func (r *Registry) OnDirect(t testing.TB, ref name.Reference) name.Reference {
	t.Helper()
	out, err := name.ParseReference(r.Direct + strings.TrimPrefix(ref.String(), r.Host))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
