package oci

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/internal/testenv/hostile"
)

// counting is a base transport that counts the response-body bytes read
// through it, and the GETs of blobs: what attestd actually took in.
type counting struct {
	next     http.RoundTripper
	read     atomic.Int64
	blobGets atomic.Int64
}

func (c *counting) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") && !strings.Contains(req.URL.Path, "/uploads/") {
		c.blobGets.Add(1)
	}
	resp, err := c.next.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// newRegs returns Registries for the hostile registry's proxy, reading
// through a counting transport.
func newRegs(t *testing.T, reg *hostile.Registry, o Options, hosts ...Host) (*Registries, *counting) {
	t.Helper()
	c := &counting{next: DefaultTransport()}
	o.Transport = c
	if len(hosts) == 0 {
		hosts = []Host{{Name: reg.Host}}
	}
	r, err := NewRegistries(hosts, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.CloseIdleConnections)
	return r, c
}

func parseDigest(t *testing.T, r *Registries, s string) name.Digest {
	t.Helper()
	ref, err := r.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := ref.(name.Digest)
	if !ok {
		t.Fatalf("%s is not a digest reference", s)
	}
	return d
}

// TestManifestCapBeforeBuffering: a 64 MiB manifest is refused from its
// Content-Length without a byte read, and one without a length is cut off
// at the cap: ggcr alone would read up to 100 MiB into memory first.
func TestManifestCapBeforeBuffering(t *testing.T) {
	const cap = 1 << 20
	for _, tc := range []struct {
		name          string
		declareLength bool
		maxRead       int64
	}{
		{"content-length", true, 0},
		{"no content-length", false, cap + 64<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := hostile.New(t)
			r, c := newRegs(t, reg, Options{MaxManifestBytes: cap})
			d := parseDigest(t, r, reg.HugeManifestRef("huge/app", 64<<20, tc.declareLength))
			_, err := r.Resolve(context.Background(), d)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Resolve of a 64 MiB manifest: %v, want ErrTooLarge", err)
			}
			if got := c.read.Load(); got > tc.maxRead {
				t.Errorf("read %d bytes of a manifest over the %d-byte cap, want at most %d", got, cap, tc.maxRead)
			}
		})
	}
}

// TestReferrerListCap: the referrers list is a manifest-sized read too.
func TestReferrerListCap(t *testing.T) {
	const cap = 64 << 10
	reg := hostile.New(t)
	r, c := newRegs(t, reg, Options{MaxManifestBytes: cap})
	d, _ := reg.PushRandom(t, "many/app")
	reg.InjectReferrers(t, d, 2000, bundleMediaType, "https://sigstore.dev/cosign/sign/v1")
	d = parseDigest(t, r, d.String())
	_, err := r.Bundles(context.Background(), d, bundleMediaType, "", 100_000)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Bundles over a %d-byte referrer list: %v, want ErrTooLarge", cap, err)
	}
	if got := c.read.Load(); got > 2*cap {
		t.Errorf("read %d bytes for a referrer list capped at %d", got, cap)
	}
}

const bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// TestBundlesCountReferrersFirst: more candidates than max is refused from
// the list, before any referrer manifest is fetched.
func TestBundlesCountReferrersFirst(t *testing.T) {
	reg := hostile.New(t)
	r, _ := newRegs(t, reg, Options{})
	d, _ := reg.PushRandom(t, "flood/app")
	reg.InjectReferrers(t, d, 300, bundleMediaType, "https://sigstore.dev/cosign/sign/v1")
	d = parseDigest(t, r, d.String())
	_, err := r.Bundles(context.Background(), d, bundleMediaType, "https://sigstore.dev/cosign/sign/v1", 256)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than 256") {
		t.Fatalf("300 referrers, max 256: %v, want ErrTooLarge", err)
	}
	if n := reg.InjectedFetches(); n != 0 {
		t.Errorf("fetched %d referrer manifests before refusing the list", n)
	}
	// Under the limit they are read.
	if got, err := r.Bundles(context.Background(), d, bundleMediaType, "https://sigstore.dev/cosign/sign/v1", 300); err != nil || len(got) != 300 {
		t.Errorf("300 referrers, max 300: %d bundles, %v", len(got), err)
	}
}

