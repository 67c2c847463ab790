package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// sbomImage builds the SBOM test image: a dpkg database (base-files, bash,
// libc6 of Debian 12) and a Go binary.
func sbomImage(t testing.TB) v1.Image { return testenv.SBOMImage(t) }

func layerOf(t testing.TB, files map[string][]byte) v1.Layer { return testenv.Layer(t, files) }

func waitJob(t *testing.T, cl *client.Client, id int64, within time.Duration) wire.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := cl.Job(context.Background(), id)
		if err != nil {
			t.Fatalf("job %d: %v", id, err)
		}
		switch j.State {
		case "completed", "cancelled", "discarded":
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d still %s (%s) after %s; errors: %v", id, j.State, j.Stage, within, j.Errors)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSBOMFromRealPackageMetadata(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	cl := s.Client(t, signer)
	tag, _ := name.NewTag(s.RegistryHost + "/sbom/app:v1")
	img := sbomImage(t)
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "ci", Password: signer})); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	d := tag.Context().Digest(h.String())

	j, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: tag.String()}, Formats: []string{"spdx-json", "cyclonedx-json"}})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if j.ID == 0 || j.Image != d.String() {
		t.Fatalf("job %+v", j)
	}
	done := waitJob(t, cl, j.ID, 20*time.Second)
	if done.State != "completed" || len(done.Results) != 2 {
		t.Fatalf("job ended %+v", done)
	}

	list, err := cl.Attestations(ctx, d.Context().Name(), d.DigestStr(), attest.PredicateSPDX)
	if err != nil || len(list.Attestations) == 0 || !list.Attestations[0].Valid {
		t.Fatalf("SPDX attestation: %+v %v", list, err)
	}
	var env struct{ Payload string }
	_ = json.Unmarshal(list.Attestations[0].Envelope, &env)
	p, _ := base64.StdEncoding.DecodeString(env.Payload)
	st, err := attest.ParseStatement(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name         string `json:"name"`
			VersionInfo  string `json:"versionInfo"`
			ExternalRefs []struct {
				Type    string `json:"referenceType"`
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(st.Predicate, &doc); err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, pk := range doc.Packages {
		for _, r := range pk.ExternalRefs {
			if r.Type == "purl" {
				found[pk.Name+"@"+pk.VersionInfo] = r.Locator
			}
		}
	}
	for pkg, purl := range map[string]string{
		"bash@5.2.15-2+b2":                               "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64",
		"libc6@2.36-9+deb12u4":                           "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64",
		"base-files@12.4+deb12u5":                        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64",
		"github.com/google/go-containerregistry@v0.22.1": "pkg:golang/github.com/google/go-containerregistry@v0.22.1",
	} {
		got, ok := found[pkg]
		if !ok || !strings.HasPrefix(got, purl) {
			t.Errorf("SPDX has %s with purl %q, want %s…", pkg, got, purl)
		}
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion %s", doc.SPDXVersion)
	}

	t.Run("cosign verify-attestation accepts it", func(t *testing.T) {
		out, err := cosigns(t)[1].run(t, "verify-attestation", "--key", s.PublicKeyPEM(t), "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--type", "spdxjson", d.String())
		if err != nil || !contains(printedPredicateTypes(out), attest.PredicateSPDX) {
			t.Errorf("cosign: %v\n%s", err, out)
		}
	})

	t.Run("a repeat returns the stored result", func(t *testing.T) {
		again, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}, Formats: []string{"cyclonedx-json", "spdx-json"}})
		if err != nil || again.State != "completed" || again.ID != j.ID || len(again.Results) != 2 {
			t.Errorf("repeat: %+v %v", again, err)
		}
	})
}

func TestSBOMLimitsFailTheJob(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) { c.SBOMMaxBytes = 1024 })
	signer := s.Token(t, "signer")
	cl := s.Client(t, signer)
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "sbom/big", &authn.Basic{Username: "ci", Password: signer})
	j, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, cl, j.ID, time.Minute)
	if done.State != "cancelled" || len(done.Errors) == 0 || !strings.Contains(strings.Join(done.Errors, " "), "limit") {
		t.Errorf("job over the byte limit: %+v", done)
	}
	var ce *client.Error
	if _, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}, Formats: []string{"swid"}}); !errorsAs(err, &ce) || ce.Status != 400 {
		t.Errorf("unknown format: %v", err)
	}
}

// stallingRegistry is a real registry behind a switch that holds blob
// downloads until released: a slow registry, to stop attestd mid-job.
type stallingRegistry struct {
	next    http.Handler
	mu      sync.Mutex
	release chan struct{}
	stalled atomic.Int64
}

func (s *stallingRegistry) stall() {
	s.mu.Lock()
	s.release = make(chan struct{})
	s.mu.Unlock()
}

func (s *stallingRegistry) resume() {
	s.mu.Lock()
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
	s.mu.Unlock()
}

func (s *stallingRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ch := s.release
	s.mu.Unlock()
	if ch != nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
		s.stalled.Add(1)
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
	s.next.ServeHTTP(w, r)
}

// TestSBOMJobSurvivesARestart stops attestd while a job is cataloging; the
// job is retried and completes when attestd runs again on the same data.
func TestSBOMJobSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	proxy := &stallingRegistry{next: registry.New()}
	reg := httptest.NewServer(proxy)
	t.Cleanup(reg.Close)
	t.Cleanup(proxy.resume)
	host := strings.TrimPrefix(reg.URL, "http://")
	dir := t.TempDir()
	cfg := func(c *app.Config) { c.DataDir = dir; c.Registries = []app.Registry{{Host: host}} }

	s1 := testenv.Start(t, cfg)
	_, d, _ := testenv.PushRandom(t, host, "restart/app", authn.Anonymous)
	proxy.stall()
	j, err := s1.Client(t, s1.Token(t, "signer")).SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; proxy.stalled.Load() == 0; i++ {
		if i > 200 {
			t.Fatal("the job never started reading the image")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s1.Stop() // mid-job
	proxy.resume()

	s2 := testenv.Start(t, cfg)
	done := waitJob(t, s2.Client(t, s2.Token(t, "verifier")), j.ID, 2*time.Minute)
	if done.State != "completed" || done.Attempt < 2 || len(done.Results) != 1 {
		t.Errorf("after a restart mid-job: %+v, want completed on a later attempt", done)
	}
}
