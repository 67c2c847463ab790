package e2e

// Attacks a signer token, a copied image or an admission request can try
// against the gate, each reproduced against a real attestd and its
// embedded registry: each must now get a 4xx or a deny with a reason.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

func wantStatus(t *testing.T, what string, err error, status int, contains string) {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != status || !strings.Contains(ce.Message, contains) {
		t.Errorf("%s: %v, want %d naming %q", what, err, status, contains)
	}
}

// slsa1 returns a SLSA v1 predicate with the given builder id and build type.
func slsa1(builder, buildType string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"buildDefinition": map[string]any{"buildType": buildType, "externalParameters": map[string]any{"repository": "https://git.example/app"}},
		"runDetails":      map[string]any{"builder": map[string]any{"id": builder}},
	})
	return b
}

// TestForgedProvenanceIsRefused: a signer may not submit provenance that
// claims attestd as its builder, and a policy can require provenance that
// attestd wrote itself, which the signed origin tells apart.
func TestForgedProvenanceIsRefused(t *testing.T) {
	ctx := context.Background()
	g := startGate(t)
	_, d, _ := testenv.PushRandom(t, g.s.RegistryHost, "gate/forged", g.auth)
	subject := wire.Subject{Image: d.String()}

	for name, pred := range map[string]json.RawMessage{
		"v1 with attestd's builder id":         slsa1(builderID, "https://ci.example/build/v1"),
		"v1 with a longer builder id":          slsa1(builderID+"/evil", "https://ci.example/build/v1"),
		"v1 with the builder id in upper case": slsa1(strings.ToUpper(builderID), "https://ci.example/build/v1"),
		"v1 with attestd's build type":         slsa1("https://ci.example/builder", "https://attestd.dev/provenance/ci-report/v1"),
	} {
		_, err := g.signer.Attest(ctx, wire.AttestRequest{Subject: subject, PredicateType: attest.PredicateSLSAProvenanceV1, Predicate: pred})
		wantStatus(t, name, err, http.StatusForbidden, "written only by attestd")
	}
	v02 := json.RawMessage(`{"builder":{"id":"` + builderID + `"},"buildType":"https://ci.example/b","invocation":{},"materials":[]}`)
	_, err := g.signer.Attest(ctx, wire.AttestRequest{Subject: subject, PredicateType: "https://slsa.dev/provenance/v0.2", Predicate: v02})
	wantStatus(t, "v0.2 with attestd's builder id", err, http.StatusForbidden, "written only by attestd")
	if list, err := g.verifier.Attestations(ctx, d.Context().Name(), d.DigestStr(), ""); err != nil || len(list.Attestations) != 0 {
		t.Fatalf("a refused provenance was stored: %+v %v", list, err)
	}

	// What attestd writes is marked origin attestd inside the signature; a
	// predicate a caller submits, origin caller.
	if _, err := g.signer.Sign(ctx, d.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := g.signer.Attest(ctx, wire.AttestRequest{Subject: subject, PredicateType: attest.PredicateSLSAProvenanceV1, Predicate: slsa1("https://ci.example/builder", "https://ci.example/build/v1")}); err != nil {
		t.Fatal(err)
	}
	policy := []byte(`
name: attestd-origin
match: {images: ["` + g.s.RegistryHost + `/gate/forged"]}
signatures: {keys: [default]}
attestations:
  - predicateType: https://slsa.dev/provenance/v1
    origin: attestd
`)
	if _, err := g.s.Admin.PutPolicy(ctx, policy); err != nil {
		t.Fatal(err)
	}
	dec := g.verify(t, wire.VerifyRequest{Image: d.String(), Policy: "attestd-origin"})
	if dec.Allow || !strings.Contains(dec.Reason, "origin caller") {
		t.Errorf("caller-submitted provenance under a policy wanting origin attestd: %+v, want a deny naming the origin", dec)
	}
	if _, err := g.signer.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{subject}, Source: wire.Source{Repository: "https://git.example/app", Commit: "abc"}}); err != nil {
		t.Fatal(err)
	}
	if dec := g.verify(t, wire.VerifyRequest{Image: d.String(), Policy: "attestd-origin"}); !dec.Allow {
		t.Errorf("provenance attestd wrote, under a policy wanting origin attestd: %+v", dec)
	}
	list, err := g.verifier.Attestations(ctx, d.Context().Name(), d.DigestStr(), attest.PredicateSLSAProvenanceV1)
	if err != nil {
		t.Fatal(err)
	}
	origins := map[string]int{}
	for _, a := range list.Attestations {
		origins[a.Origin]++
	}
	if origins["attestd"] != 2 || origins["caller"] != 2 { // each in both layouts
		t.Errorf("origins listed: %v, want 2 attestd and 2 caller", origins)
	}
}

