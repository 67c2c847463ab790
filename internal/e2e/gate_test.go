package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

const builderID = "https://builder.example/attestd"

func gatePolicy(host, name, mode string, extra string) []byte {
	return []byte(fmt.Sprintf(`
name: %s
match:
  images: ["%s/gate/**"]
  namespaces: [prod]
signatures: {keys: [default], threshold: 1}
attestations:
  - predicateType: https://slsa.dev/provenance/v1
    condition: predicate.runDetails.builder.id == "%s"
mode: %s
breakglass: {allowed: true, maxDuration: 2h}
%s`, name, host, builderID, mode, extra))
}

type gateEnv struct {
	s        *testenv.Server
	signer   *client.Client
	verifier *client.Client
	auth     authn.Authenticator
}

func startGate(t *testing.T) *gateEnv {
	t.Helper()
	s := testenv.Start(t, func(c *app.Config) { c.BuilderID = builderID })
	signer := s.Token(t, "signer")
	g := &gateEnv{s: s, signer: s.Client(t, signer), verifier: s.Client(t, s.Token(t, "verifier")), auth: &authn.Basic{Username: "ci", Password: signer}}
	for _, p := range [][]byte{
		gatePolicy(s.RegistryHost, "release", "enforce", ""),
		gatePolicy(s.RegistryHost, "release-warn", "warn", ""),
		gatePolicy(s.RegistryHost, "release-audit", "audit", ""),
	} {
		if _, err := s.Admin.PutPolicy(context.Background(), p); err != nil {
			t.Fatalf("load policy: %v", err)
		}
	}
	return g
}

// image pushes an image and gives it what is asked: a signature, a
// provenance from attestd, a provenance from another builder, a vuln scan.
func (g *gateEnv) image(t *testing.T, repo string, sign, prov, otherBuilder, vuln bool) name.Digest {
	t.Helper()
	ctx := context.Background()
	_, d, _ := testenv.PushRandom(t, g.s.RegistryHost, "gate/"+repo, g.auth)
	if sign {
		if _, err := g.signer.Sign(ctx, d.String()); err != nil {
			t.Fatal(err)
		}
	}
	if prov {
		if _, err := g.signer.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: d.String()}}, Source: wire.Source{Repository: "https://git.example/app", Commit: "abc"}}); err != nil {
			t.Fatal(err)
		}
	}
	if otherBuilder {
		if _, err := g.signer.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: attest.PredicateSLSAProvenanceV1, Predicate: fixture(t, "slsa1.json")}); err != nil {
			t.Fatal(err)
		}
	}
	if vuln {
		if _, err := g.signer.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: attest.PredicateCosignVuln, Predicate: fixture(t, "vuln.json")}); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (g *gateEnv) verify(t *testing.T, req wire.VerifyRequest) wire.Decision {
	t.Helper()
	d, err := g.verifier.Verify(context.Background(), req)
	if err != nil {
		t.Fatalf("verify %s: %v", req.Image, err)
	}
	if d.ID == "" || d.Reason == "" {
		t.Errorf("decision without id or reason: %+v", d)
	}
	return d
}

