package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// tampering serves a real registry but swaps the bytes of manifests fetched
// by digest, as a compromised or broken registry would. No real registry
// can be made to do this, so this is the one place a fault is injected.
type tampering struct{ next http.Handler }

func (h tampering) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/sha256:") {
		rec := httptest.NewRecorder()
		h.next.ServeHTTP(rec, r)
		body := bytes.Replace(rec.Body.Bytes(), []byte(`"schemaVersion":2`), []byte(`"schemaVersion": 2`), 1)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, bytes.NewReader(body))
		return
	}
	h.next.ServeHTTP(w, r)
}

func TestRegistryThatLiesIsRefused(t *testing.T) {
	ctx := context.Background()
	reg := httptest.NewServer(tampering{registry.New()})
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	s := testenv.Start(t, func(c *app.Config) { c.Registries = []app.Registry{{Host: host}} })
	tag, d, _ := testenv.PushRandom(t, host, "lie/app", authn.Anonymous)

	_, err := s.Client(t, s.Token(t, "signer")).Sign(ctx, tag.String())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadGateway || ce.Code != "UPSTREAM_FAILURE" {
		t.Fatalf("sign on a registry returning other bytes: %v, want 502 UPSTREAM_FAILURE", err)
	}
	sigTag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if _, err := remote.Head(sigTag); err == nil {
		t.Error("a signature was stored for content that did not match its digest")
	}
}

func TestManifestSizeCap(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) { c.MaxManifestBytes = 200 })
	signer := s.Token(t, "signer")
	tag, d, _ := testenv.PushRandom(t, s.RegistryHost, "big/app", &authn.Basic{Username: "ci", Password: signer})
	_, err := s.Client(t, signer).Sign(ctx, tag.String())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "size limit") {
		t.Fatalf("sign of a manifest over the cap: %v, want 400 naming the size limit", err)
	}
	sigTag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if _, err := remote.Head(sigTag); err == nil {
		t.Error("a signature was stored despite the cap")
	}
}