// TestTokenRepositoryScopes: a signer token scoped to team-a writes nothing
// in team-b, on any write route or through the embedded registry, and only
// an admin deletes from the registry.
func TestTokenRepositoryScopes(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	host := s.RegistryHost
	all := s.Token(t, "signer")
	teamA := s.ScopedToken(t, []string{host + "/team-a/**"}, "signer")
	allAuth := &authn.Basic{Username: "ci", Password: all}
	aAuth := &authn.Basic{Username: "ci", Password: teamA}
	_, inA, _ := testenv.PushRandom(t, host, "team-a/app", aAuth)
	_, inB, img := testenv.PushRandom(t, host, "team-b/app", allAuth)
	a := s.Client(t, teamA)

	t.Run("writes outside the scope are refused", func(t *testing.T) {
		_, err := a.Sign(ctx, inB.String())
		wantStatus(t, "sign in team-b", err, http.StatusForbidden, "may not write to "+host+"/team-b/app")
		_, err = a.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: inB.String()}, PredicateType: attest.PredicateCosignVuln, Predicate: fixture(t, "vuln.json")})
		wantStatus(t, "attest in team-b", err, http.StatusForbidden, "may not write")
		_, err = a.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: inA.String()}, {Image: inB.String()}}, Source: wire.Source{Repository: "r", Commit: "c"}})
		wantStatus(t, "provenance naming team-b", err, http.StatusForbidden, "may not write")
		_, err = a.Register(ctx, inB.String())
		wantStatus(t, "register in team-b", err, http.StatusForbidden, "may not write")
		_, err = a.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: inB.String()}})
		wantStatus(t, "SBOM in team-b", err, http.StatusForbidden, "may not write")
		_, err = a.Upload(ctx, strings.NewReader("hello"), client.UploadOptions{Repository: host + "/team-b/files", Kind: "file", Size: -1})
		wantStatus(t, "upload to team-b", err, http.StatusForbidden, "may not write")
		if sigs, err := s.Admin.Signatures(ctx, inB.String()); err != nil || len(sigs.Signatures) != 0 {
			t.Errorf("team-b has signatures after refused writes: %+v %v", sigs, err)
		}
	})

	t.Run("writes inside the scope work", func(t *testing.T) {
		if _, err := a.Sign(ctx, inA.String()); err != nil {
			t.Errorf("sign in team-a: %v", err)
		}
		if _, err := a.Upload(ctx, strings.NewReader("hello"), client.UploadOptions{Repository: host + "/team-a/files", Kind: "file", Size: -1}); err != nil {
			t.Errorf("upload to team-a: %v", err)
		}
	})

	t.Run("the embedded registry applies the scopes", func(t *testing.T) {
		b, _ := name.NewTag(host + "/team-b/app:evil")
		err := remote.Write(b, img, remote.WithAuth(aAuth))
		if err == nil || !strings.Contains(err.Error(), "DENIED") {
			t.Errorf("push to team-b with a team-a token: %v, want DENIED", err)
		}
		if _, err := remote.Head(b); err == nil {
			t.Error("the tag was pushed outside the token's scope")
		}
		ok, _ := name.NewTag(host + "/team-a/app:v2")
		if err := remote.Write(ok, img, remote.WithAuth(aAuth)); err != nil {
			t.Errorf("push to team-a: %v", err)
		}
	})

	t.Run("only an admin deletes from the registry", func(t *testing.T) {
		if err := remote.Delete(inB, remote.WithAuth(allAuth)); err == nil || !strings.Contains(err.Error(), "admin") {
			t.Errorf("signer deleting a manifest: %v, want DENIED naming admin", err)
		}
		if _, err := remote.Head(inB); err != nil {
			t.Errorf("the manifest is gone after a refused delete: %v", err)
		}
		if err := remote.Delete(inB, remote.WithAuth(&authn.Basic{Username: "admin", Password: s.AdminToken})); err != nil {
			t.Errorf("admin deleting a manifest: %v", err)
		}
	})

	t.Run("scopes are given at creation and listed", func(t *testing.T) {
		_, err := s.Admin.CreateToken(ctx, "unscoped", []string{"signer"}, nil)
		wantStatus(t, "signer token without repositories", err, http.StatusBadRequest, "repositories")
		_, err = s.Admin.CreateToken(ctx, "bad", []string{"signer"}, []string{"["})
		wantStatus(t, "bad pattern", err, http.StatusBadRequest, "pattern")
		ts, err := s.Admin.Tokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string][]string{}
		for _, x := range ts {
			seen[x.Name] = x.Repositories
		}
		if got := seen["bootstrap-admin"]; len(got) != 1 || got[0] != "**" {
			t.Errorf("admin token repositories: %v, want [**]", got)
		}
	})
}

