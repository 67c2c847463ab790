package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// vsas lists the valid VSAs of origin attestd stored for d.
func vsas(t *testing.T, c *client.Client, d name.Digest) []wire.Attestation {
	t.Helper()
	list, err := c.Attestations(context.Background(), d.Context().Name(), d.DigestStr(), attest.PredicateVSA)
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.Attestation
	for _, a := range list.Attestations {
		if a.Valid && a.Origin == attest.OriginAttestd {
			out = append(out, a)
		}
	}
	return out
}

// vsaPredicate reads the predicate out of a VSA's DSSE envelope.
func vsaPredicate(t *testing.T, a wire.Attestation) attest.VSA {
	t.Helper()
	var env struct{ Payload string }
	if err := json.Unmarshal(a.Envelope, &env); err != nil {
		t.Fatal(err)
	}
	p, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Predicate json.RawMessage }
	if err := json.Unmarshal(p, &st); err != nil {
		t.Fatal(err)
	}
	v, err := attest.ParseVSA(st.Predicate)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVSA: an allow gets one signed VSA, off the request path, in both
// layouts; further allows reuse it; cosign v3 verifies it; a policy that
// accepts attestd's VSAs allows on it, and on nothing less; a caller may
// not submit one in attestd's name.
func TestVSA(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, func(c *app.Config) { c.BuilderID = builderID; c.VerdictTTL = 0 })
	signer := s.Token(t, "signer")
	g := &gateEnv{s: s, signer: s.Client(t, signer), verifier: s.Client(t, s.Token(t, "verifier")), auth: &authn.Basic{Username: "ci", Password: signer}}
	doc := gatePolicy(s.RegistryHost, "release", "enforce", "verifiedLevels: [SLSA_BUILD_LEVEL_2]\n")
	for _, p := range [][]byte{doc, gatePolicy(s.RegistryHost, "release-warn", "warn", "")} {
		if _, err := s.Admin.PutPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	img := g.image(t, "vsa", true, true, false, false)
	unsigned := g.image(t, "vsa-unsigned", false, true, false, false)

	start := time.Now()
	d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release"})
	took := time.Since(start)
	if !d.Allow {
		t.Fatalf("%+v", d)
	}
	if w := g.verify(t, wire.VerifyRequest{Image: unsigned.String(), Policy: "release-warn"}); !w.Allow || len(w.Warnings) == 0 {
		t.Fatalf("warn mode: %+v", w)
	}
	var got []wire.Attestation
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = vsas(t, g.verifier, img); len(got) >= 2 {
			break
		}
	}
	t.Logf("allow answered in %s; VSA stored %s after it", took, time.Since(start))
	formats := map[string]bool{}
	for _, a := range got {
		formats[a.Format] = true
	}
	if len(got) != 2 || !formats["legacy-tag"] || !formats["referrer"] {
		t.Fatalf("VSAs after an allow: %+v, want one in each layout", got)
	}
	v := vsaPredicate(t, got[0])
	if v.Verifier != builderID || v.Policy != "release" || v.PolicyDigest != attest.PolicyDigest(doc) || v.PolicyRevision() != d.Revision ||
		v.Result != attest.VSAPassed || v.Resource != img.String() || len(v.Levels) != 1 || v.Levels[0] != "SLSA_BUILD_LEVEL_2" ||
		v.KeySetRevision != d.KeySetRevision || time.Since(v.Time) > time.Minute {
		t.Errorf("VSA %+v for decision %+v", v, d)
	}
	if len(v.Inputs) == 0 {
		t.Error("the VSA names no input attestations")
	}
	for _, in := range v.Inputs {
		if len(in.SHA256) != 64 || !strings.Contains(in.URI, "@sha256:") {
			t.Errorf("input %+v", in)
		}
	}

	t.Run("reused, not piled up", func(t *testing.T) {
		for range 3 {
			if d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release"}); !d.Allow || d.Cached {
				t.Fatalf("%+v", d)
			}
		}
		time.Sleep(2 * time.Second)
		if n := len(vsas(t, g.verifier, img)); n != 2 {
			t.Errorf("%d VSA copies after more allows, want the 2 of one VSA", n)
		}
		if n := len(vsas(t, g.verifier, unsigned)); n != 0 {
			t.Errorf("an allow with warnings got %d VSA copies", n)
		}
	})

	t.Run("cosign v3 verifies it", func(t *testing.T) {
		c3 := cosignCLI{"v3", need(t, "ATTESTD_COSIGN3", "path of the cosign v3 CLI, built by make tools")}
		pub := s.PublicKeyPEM(t)
		for _, extra := range [][]string{nil, {"--new-bundle-format=false"}} {
			args := append([]string{"verify-attestation", "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--type", attest.PredicateVSA, "--key", pub}, extra...)
			out, err := c3.run(t, append(args, img.String())...)
			if err != nil {
				t.Fatalf("cosign %v rejected attestd's VSA: %v\n%s", extra, err, out)
			}
			if !cosignPrintedVSA(out, img) {
				t.Errorf("cosign %v output lacks the VSA of %s:\n%s", extra, img, out)
			}
			if out, err := c3.run(t, append(args, unsigned.String())...); err == nil {
				t.Errorf("cosign %v verified a VSA of an image that has none:\n%s", extra, out)
			}
		}
	})

	t.Run("acceptVSA", func(t *testing.T) {
		// The policy now also wants a vulnerability scan the image lacks:
		// only the VSA can allow it.
		vuln := "  - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1\n"
		accept := strings.Replace(string(doc), "mode: enforce", vuln+"mode: enforce\nacceptVSA: {keys: [default], maxAge: 1h}", 1)
		if _, err := s.Admin.PutPolicy(ctx, []byte(accept)); err != nil {
			t.Fatal(err)
		}
		d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: "release"})
		if !d.Allow || len(d.Requirements) != 1 || !strings.HasPrefix(d.Requirements[0].Name, "verification summary") {
			t.Fatalf("allow on a VSA: %+v", d)
		}
		if d := g.verify(t, wire.VerifyRequest{Image: unsigned.String(), Policy: "release"}); d.Allow {
			t.Errorf("a digest without a VSA: %+v", d)
		}
		staging := strings.Replace(accept, "name: release", "name: staging", 1)
		other := strings.Replace(accept, "keys: [default], maxAge", "keys: ['sha256:"+strings.Repeat("0", 64)+"'], maxAge", 1)
		for name, p := range map[string]string{"another policy's VSA": staging, "a key outside the list": other} {
			if _, err := s.Admin.PutPolicy(ctx, []byte(p)); err != nil {
				t.Fatal(err)
			}
			pol := "release"
			if strings.Contains(p, "name: staging") {
				pol = "staging"
			}
			if d := g.verify(t, wire.VerifyRequest{Image: img.String(), Policy: pol}); d.Allow {
				t.Errorf("%s: %+v", name, d)
			}
		}
	})

	t.Run("a caller may not submit attestd's VSA", func(t *testing.T) {
		forged, err := attest.NewVSA(attest.VSA{Verifier: builderID, Resource: img.String(), Policy: "release", PolicyDigest: attest.PolicyDigest(doc),
			Time: time.Now(), Result: attest.VSAPassed})
		if err != nil {
			t.Fatal(err)
		}
		_, err = g.signer.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: img.String()}, PredicateType: attest.PredicateVSA, Predicate: forged})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
			t.Errorf("a forged VSA: %v, want 403", err)
		}
	})
}

// cosignPrintedVSA reports whether cosign printed a verified DSSE envelope
// of a VSA about d.
func cosignPrintedVSA(out string, d name.Digest) bool {
	for _, line := range strings.Split(out, "\n") {
		var env struct{ Payload string }
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &env) != nil {
			continue
		}
		p, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			continue
		}
		st, err := attest.ParseStatement(p)
		if err == nil && st.PredicateType == attest.PredicateVSA && len(st.Subjects) == 1 && st.Subjects[0] == d.DigestStr() {
			return true
		}
	}
	return false
}