// TestLegacyLayersCheckedBeforeFetching: a legacy .att or .sig image with
// more layers than max, or a layer over the blob cap, is refused from its
// manifest before any layer is fetched.
func TestLegacyLayersCheckedBeforeFetching(t *testing.T) {
	for _, tc := range []struct {
		name   string
		suffix string
		layers func(small v1.Descriptor) []v1.Descriptor
		read   func(r *Registries, d name.Digest) error
	}{
		{"att: a layer over the cap after a good one", ".att", func(small v1.Descriptor) []v1.Descriptor {
			big := small
			big.Size = 100 << 20
			return []v1.Descriptor{small, big}
		}, func(r *Registries, d name.Digest) error {
			_, err := r.LegacyAttestations(context.Background(), d, "", 10)
			return err
		}},
		{"att: more layers than max", ".att", func(small v1.Descriptor) []v1.Descriptor {
			return []v1.Descriptor{small, small, small}
		}, func(r *Registries, d name.Digest) error {
			_, err := r.LegacyAttestations(context.Background(), d, "", 2)
			return err
		}},
		{"sig: more layers than max", ".sig", func(small v1.Descriptor) []v1.Descriptor {
			return []v1.Descriptor{small, small, small}
		}, func(r *Registries, d name.Digest) error {
			_, _, err := r.LegacySignatures(context.Background(), d, 2)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := hostile.New(t)
			r, c := newRegs(t, reg, Options{})
			d, _ := reg.PushRandom(t, "legacy/app")
			layer := static.NewLayer([]byte(`{"payloadType":"x","payload":"","signatures":[]}`), "application/vnd.dsse.envelope.v1+json")
			direct := reg.OnDirect(t, d).Context()
			if err := remote.WriteLayer(direct, layer); err != nil {
				t.Fatal(err)
			}
			ld, _ := layer.Digest()
			sz, _ := layer.Size()
			small := v1.Descriptor{MediaType: "application/vnd.dsse.envelope.v1+json", Digest: ld, Size: sz,
				Annotations: map[string]string{"predicateType": "p", "dev.cosignproject.cosign/signature": ""}}
			putManifest(t, direct.Tag(strings.Replace(d.DigestStr(), ":", "-", 1)+tc.suffix), v1.Manifest{
				SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
				Config: v1.Descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: ld, Size: sz},
				Layers: tc.layers(small),
			})
			err := tc.read(r, parseDigest(t, r, d.String()))
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("read: %v, want ErrTooLarge", err)
			}
			if n := c.blobGets.Load(); n != 0 {
				t.Errorf("%d blobs fetched before the manifest was refused", n)
			}
		})
	}
}

func putManifest(t *testing.T, ref name.Reference, m v1.Manifest) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref, rawManifest{raw: raw, mt: types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}

// TestBlobCap: a blob attestd (or cosign, through attestd's transport)
// reads into memory is capped like a manifest. Here an existing legacy
// .sig image whose config blob is over the cap: attaching a signature
// reads that config.
func TestBlobCap(t *testing.T) {
	const cap = 256 << 10
	reg := hostile.New(t)
	r, c := newRegs(t, reg, Options{})
	r.maxBlob, r.limits.blob = cap, cap
	d, _ := reg.PushRandom(t, "blob/app")
	cfg, err := empty.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Author = strings.Repeat("a", 1<<20)
	sigImg, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sigTag := reg.OnDirect(t, d).Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if err := remote.Write(sigTag, sigImg); err != nil {
		t.Fatal(err)
	}

	sv, payload, sig := signed(t)
	_, err = r.WriteLegacySignature(context.Background(), parseDigest(t, r, d.String()), payload, sig, sv)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("signature attached over a 1 MiB config blob: %v, want ErrTooLarge", err)
	}
	if got := c.read.Load(); got > cap {
		t.Errorf("read %d bytes, more than the %d-byte blob cap", got, cap)
	}
}