// TestVerdictsAndKeyScopesStayInTheirRepository: an allow for team-a@D is
// not reused for team-b@D, and a signature by a key scoped to team-a does not
// count in team-b even when copied there with the image.
func TestVerdictsAndKeyScopesStayInTheirRepository(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) {
		c.Keys = []app.KeyConfig{{Name: "default", URI: "file://", Repositories: []string{"*/sec/team-a/**"}}}
	})
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, inA, img := testenv.PushRandom(t, s.RegistryHost, "sec/team-a/app", auth)
	if _, err := s.Client(t, signer).Sign(ctx, inA.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PutPolicy(ctx, []byte("name: sec\nmatch: {images: [\""+s.RegistryHost+"/sec/**\"]}\nsignatures: {keys: [default]}\n")); err != nil {
		t.Fatal(err)
	}
	verifier := s.Client(t, s.Token(t, "verifier"))
	verify := func(image string) wire.Decision {
		t.Helper()
		d, err := verifier.Verify(ctx, wire.VerifyRequest{Image: image, Policy: "sec"})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := verify(inA.String()); !d.Allow {
		t.Fatalf("signed in team-a: %+v", d)
	}
	if d := verify(inA.String()); !d.Allow || !d.Cached {
		t.Fatalf("second verify of team-a not cached: %+v", d)
	}

	// The same image, copied to team-b without its signature.
	inB := s.RegistryHost + "/sec/team-b/app@" + inA.DigestStr()
	bTag, _ := name.NewTag(s.RegistryHost + "/sec/team-b/app:v1")
	if err := remote.Write(bTag, img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	if d := verify(inB); d.Allow || d.Cached {
		t.Errorf("team-a's cached allow reused for team-b: %+v", d)
	}

	// Now with the signature copied too (cosign copy does this).
	bd, _ := name.NewDigest(inB)
	regs, err := oci.NewRegistries([]oci.Host{{Name: s.RegistryHost, Auth: auth}}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, sigs, err := regs.LegacySignatures(ctx, inA, 10)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("read team-a's signature: %v %d", err, len(sigs))
	}
	pw, _ := keys.Password(s.DataDir, "")
	k, err := keys.LoadFileKey("default", filepath.Join(s.DataDir, keys.PrivateKeyFile), pw)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := k.Verifier()
	if _, err := regs.WriteLegacySignature(ctx, bd, sigs[0].Payload, sigs[0].Signature, v); err != nil {
		t.Fatal(err)
	}
	d := verify(inB)
	if d.Allow || !strings.Contains(d.Reason, "scoped to") {
		t.Errorf("a team-a key's signature copied to team-b: %+v, want a deny naming the key's scope", d)
	}
	rep := mustSignatures(t, verifier, inB)
	if rep.Verified || len(rep.Signatures) != 1 || !strings.Contains(rep.Signatures[0].Reason, "scoped to") {
		t.Errorf("GET /v1/signatures in team-b: %+v", rep)
	}
}

// TestMalformedPredicateReason: a signed statement whose predicate is null
// is reported as such, not as "no key verifies it".
func TestMalformedPredicateReason(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "null/app", auth)
	stmt := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"` + strings.TrimPrefix(d.DigestStr(), "sha256:") + `"}}],"predicateType":"https://example.com/p","predicate":null}`)
	pw, _ := keys.Password(s.DataDir, "")
	k, err := keys.LoadFileKey("default", filepath.Join(s.DataDir, keys.PrivateKeyFile), pw)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(ctx, attest.PAE(attest.InTotoPayloadType, stmt))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := attest.Envelope(attest.InTotoPayloadType, stmt, sig)
	regs, err := oci.NewRegistries([]oci.Host{{Name: s.RegistryHost, Auth: auth}}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regs.WriteLegacyAttestation(ctx, d, env, "https://example.com/p"); err != nil {
		t.Fatal(err)
	}
	list, err := s.Client(t, signer).Attestations(ctx, d.Context().Name(), d.DigestStr(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Attestations) != 1 || list.Attestations[0].Valid || !strings.Contains(list.Attestations[0].Reason, "malformed") || strings.Contains(list.Attestations[0].Reason, "no key") {
		t.Errorf("null predicate: %+v, want a reason saying the signed content is malformed", list.Attestations)
	}
}

// review builds an AdmissionReview of one object.
func review(kind map[string]string, object string) []byte {
	k, _ := json.Marshal(kind)
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":` + string(k) +
		`,"namespace":"prod","operation":"CREATE","object":` + object + `}}`)
}

