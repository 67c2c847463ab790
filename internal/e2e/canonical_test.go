package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// TestCanonicalReferencesOnly: a key scoped to team-a/** does not sign
// team-b's image through a path with "..", "." or an empty segment; such a
// reference is refused with a 400 before any request, and nothing is
// written in team-b.
func TestCanonicalReferencesOnly(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{{Name: "team-a", URI: "file://", Repositories: []string{"*/team-a/**"}}}
	})
	signer := s.Token(t, "signer")
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "team-b/app", &authn.Basic{Username: "ci", Password: signer})
	cl := s.Client(t, signer)
	for _, ref := range []string{
		s.RegistryHost + "/team-a/../team-b/app@" + d.DigestStr(),
		s.RegistryHost + "/team-a/./../team-b/app@" + d.DigestStr(),
		s.RegistryHost + "/team-a//../team-b/app@" + d.DigestStr(),
		s.RegistryHost + "/./team-a/app@" + d.DigestStr(),
		s.RegistryHost + "/team-a//app@" + d.DigestStr(),
	} {
		_, err := cl.Sign(ctx, ref)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "canonical") {
			t.Errorf("sign %s: %v, want 400 naming the canonical form", ref, err)
		}
	}
	sigTag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if _, err := remote.Head(sigTag); err == nil {
		t.Error("a signature landed in team-b through a team-a path")
	}
	// The canonical name is judged by the key's scope, as before.
	if _, err := cl.Sign(ctx, d.String()); err == nil {
		t.Error("team-a's key signed team-b's image")
	}
}

// TestEmbeddedRegistryRefusesDotSegments: the embedded registry serves no
// repository through a path with an empty, "." or ".." segment: no pull,
// and no push or delete even with a signer's credentials. distribution's
// router alone answers such a PUT or DELETE with a 301 to the cleaned path
// (which a client that keeps the method on redirects then writes);
// registryAccess refuses it with a 400 instead, and nothing is written.
func TestEmbeddedRegistryRefusesDotSegments(t *testing.T) {
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, d, img := testenv.PushRandom(t, s.RegistryHost, "b/app", auth)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v2/a/../b/app/manifests/" + d.DigestStr()},
		{http.MethodHead, "/v2/a/../b/app/manifests/" + d.DigestStr()},
		{http.MethodGet, "/v2/a/%2e%2e/b/app/manifests/" + d.DigestStr()},
		{http.MethodGet, "/v2/./b/app/manifests/" + d.DigestStr()},
		{http.MethodGet, "/v2/b//app/manifests/" + d.DigestStr()},
		{http.MethodPut, "/v2/a/../b/app/manifests/planted"},
		{http.MethodPut, "/v2/b/./app/manifests/planted"},
		{http.MethodPut, "/v2/b//app/manifests/planted"},
		{http.MethodDelete, "/v2/a/../b/app/manifests/" + d.DigestStr()},
		{http.MethodPost, "/v2/a/../b/app/blobs/uploads/"},
	} {
		req, err := http.NewRequest(tc.method, s.URL+tc.path, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("ci", signer)
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s: %d (Location %q), want 400", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	planted, _ := name.NewTag(s.RegistryHost + "/b/app:planted")
	if _, err := remote.Head(planted); err == nil {
		t.Error("a manifest was written through a path with dot segments")
	}
	if _, err := remote.Head(d); err != nil {
		t.Errorf("the image was deleted through a path with dot segments: %v", err)
	}
}
