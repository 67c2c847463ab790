package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// TestGateKOfNAndKeyRevisions: 2 of {a, b} counts distinct keys only, and
// a key-set change (rotation, revocation) is never answered from an old verdict.
func TestGateKOfNAndKeyRevisions(t *testing.T) {
	ctx := context.Background()
	kms := testenv.StartLocalKMS(t)
	bURI := kms.CreateKey(t, "gate-b")
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{{Name: "a", URI: "file://"}, {Name: "b", URI: bURI}}
		c.DefaultKey = "a"
		c.KMSTimeout = 2 * time.Second
	})
	pol := fmt.Sprintf("name: two-keys\nmatch: {images: [\"%s/k/**\"]}\nsignatures: {keys: [a, b], threshold: 2}\n", s.RegistryHost)
	if _, err := s.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatal(err)
	}
	signer := s.Token(t, "signer")
	cl, vc := s.Client(t, signer), s.Client(t, s.Token(t, "verifier"))
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "k/app", auth)
	verify := func() wire.Decision {
		t.Helper()
		dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "two-keys"})
		if err != nil {
			t.Fatal(err)
		}
		return dec
	}

	if _, err := cl.SignWith(ctx, wire.SignRequest{Image: d.String(), Key: "a"}); err != nil {
		t.Fatal(err)
	}
	forgeLegacy(t, s, d, attest.SignMeta{SignedAt: time.Now()}, auth) // a second signature by a
	if dec := verify(); dec.Allow || !strings.Contains(dec.Reason, "1 distinct") {
		t.Errorf("two signatures by one key passed 2-of-2: %+v", dec)
	}
	if _, err := cl.SignWith(ctx, wire.SignRequest{Image: d.String(), Key: "b"}); err != nil {
		t.Fatal(err)
	}
	first := verify()
	if !first.Allow {
		t.Fatalf("signed by a and b: %+v", first)
	}
	if again := verify(); !again.Cached {
		t.Errorf("identical decision not cached: %+v", again)
	}
	if _, err := s.Admin.ActivateKey(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	rotated := verify()
	if rotated.Cached || rotated.KeySetRevision == first.KeySetRevision || !rotated.Allow {
		t.Errorf("after rotation: %+v (key-set revision was %d)", rotated, first.KeySetRevision)
	}
	if _, err := s.Admin.RevokeKey(ctx, "a", "retired hardware"); err != nil {
		t.Fatal(err)
	}
	if revoked := verify(); revoked.Allow || revoked.Cached || !strings.Contains(revoked.Reason, "revoked") {
		t.Errorf("after revoking a: %+v", revoked)
	}
}