func TestGateDecisions(t *testing.T) {
	g := startGate(t)
	both := g.image(t, "both", true, true, false, false)

	d := g.verify(t, wire.VerifyRequest{Image: both.String(), Policy: "release"})
	if !d.Allow || d.Decision != "allow" || d.Digest != both.DigestStr() || d.Policy != "release" || d.Revision == "" || len(d.Requirements) != 2 {
		t.Fatalf("image with signature and provenance: %+v", d)
	}
	for _, r := range d.Requirements {
		if !r.Pass {
			t.Errorf("requirement failed on a good image: %+v", r)
		}
	}

	for _, tc := range []struct {
		name                           string
		sign, prov, otherBuilder, vuln bool
		want                           string
	}{
		{"unsigned", false, true, false, false, "signed by 0"},
		{"no provenance", true, false, false, false, "no attestation of this type"},
		{"provenance from another builder", true, false, true, false, "condition is false"},
		{"only a vuln attestation", true, false, false, true, "no attestation of this type"},
		{"nothing", false, false, false, false, "signed by 0"},
	} {
		t.Run("deny/"+tc.name, func(t *testing.T) {
			img := g.image(t, strings.ReplaceAll(tc.name, " ", "-"), tc.sign, tc.prov, tc.otherBuilder, tc.vuln)
			d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release"})
			if d.Allow || d.Decision != "deny" || !strings.Contains(d.Reason, tc.want) {
				t.Errorf("%s: %+v, want a deny naming %q", tc.name, d, tc.want)
			}
			w := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release-warn"})
			if !w.Allow || len(w.Warnings) == 0 {
				t.Errorf("warn mode: %+v, want allow with warnings", w)
			}
			a := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release-audit"})
			if !a.Allow || !strings.Contains(a.Reason, "would deny") {
				t.Errorf("audit mode: %+v, want allow recording the deny", a)
			}
		})
	}

	t.Run("breakglass", func(t *testing.T) {
		img := g.image(t, "breakglass", false, false, false, false)
		d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release", Breakglass: &wire.BreakglassRequest{Justification: "INC-1234 hotfix", Duration: "1h"}})
		if !d.Allow || !strings.Contains(d.Breakglass, "INC-1234") {
			t.Errorf("justified breakglass: %+v", d)
		}
		for _, bg := range []wire.BreakglassRequest{{Justification: "", Duration: "1h"}, {Justification: "x", Duration: "3h"}} {
			if d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release", Breakglass: &bg}); d.Allow {
				t.Errorf("breakglass %+v allowed", bg)
			}
		}
		if !strings.Contains(g.s.LogText(), "INC-1234") {
			t.Error("breakglass not recorded in the log")
		}
	})

	t.Run("a moved tag is judged afresh", func(t *testing.T) {
		tag := g.s.RegistryHost + "/gate/moving:v1"
		a := g.image(t, "moving", true, true, false, false) // pushed as gate/moving:v1
		first := g.verify(t, wire.VerifyRequest{Image: tag, Policy: "release"})
		again := g.verify(t, wire.VerifyRequest{Image: tag, Policy: "release"})
		_, b, _ := testenv.PushRandom(t, g.s.RegistryHost, "gate/moving", g.auth) // the tag now names an unsigned image
		second := g.verify(t, wire.VerifyRequest{Image: tag, Policy: "release"})
		if !first.Allow || first.Digest != a.DigestStr() || !again.Cached {
			t.Fatalf("before the move: %+v / %+v", first, again)
		}
		if second.Allow || second.Digest != b.DigestStr() || second.Cached {
			t.Errorf("after the tag moved: %+v, want a fresh deny of %s", second, b.DigestStr())
		}
	})

	t.Run("verdicts are cached by digest and revisions", func(t *testing.T) {
		a := g.verify(t, wire.VerifyRequest{Image: both.String(), Policy: "release"})
		b := g.verify(t, wire.VerifyRequest{Image: both.String(), Policy: "release"})
		if !a.Allow || !b.Allow || !b.Cached {
			t.Errorf("second identical decision not from the cache: %+v", b)
		}
		// Changing the policy changes its revision: the verdict is not reused.
		if _, err := g.s.Admin.PutPolicy(context.Background(), gatePolicy(g.s.RegistryHost, "release", "enforce", "description: changed\n")); err != nil {
			t.Fatal(err)
		}
		c := g.verify(t, wire.VerifyRequest{Image: both.String(), Policy: "release"})
		if c.Cached || c.Revision == a.Revision {
			t.Errorf("after a policy change: %+v (was revision %s)", c, a.Revision)
		}
	})

	t.Run("fail closed", func(t *testing.T) {
		for name, image := range map[string]string{
			"missing tag": g.s.RegistryHost + "/gate/none:nope",
			"not covered": g.s.RegistryHost + "/other/x:1",
		} {
			if d := g.verify(t, wire.VerifyRequest{Image: image, Policy: "release"}); d.Allow || d.Decision != "deny" {
				t.Errorf("%s: %+v, want deny", name, d)
			}
		}
		var ce *client.Error
		// A reference attestd may not follow is a bad request, like on
		// every other route: no decision, and no request leaves attestd.
		for name, image := range map[string]string{
			"unconfigured registry": "elsewhere.example/gate/x:1",
			"garbage":               "::::",
			"path trick":            g.s.RegistryHost + "/gate/../other/x:1",
		} {
			if _, err := g.verifier.Verify(context.Background(), wire.VerifyRequest{Image: image, Policy: "release"}); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
				t.Errorf("%s: %v, want 400", name, err)
			}
		}
		if _, err := g.verifier.Verify(context.Background(), wire.VerifyRequest{Image: both.String(), Policy: "nope"}); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
			t.Errorf("unknown policy: %v, want 404", err)
		}
		if _, err := g.verifier.Verify(context.Background(), wire.VerifyRequest{Image: both.String()}); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("neither policy nor namespace: %v, want 400", err)
		}
		if d := g.verify(t, wire.VerifyRequest{Image: both.String(), Namespace: "dev"}); d.Allow || !strings.Contains(d.Reason, "no policy") {
			t.Errorf("no policy for the namespace: %+v, want the default deny", d)
		}
	})

	t.Run("policies are validated at load", func(t *testing.T) {
		var ce *client.Error
		bad := []byte("name: costly\nmatch: {images: [a]}\nattestations: [{predicateType: 'https://e.x/p', condition: 'predicate.a.all(x, predicate.b.all(y, predicate.c.exists(z, x == y && y == z)))'}]\n")
		if _, err := g.s.Admin.PutPolicy(context.Background(), bad); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || !strings.Contains(ce.Message, "cost") {
			t.Errorf("CEL over its cost limit: %v, want 400 naming the cost", err)
		}
		if _, err := g.signer.PutPolicy(context.Background(), gatePolicy("x", "y", "enforce", "")); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
			t.Errorf("signer loading a policy: %v, want 403", err)
		}
	})

	t.Run("decisions are recorded", func(t *testing.T) {
		if !strings.Contains(g.s.LogText(), `"msg":"gate decision"`) || !strings.Contains(g.s.LogText(), `"decision_id":"`+d.ID+`"`) {
			t.Error("decision not in the log")
		}
	})
}