func signed(t *testing.T) (signature.SignerVerifier, []byte, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(k, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"critical":{}}`)
	sig, err := sv.SignMessage(strings.NewReader(string(payload)))
	if err != nil {
		t.Fatal(err)
	}
	return sv, payload, sig
}

// TestReadBudget: while one read holds the whole budget, another waits,
// and past its deadline it fails as ErrUnavailable; closing the first body
// returns its share.
func TestReadBudget(t *testing.T) {
	const budget = 64 << 10
	reg := hostile.New(t)
	r, _ := newRegs(t, reg, Options{MaxManifestBytes: budget, ReadBudgetBytes: budget})
	a, _ := reg.PushRandom(t, "budget/a")
	b, _ := reg.PushRandom(t, "budget/b")
	a, b = parseDigest(t, r, a.String()), parseDigest(t, r, b.String())
	// A's manifest comes without a length: it is budgeted at the cap, the whole budget.
	reached, release := reg.Stall("/v2/budget/a/manifests/"+a.DigestStr(), false)
	done := make(chan error, 1)
	go func() {
		_, err := r.Manifest(context.Background(), a)
		done <- err
	}()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled read never started")
	}
	// The stalled body reached the client; wait until its read holds the budget.
	for deadline := time.Now().Add(10 * time.Second); r.limits.budget.sem.TryAcquire(1); {
		r.limits.budget.sem.Release(1)
		if time.Now().After(deadline) {
			t.Fatal("the stalled read never took the budget")
		}
		time.Sleep(time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := r.Manifest(ctx, b)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "read budget") {
		t.Fatalf("read while the budget is spent: %v, want ErrUnavailable naming the budget and the deadline", err)
	}

	release()
	if err := <-done; err != nil {
		t.Fatalf("the stalled read: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.Manifest(ctx, b); err != nil {
		t.Errorf("read after the first body was closed (its budget returned): %v", err)
	}
}

// TestCredentialsStayWithRegistry: a registry whose challenge names a token
// realm on another host does not get its credentials sent there, unless
// that host is configured as its token realm.
func TestCredentialsStayWithRegistry(t *testing.T) {
	for _, configured := range []bool{false, true} {
		t.Run(fmt.Sprintf("token_realms configured: %v", configured), func(t *testing.T) {
			reg := hostile.New(t)
			realm := hostile.NewRealm(t, "ci", "s3cret", "tok")
			d, _ := reg.PushRandom(t, "realm/app")
			reg.RequireBearer(realm.URL, "tok")
			h := Host{Name: reg.Host, Auth: &authn.Basic{Username: "ci", Password: "s3cret"}}
			if configured {
				h.TokenRealms = []string{realm.Host}
			}
			r, _ := newRegs(t, reg, Options{}, h)
			_, err := r.Resolve(context.Background(), parseDigest(t, r, d.String()))
			if configured {
				if err != nil || !realm.SawCredentials() {
					t.Fatalf("with the realm configured: %v (realm saw credentials: %v)", err, realm.SawCredentials())
				}
				return
			}
			if !errors.Is(err, ErrForeignHost) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), realm.Host) || !strings.Contains(err.Error(), "token_realms") {
				t.Fatalf("foreign realm: %v, want ErrForeignHost naming %s and token_realms", err, realm.Host)
			}
			if realm.Requests() != 0 || realm.SawCredentials() {
				t.Errorf("the foreign realm got %d requests (credentials: %v)", realm.Requests(), realm.SawCredentials())
			}
		})
	}
}

// TestGuardHosts: what the per-host transport lets through to which host.
func TestGuardHosts(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	other := strings.TrimPrefix(srv.URL, "http://")
	g := &guard{registry: "registry.example", allowed: []string{"registry.example", "auth.example:8443"},
		next: http.DefaultTransport, limits: &readLimits{manifest: 1 << 20, blob: 1 << 20, budget: newReadBudget(1 << 20)}}
	redirected := func(method, auth string) *http.Request {
		prev := httptest.NewRequest(http.MethodGet, "https://registry.example/v2/a/blobs/sha256:00", nil)
		req := httptest.NewRequest(method, srv.URL+"/blob", nil)
		req.RequestURI = ""
		req.Response = &http.Response{Request: prev, StatusCode: http.StatusTemporaryRedirect}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return req
	}
	plain := func(method, u, auth string) *http.Request {
		req := httptest.NewRequest(method, u, nil)
		req.RequestURI = ""
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return req
	}
	for _, tc := range []struct {
		name  string
		req   *http.Request
		allow bool
	}{
		{"token request to a foreign realm", plain(http.MethodGet, srv.URL+"/token", "Basic Y2k6czNjcmV0"), false},
		{"anonymous token request to a foreign realm", plain(http.MethodGet, srv.URL+"/token", ""), false},
		{"oauth POST to a foreign realm", plain(http.MethodPost, srv.URL+"/token", ""), false},
		{"credential-free GET following a redirect", redirected(http.MethodGet, ""), true},
		{"credential-free HEAD following a redirect", redirected(http.MethodHead, ""), true},
		{"redirect carrying credentials", redirected(http.MethodGet, "Bearer tok"), false},
		{"POST following a redirect", redirected(http.MethodPost, ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			resp, err := g.RoundTrip(tc.req)
			if resp != nil {
				_ = resp.Body.Close()
			}
			sent := hits.Load() > before
			if tc.allow && (err != nil || !sent) {
				t.Errorf("refused: %v", err)
			}
			if !tc.allow && (!errors.Is(err, ErrForeignHost) || sent || !strings.Contains(err.Error(), other)) {
				t.Errorf("let through to %s (sent: %v, err: %v)", other, sent, err)
			}
		})
	}
	for _, u := range []string{"https://registry.example:443/v2/", "https://REGISTRY.example/v2/", "https://auth.example:8443/token"} {
		pu, _ := url.Parse(u)
		if !g.hostAllowed(pu) {
			t.Errorf("%s refused", u)
		}
	}
	for _, u := range []string{"https://registry.example:444/v2/", "https://auth.example/token", "https://registry.example.evil/v2/"} {
		pu, _ := url.Parse(u)
		if g.hostAllowed(pu) {
			t.Errorf("%s allowed", u)
		}
	}
}

// TestBlobRedirectToStorage: a blob download the registry redirects to
// another host (its storage) is followed, without credentials.
func TestBlobRedirectToStorage(t *testing.T) {
	reg := hostile.New(t)
	realm := hostile.NewRealm(t, "ci", "s3cret", "tok")
	d, img := reg.PushRandom(t, "redirect/app")
	reg.RequireBearer(realm.URL, "tok")
	reg.RedirectBlobs()
	r, c := newRegs(t, reg, Options{}, Host{Name: reg.Host, Auth: &authn.Basic{Username: "ci", Password: "s3cret"}, TokenRealms: []string{realm.Host}})
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	l := m.Layers[0]
	d = parseDigest(t, r, d.String())
	opts, err := r.remoteOptions(context.Background(), d.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.fetchBlob(d.Context(), l.Digest.String(), l.Size, opts)
	if err != nil || int64(len(b)) != l.Size {
		t.Fatalf("redirected blob: %d bytes, %v", len(b), err)
	}
	if reg.Redirects() == 0 || c.blobGets.Load() < 2 {
		t.Errorf("the blob was not redirected (%d redirects, %d blob GETs)", reg.Redirects(), c.blobGets.Load())
	}
	if reg.RedirectedWithCredentials() {
		t.Error("credentials followed the redirect to storage")
	}
}

// TestLegacyTagReadCapped: a `.sig` or `.att` tag is read with one GET (no
// HEAD first); a 64 MiB manifest there is refused at the cap, from its
// Content-Length or cut off without one, and nothing past the cap is kept.
func TestLegacyTagReadCapped(t *testing.T) {
	const cap = 1 << 20
	for _, declare := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", declare), func(t *testing.T) {
			reg := hostile.New(t)
			r, c := newRegs(t, reg, Options{MaxManifestBytes: cap})
			d, _ := reg.PushRandom(t, "huge/app")
			d = parseDigest(t, r, d.String())
			hex := strings.TrimPrefix(d.DigestStr(), "sha256:")
			reg.Huge("/v2/huge/app/manifests/sha256-"+hex+".sig", 64<<20, declare)
			reg.Huge("/v2/huge/app/manifests/sha256-"+hex+".att", 64<<20, declare)
			if _, _, err := r.LegacySignatures(context.Background(), d, 10); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("LegacySignatures over a 64 MiB .sig manifest: %v, want ErrTooLarge", err)
			}
			if _, err := r.LegacyAttestations(context.Background(), d, "", 10); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("LegacyAttestations over a 64 MiB .att manifest: %v, want ErrTooLarge", err)
			}
			if got := c.read.Load(); got > 2*(cap+64<<10) {
				t.Errorf("read %d bytes for two manifests over the %d-byte cap", got, cap)
			}
		})
	}
}