// TestGateBoundedReads: 300 referrers on one digest, or a manifest over
// the size cap, are a fast deny, not a long read.
func TestGateBoundedReads(t *testing.T) {
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.WithReferrersSupport(true)))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	s := testenv.Start(t, func(c *app.Config) {
		c.Registries = []app.Registry{{Host: host}}
		c.MaxManifestBytes = 64 << 10
	})
	if _, err := s.Admin.PutPolicy(ctx, []byte(fmt.Sprintf("name: p\nmatch: {images: [\"%s/**\"]}\nsignatures: {keys: [default]}\n", host))); err != nil {
		t.Fatal(err)
	}
	vc := s.Client(t, s.Token(t, "verifier"))
	_, d, img := testenv.PushRandom(t, host, "flood/app", authn.Anonymous)
	desc, _ := img.Manifest()
	mt, _ := img.MediaType()
	sz, _ := img.Size()
	h, _ := img.Digest()
	_ = desc
	layer := static.NewLayer([]byte("{}"), attest.BundleMediaType)
	if err := remote.WriteLayer(d.Context(), layer); err != nil {
		t.Fatal(err)
	}
	ld, _ := layer.Digest()
	for i := 0; i < 300; i++ {
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
			Config:       v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: ld, Size: 2},
			Layers:       []v1.Descriptor{{MediaType: attest.BundleMediaType, Digest: ld, Size: 2}},
			Subject:      &v1.Descriptor{MediaType: mt, Digest: h, Size: sz},
			ArtifactType: attest.BundleMediaType,
			Annotations:  map[string]string{"dev.sigstore.bundle.predicateType": attest.CosignSignPredicateType, "n": fmt.Sprint(i)},
		}
		raw, _ := json.Marshal(m)
		md, _, _ := v1.SHA256(strings.NewReader(string(raw)))
		if err := remote.Put(d.Context().Digest(md.String()), rawTaggable{raw}); err != nil {
			t.Fatal(err)
		}
	}
	dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	// 300 referrers list in more than the 64 KiB cap: refused by the size
	// of the list or by their count, either way before any is fetched.
	if dec.Allow || (!strings.Contains(dec.Reason, "more than") && !strings.Contains(dec.Reason, "size limit")) {
		t.Errorf("300 referrers: %+v, want a bounded deny", dec)
	}

	big, _ := testenvRandomBig(t, host)
	dec, err = vc.Verify(ctx, wire.VerifyRequest{Image: big, Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allow || !strings.Contains(dec.Reason, "size limit") {
		t.Errorf("huge manifest: %+v, want a deny naming the size limit", dec)
	}
}

type rawTaggable struct{ raw []byte }

func (r rawTaggable) RawManifest() ([]byte, error) { return r.raw, nil }
func (r rawTaggable) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

// testenvRandomBig pushes an image whose manifest is over 64 KiB (many layers).
func testenvRandomBig(t *testing.T, host string) (string, error) {
	t.Helper()
	tag, _, _ := pushLayers(t, host, "flood/big", 600)
	return tag, nil
}

// TestGateTimeoutDenies: a registry that never answers gives a deny within
// the gate's deadline, never a hang or an allow.
func TestGateTimeoutDenies(t *testing.T) {
	ctx := context.Background()
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })
	host := strings.TrimPrefix(slow.URL, "http://")
	s := testenv.Start(t, func(c *app.Config) {
		c.Registries = []app.Registry{{Host: host}}
		c.GateTimeout = 500 * time.Millisecond
	})
	if _, err := s.Admin.PutPolicy(ctx, []byte(fmt.Sprintf("name: p\nmatch: {images: [\"%s/**\"]}\nsignatures: {keys: [default]}\n", host))); err != nil {
		t.Fatal(err)
	}
	dec, err := s.Client(t, s.Token(t, "verifier")).Verify(ctx, wire.VerifyRequest{Image: host + "/slow/app:v1", Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if dec.Allow || !strings.Contains(dec.Reason, "deadline") {
		t.Errorf("hanging registry: %+v, want a deny naming the deadline", dec)
	}
}

// TestCountCaps: an object with more images, or a provenance with more
// subjects, than attestd reads is refused, not worked through.
func TestCountCaps(t *testing.T) {
	g := startGate(t)
	ctx := context.Background()
	var containers []string
	for i := 0; i < 65; i++ {
		containers = append(containers, fmt.Sprintf(`{"name":"c%d","image":"%s/gate/x:%d"}`, i, g.s.RegistryHost, i))
	}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"namespace":"prod","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"many"},"spec":{"containers":[` +
		strings.Join(containers, ",") + `]}}}}`
	out, err := g.verifier.Admission(ctx, []byte(review), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"allowed":false`) || !strings.Contains(string(out), "more than 64") {
		t.Errorf("65 images: %s", out)
	}
	var subjects []wire.Subject
	for i := 0; i < 65; i++ {
		subjects = append(subjects, wire.Subject{Image: fmt.Sprintf("%s/gate/x:%d", g.s.RegistryHost, i)})
	}
	_, err = g.signer.Provenance(ctx, wire.ProvenanceRequest{Subjects: subjects, Source: wire.Source{Repository: "r", Commit: "c"}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "64") {
		t.Errorf("65 provenance subjects: %v", err)
	}
}