func admissionReview(t *testing.T, file string, images ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "admission", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i, im := range images {
		s = strings.ReplaceAll(s, fmt.Sprintf("IMAGE_%d", i), im)
	}
	return []byte(s)
}

type reviewResponse struct {
	Response struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Result  *struct {
			Message string `json:"message"`
		} `json:"status"`
		Patch     []byte   `json:"patch"`
		PatchType *string  `json:"patchType"`
		Warnings  []string `json:"warnings"`
	} `json:"response"`
}

func TestAdmission(t *testing.T) {
	g := startGate(t)
	ctx := context.Background()
	good := g.image(t, "adm-good", true, true, false, false)
	unsigned := g.image(t, "adm-unsigned", false, false, false, false)
	goodTag := g.s.RegistryHost + "/gate/adm-good:v1" // g.image pushed it there
	gt, _ := name.NewTag(goodTag)

	review := func(t *testing.T, body []byte, mutate bool) reviewResponse {
		t.Helper()
		out, err := g.verifier.Admission(ctx, body, mutate)
		if err != nil {
			t.Fatalf("admission: %v", err)
		}
		var r reviewResponse
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, f := range []string{"deployment.json", "pod.json", "replicaset.json", "statefulset.json", "daemonset.json", "job.json", "cronjob.json"} {
		t.Run(f, func(t *testing.T) {
			imgs := []string{good.String(), good.String(), good.String()}
			r := review(t, admissionReview(t, f, imgs...), false)
			if !r.Response.Allowed || r.Response.UID == "" {
				t.Errorf("%s with verified images denied: %+v", f, r.Response)
			}
			// The same object with its last checked image unsigned.
			bad := []string{good.String(), unsigned.String(), unsigned.String()}
			if f != "deployment.json" && f != "pod.json" {
				bad = []string{unsigned.String()}
			}
			r = review(t, admissionReview(t, f, bad...), false)
			if r.Response.Allowed || r.Response.Result == nil || !strings.Contains(r.Response.Result.Message, unsigned.DigestStr()) {
				t.Errorf("%s with an unsigned container allowed or unexplained: %+v", f, r.Response)
			}
		})
	}

	t.Run("mutating rewrites tags to the verified digests", func(t *testing.T) {
		r := review(t, admissionReview(t, "deployment.json", goodTag, good.String()), true)
		if !r.Response.Allowed || r.Response.PatchType == nil || *r.Response.PatchType != "JSONPatch" {
			t.Fatalf("mutate: %+v", r.Response)
		}
		var ops []map[string]string
		_ = json.Unmarshal(r.Response.Patch, &ops)
		if len(ops) != 1 || ops[0]["path"] != "/spec/template/spec/containers/0/image" || ops[0]["value"] != gt.Context().Name()+"@"+good.DigestStr() {
			t.Errorf("patch %s", r.Response.Patch)
		}
	})

	t.Run("an unknown namespace is denied by default", func(t *testing.T) {
		body := strings.ReplaceAll(string(admissionReview(t, "job.json", good.String())), `"namespace":"prod"`, `"namespace":"dev"`)
		if r := review(t, []byte(body), false); r.Response.Allowed {
			t.Error("a namespace no policy covers was allowed")
		}
	})

	t.Run("a body that is not a review is a 400", func(t *testing.T) {
		var ce *client.Error
		if _, err := g.verifier.Admission(ctx, []byte(`{"kind":"AdmissionReview"}`), false); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("no request: %v", err)
		}
	})
}