func reviewVerdict(t *testing.T, c *client.Client, body []byte, mutate bool) reviewResponse {
	t.Helper()
	out, err := c.Admission(context.Background(), body, mutate)
	if err != nil {
		t.Fatalf("admission: %v", err)
	}
	var r reviewResponse
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAdmissionFailsClosed: objects attestd cannot read, kinds it does not
// check and unpinned tags are denied with a reason.
func TestAdmissionFailsClosed(t *testing.T) {
	g := startGate(t)
	good := g.image(t, "adm-closed", true, true, false, false)
	goodTag := g.s.RegistryHost + "/gate/adm-closed:v1"
	pod := map[string]string{"group": "", "version": "v1", "kind": "Pod"}
	deploy := map[string]string{"group": "apps", "version": "v1", "kind": "Deployment"}
	podWith := func(image string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"` + image + `"}]}}`
	}

	for name, tc := range map[string]struct {
		kind   map[string]string
		object string
		want   string
	}{
		"a Pod without a spec":            {pod, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`, "no pod spec"},
		"a Pod with no containers":        {pod, `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[]}}`, "no pod spec"},
		"a Deployment without a spec":     {deploy, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}`, "no pod spec"},
		"a Pod that does not decode":      {pod, `{"spec":{"containers":"nope"}}`, "cannot read"},
		"no object":                       {pod, `null`, "no object"},
		"an empty image":                  {pod, podWith(""), "is empty"},
		"a kind attestd does not check":   {map[string]string{"group": "", "version": "v1", "kind": "ConfigMap"}, `{"data":{}}`, "not checked"},
		"a Pod in another API group":      {map[string]string{"group": "evil.example", "version": "v1", "kind": "Pod"}, podWith(good.String()), "not checked"},
		"a tag the mutating webhook left": {pod, podWith(goodTag), "not pinned"},
	} {
		t.Run(name, func(t *testing.T) {
			r := reviewVerdict(t, g.verifier, review(tc.kind, tc.object), false)
			if r.Response.Allowed || r.Response.Result == nil || !strings.Contains(r.Response.Result.Message, tc.want) {
				t.Errorf("allowed or unexplained: %+v, want a deny naming %q", r.Response, tc.want)
			}
		})
	}

	t.Run("a pinned image is allowed", func(t *testing.T) {
		if r := reviewVerdict(t, g.verifier, review(pod, podWith(good.String())), false); !r.Response.Allowed {
			t.Errorf("%+v", r.Response)
		}
	})
	t.Run("the mutating webhook pins the tag and the validating one then allows it", func(t *testing.T) {
		m := reviewVerdict(t, g.verifier, review(pod, podWith(goodTag)), true)
		var ops []map[string]string
		_ = json.Unmarshal(m.Response.Patch, &ops)
		if !m.Response.Allowed || len(ops) != 1 {
			t.Fatalf("mutate: %+v", m.Response)
		}
		if r := reviewVerdict(t, g.verifier, review(pod, podWith(ops[0]["value"])), false); !r.Response.Allowed {
			t.Errorf("pinned by the mutating webhook, then denied: %+v", r.Response)
		}
	})
	t.Run("a policy may allow tags explicitly", func(t *testing.T) {
		for _, n := range []string{"release", "release-warn", "release-audit"} {
			mode := strings.TrimPrefix(strings.TrimPrefix(n, "release"), "-")
			if mode == "" {
				mode = "enforce"
			}
			if _, err := g.s.Admin.PutPolicy(context.Background(), gatePolicy(g.s.RegistryHost, n, mode, "allowTags: true\n")); err != nil {
				t.Fatal(err)
			}
		}
		if r := reviewVerdict(t, g.verifier, review(pod, podWith(goodTag)), false); !r.Response.Allowed {
			t.Errorf("a tag under policies with allowTags: %+v", r.Response)
		}
	})
}

// TestAdmissionUnknownKindsByConfiguration: admission_unknown_kinds: allow
// admits kinds attestd does not check, with a warning.
func TestAdmissionUnknownKindsByConfiguration(t *testing.T) {
	s := testenv.Start(t, func(c *app.Config) { c.AdmissionUnknownKinds = "allow" })
	r := reviewVerdict(t, s.Client(t, s.Token(t, "verifier")), review(map[string]string{"group": "", "version": "v1", "kind": "ConfigMap"}, `{"data":{}}`), false)
	if !r.Response.Allowed || len(r.Response.Warnings) == 0 {
		t.Errorf("unknown kind with admission_unknown_kinds allow: %+v, want allowed with a warning", r.Response)
	}
}

// TestOverlappingPoliciesStrictestWins: a policy in audit mode whose name
// sorts first does not switch off an enforcing one covering the same images.
func TestOverlappingPoliciesStrictestWins(t *testing.T) {
	ctx := context.Background()
	g := startGate(t)
	unsigned := g.image(t, "overlap", false, false, false, false)
	audit := []byte("name: aaa-audit-everything\nmatch: {images: [\"" + g.s.RegistryHost + "/**\"], namespaces: [\"*\"]}\nsignatures: {keys: [default]}\nmode: audit\n")
	if _, err := g.s.Admin.PutPolicy(ctx, audit); err != nil {
		t.Fatal(err)
	}
	d := g.verify(t, wire.VerifyRequest{Image: unsigned.String(), Namespace: "prod"})
	if d.Allow || !strings.Contains(d.Reason, "release:") || len(d.Policies) != 4 {
		t.Errorf("unsigned image under an audit policy and an enforcing one: %+v, want a deny by release with every policy listed", d)
	}
	pod := map[string]string{"group": "", "version": "v1", "kind": "Pod"}
	r := reviewVerdict(t, g.verifier, review(pod, `{"spec":{"containers":[{"name":"c","image":"`+unsigned.String()+`"}]}}`), false)
	if r.Response.Allowed {
		t.Errorf("admission of an unsigned image with an audit policy sorting first: %+v", r.Response)
	}
	// Where only the audit policy covers the image, audit decides.
	if d := g.verify(t, wire.VerifyRequest{Image: unsigned.String(), Namespace: "dev"}); !d.Allow || !strings.Contains(d.Reason, "would deny") {
		t.Errorf("only the audit policy covers dev: %+v", d)
	}
}

// slow serves a real registry, each answer after a delay: a registry that
// is up but slow, which no real registry here can be made to be.
type slow struct {
	next  http.Handler
	delay time.Duration
}

func (h slow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(h.delay)
	h.next.ServeHTTP(w, r)
}

// TestEveryRequestHasADeadline: a sign through a slow registry ends with
// a 503 at request_timeout, not after minutes of slow round trips.
func TestEveryRequestHasADeadline(t *testing.T) {
	ctx := context.Background()
	reg := httptest.NewServer(slow{next: registry.New(), delay: 250 * time.Millisecond})
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	s := testenv.Start(t, func(c *app.Config) {
		c.Registries = []app.Registry{{Host: host}}
		c.RequestTimeout = time.Second
	})
	tag, _, _ := testenv.PushRandom(t, host, "slow/app", authn.Anonymous)
	_, err := s.Client(t, s.Token(t, "signer")).Sign(ctx, tag.String())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("sign through a slow registry: %v, want 503", err)
	}
}
