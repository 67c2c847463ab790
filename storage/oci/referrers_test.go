package oci

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pathCount is a base transport that counts the requests whose path
// contains part.
type pathCount struct {
	next http.RoundTripper
	part string
	n    atomic.Int64
}

func (c *pathCount) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, c.part) {
		c.n.Add(1)
	}
	return c.next.RoundTrip(req)
}

// imageInRegistry serves ggcr's registry, which has no referrers API (ggcr
// keeps the fallback index when writing), with one random image in
// team/app; it returns the host and the image's digest.
func imageInRegistry(t *testing.T) (string, name.Digest) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	d, _ := name.NewDigest(host + "/team/app@" + h.String())
	if err := remote.Write(d, img); err != nil {
		t.Fatal(err)
	}
	return host, d
}

// A registry without the referrers API, marked as such, is read from the
// fallback index directly: the same referrers, without the request that
// answers 404. Unmarked, ggcr asks the API first.
func TestNoReferrersAPIReadsTheFallbackIndex(t *testing.T) {
	host, d := imageInRegistry(t)
	ctx := context.Background()
	list := func(noAPI bool, subject *Resolved) ([]string, int64) {
		calls := &pathCount{next: DefaultTransport(), part: "/referrers/"}
		r, err := NewRegistries([]Host{{Name: host, NoReferrersAPI: noAPI}}, Options{Transport: calls})
		if err != nil {
			t.Fatal(err)
		}
		defer r.CloseIdleConnections()
		if subject != nil {
			res, err := r.Resolve(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, pt := range []string{"https://sigstore.dev/cosign/sign/v1", "https://slsa.dev/provenance/v1"} {
				if _, err := r.WriteBundleReferrer(ctx, res, []byte(`{"b":"`+pt+`"}`), bundleMediaType, pt); err != nil {
					t.Fatal(err)
				}
			}
			calls.n.Store(0)
		}
		got, err := r.Bundles(ctx, d, bundleMediaType, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range got {
			out = append(out, string(b.Bundle))
		}
		return out, calls.n.Load()
	}
	viaAPI, apiCalls := list(false, &Resolved{})
	direct, directCalls := list(true, nil)
	if len(viaAPI) != 2 || strings.Join(viaAPI, ",") != strings.Join(direct, ",") {
		t.Fatalf("referrers through the API path %q, from the fallback directly %q", viaAPI, direct)
	}
	if apiCalls == 0 || directCalls != 0 {
		t.Fatalf("requests to /referrers/: %d unmarked (want some), %d marked (want none)", apiCalls, directCalls)
	}
	// A subject with no referrers at all is an empty list, not an error.
	other, _ := name.NewDigest(host + "/team/app@sha256:" + strings.Repeat("0", 64))
	r, _ := NewRegistries([]Host{{Name: host, NoReferrersAPI: true}}, Options{})
	if got, err := r.Bundles(ctx, other, bundleMediaType, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("no fallback index: %d bundles, %v", len(got), err)
	}
}

// Prefetch reads a digest's .sig, .att and fallback-index tags into the
// decision's memo while it resolves the digest; the evidence reads then
// take them from the memo: each tag is read once. Without a memo it reads
// nothing.
func TestPrefetchReadsEachTagOnce(t *testing.T) {
	host, d := imageInRegistry(t)
	reads := &pathCount{next: DefaultTransport(), part: "/manifests/sha256-"}
	r, err := NewRegistries([]Host{{Name: host, NoReferrersAPI: true}}, Options{Transport: reads})
	if err != nil {
		t.Fatal(err)
	}
	defer r.CloseIdleConnections()

	r.Prefetch(context.Background(), d)
	time.Sleep(100 * time.Millisecond)
	if n := reads.n.Load(); n != 0 {
		t.Fatalf("Prefetch without a read memo made %d tag reads", n)
	}

	ctx := WithReadMemo(context.Background())
	r.Prefetch(ctx, d)
	if _, _, err := r.LegacySignatures(ctx, d, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LegacyAttestations(ctx, d, "", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Bundles(ctx, d, bundleMediaType, "", 10); err != nil {
		t.Fatal(err)
	}
	if n := reads.n.Load(); n != 3 {
		t.Fatalf("%d tag reads for .sig, .att and the fallback index with Prefetch; want 3", n)
	}
}
