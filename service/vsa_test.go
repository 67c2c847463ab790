package service

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/oci"
)

// storedVSAs is an evidence store holding legacy attestations only: the
// VSAs a test signs.
type storedVSAs struct{ envs []oci.StoredEnvelope }

func (s *storedVSAs) LegacySignatures(context.Context, name.Digest, int) (string, []oci.StoredSignature, error) {
	return "", nil, nil
}

func (s *storedVSAs) LegacyAttestations(_ context.Context, _ name.Digest, pt string, _ int) ([]oci.StoredEnvelope, error) {
	var out []oci.StoredEnvelope
	for _, e := range s.envs {
		if pt == "" || e.PredicateType == pt {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *storedVSAs) Bundles(context.Context, name.Digest, string, string, int) ([]oci.StoredBundle, error) {
	return nil, nil
}

func testKey(t *testing.T, n string) *keys.Key {
	t.Helper()
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.New(n, sv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signVSA signs a VSA statement about subject with k, as attestd's
// attestation path would, and returns the envelope as stored.
func signVSA(t *testing.T, k *keys.Key, subject name.Digest, origin string, signedAt time.Time, v attest.VSA) oci.StoredEnvelope {
	t.Helper()
	pred, err := attest.NewVSA(v)
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.NewStatement([]attest.Subject{{Name: subject.Context().Name(), Digest: subject.DigestStr()}}, attest.PredicateVSA, pred,
		attest.SignMeta{SignedAt: signedAt, KeyID: k.ID(), Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(context.Background(), attest.PAE(attest.InTotoPayloadType, st))
	if err != nil {
		t.Fatal(err)
	}
	env, err := attest.Envelope(attest.InTotoPayloadType, st, sig)
	if err != nil {
		t.Fatal(err)
	}
	return oci.StoredEnvelope{Ref: subject.Context().Name() + "@sha256:" + strings.Repeat("e", 64), PredicateType: attest.PredicateVSA, Envelope: env}
}

// TestGateAcceptsOnlyTheRightVSA: a policy's acceptVSA counts a VSA only
// when it is valid, of origin attestd, by a listed key, PASSED, for this
// digest and this policy's name, and young enough. Each other VSA is
// refused with the reason, and the gate then evaluates the policy in full.
func TestGateAcceptsOnlyTheRightVSA(t *testing.T) {
	ctx := context.Background()
	central, outsider := testKey(t, "central"), testKey(t, "outsider")
	set, err := keys.NewSet("central", central, outsider)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte("name: release\nmatch: {images: [\"r.example/**\"]}\nsignatures: {keys: [central]}\nacceptVSA: {keys: [central], maxAge: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := policy.NewSet(pol)
	d, _ := name.NewDigest("r.example/app@sha256:" + strings.Repeat("a", 64))
	other, _ := name.NewDigest("r.example/app@sha256:" + strings.Repeat("b", 64))
	now := time.Now().UTC().Truncate(time.Second)
	good := func() attest.VSA {
		return attest.VSA{Verifier: "https://attestd.dev/builder/v1", Resource: d.String(), Policy: "release", PolicyDigest: attest.PolicyDigest([]byte("x")),
			Time: now.Add(-time.Minute), Result: attest.VSAPassed}
	}
	for _, tc := range []struct {
		name string
		env  func() oci.StoredEnvelope
		want string // "" for accepted
	}{
		{"accepted", func() oci.StoredEnvelope { return signVSA(t, central, d, attest.OriginAttestd, now, good()) }, ""},
		{"another digest", func() oci.StoredEnvelope {
			v := good()
			v.Resource = other.String()
			return signVSA(t, central, other, attest.OriginAttestd, now, v)
		}, "not about this digest"},
		{"resource of another digest", func() oci.StoredEnvelope {
			v := good()
			v.Resource = other.String()
			return signVSA(t, central, d, attest.OriginAttestd, now, v)
		}, "about resource"},
		{"another policy", func() oci.StoredEnvelope {
			v := good()
			v.Policy = "staging"
			return signVSA(t, central, d, attest.OriginAttestd, now, v)
		}, `for policy "staging"`},
		{"old", func() oci.StoredEnvelope {
			v := good()
			v.Time = now.Add(-2 * time.Hour)
			return signVSA(t, central, d, attest.OriginAttestd, now, v)
		}, "outside maxAge"},
		{"signed long ago", func() oci.StoredEnvelope {
			return signVSA(t, central, d, attest.OriginAttestd, now.Add(-2*time.Hour), good())
		}, "outside"}, // the key's window or maxAge
		{"from the future", func() oci.StoredEnvelope {
			v := good()
			v.Time = now.Add(time.Hour)
			return signVSA(t, central, d, attest.OriginAttestd, now, v)
		}, "outside maxAge"},
		{"failed", func() oci.StoredEnvelope {
			v := good()
			v.Result = attest.VSAFailed
			return signVSA(t, central, d, attest.OriginAttestd, now, v)
		}, "result is FAILED"},
		{"submitted by a caller", func() oci.StoredEnvelope { return signVSA(t, central, d, attest.OriginCaller, now, good()) }, `origin "caller"`},
		{"no origin", func() oci.StoredEnvelope { return signVSA(t, central, d, "", now, good()) }, `origin ""`},
		{"a key outside the list", func() oci.StoredEnvelope { return signVSA(t, outsider, d, attest.OriginAttestd, now, good()) }, "not a key of acceptVSA"},
		{"a key outside the key set", func() oci.StoredEnvelope {
			return signVSA(t, testKey(t, "central"), d, attest.OriginAttestd, now, good())
		}, noKeyVerifies},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := NewEvidence(&storedVSAs{envs: []oci.StoredEnvelope{tc.env()}}, set)
			g := NewGate(panicking{}, ev, set, ps, nil, time.Second, time.Minute, slog.New(slog.DiscardHandler))
			r, ok, reasons, err := g.acceptedVSA(ctx, pol, d)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !ok || !r.Pass || !strings.HasPrefix(r.Name, vsaRequirement) || !fromVSA([]Requirement{r}) {
					t.Fatalf("a good VSA was not accepted: %+v %v", r, reasons)
				}
				return
			}
			if ok {
				t.Fatalf("accepted: %+v", r)
			}
			if !strings.Contains(strings.Join(reasons, "; "), tc.want) {
				t.Errorf("reasons %q, want %q", reasons, tc.want)
			}
			// The gate then evaluates the policy in full: here, no signature.
			reqs, err := g.checkOrVSA(ctx, pol, d)
			if err != nil || fromVSA(reqs) || len(reqs) != 1 || reqs[0].Pass {
				t.Errorf("fallback to full evaluation: %+v %v", reqs, err)
			}
		})
	}
}

// TestCallerMayNotSubmitAttestdVSA: a caller's VSA naming attestd's
// verifier or one of its policies is refused before anything is signed.
func TestCallerMayNotSubmitAttestdVSA(t *testing.T) {
	a := &Attestations{builderID: "https://attestd.dev/builder/v1"}
	for name, pred := range map[string]string{
		"verifier":          `{"verifier":{"id":"https://attestd.dev/builder/v1"},"policy":{"uri":"https://p.example/x"}}`,
		"verifier, case":    `{"verifier":{"id":"HTTPS://ATTESTD.DEV/builder/v1/x"}}`,
		"attestd policy":    `{"verifier":{"id":"https://v.example"},"policy":{"uri":"urn:attestd:policy:release"}}`,
		"attestd policy uc": `{"verifier":{"id":"https://v.example"},"policy":{"uri":" URN:ATTESTD:policy:release"}}`,
	} {
		if err := a.refuseImpersonation(attest.PredicateVSA, []byte(pred)); err == nil {
			t.Errorf("%s: a caller's VSA %s was accepted", name, pred)
		}
	}
	if err := a.refuseImpersonation(attest.PredicateVSA, []byte(`{"verifier":{"id":"https://v.example"},"policy":{"uri":"https://p.example/x"}}`)); err != nil {
		t.Errorf("another verifier's VSA: %v", err)
	}
}

// TestVSAFreshness: the job signs no new VSA while one by attestd's key for
// this digest, policy revision and key-set revision is younger than half
// of vsa_max_age; any other stored VSA does not count.
func TestVSAFreshness(t *testing.T) {
	ctx := context.Background()
	own, other := testKey(t, "default"), testKey(t, "other")
	set, err := keys.NewSet("default", own, other)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("name: release\nmatch: {images: [\"r.example/**\"]}\nsignatures: {keys: [default]}\n")
	pol, err := policy.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := name.NewDigest("r.example/app@sha256:" + strings.Repeat("a", 64))
	now := time.Now().UTC().Truncate(time.Second)
	good := func() attest.VSA {
		return attest.VSA{Verifier: "https://attestd.dev/builder/v1", KeySetRevision: set.Revision(), Resource: d.String(), Policy: "release",
			PolicyDigest: attest.PolicyDigest(doc), Time: now.Add(-time.Hour), Result: attest.VSAPassed}
	}
	for _, tc := range []struct {
		name  string
		env   func() oci.StoredEnvelope
		fresh bool
	}{
		{"fresh", func() oci.StoredEnvelope { return signVSA(t, own, d, attest.OriginAttestd, now, good()) }, true},
		{"past half of max age", func() oci.StoredEnvelope {
			v := good()
			v.Time = now.Add(-13 * time.Hour)
			return signVSA(t, own, d, attest.OriginAttestd, now, v)
		}, false},
		{"another policy revision", func() oci.StoredEnvelope {
			v := good()
			v.PolicyDigest = attest.PolicyDigest([]byte("name: release\n# older\n"))
			return signVSA(t, own, d, attest.OriginAttestd, now, v)
		}, false},
		{"another key-set revision", func() oci.StoredEnvelope {
			v := good()
			v.KeySetRevision++
			return signVSA(t, own, d, attest.OriginAttestd, now, v)
		}, false},
		{"another key", func() oci.StoredEnvelope { return signVSA(t, other, d, attest.OriginAttestd, now, good()) }, false},
		{"a caller's", func() oci.StoredEnvelope { return signVSA(t, own, d, attest.OriginCaller, now, good()) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &VSAs{evidence: NewEvidence(&storedVSAs{envs: []oci.StoredEnvelope{tc.env()}}, set), maxAge: 24 * time.Hour, now: time.Now}
			got, err := v.fresh(ctx, d, pol, own.ID(), set.Revision())
			if err != nil || got != tc.fresh {
				t.Errorf("fresh = %v, %v; want %v", got, err, tc.fresh)
			}
		})
	}
}

// TestVSARequestNeverBlocks: the gate's ask is a buffered send; the same
// VSA is asked once per window, and a full buffer drops the ask at once.
func TestVSARequestNeverBlocks(t *testing.T) {
	v := &VSAs{queue: make(chan VSAArgs, 1), recent: map[VSAArgs]time.Time{}, now: time.Now, log: slog.New(slog.DiscardHandler)}
	pol, err := policy.Parse([]byte("name: release\nmatch: {images: [\"r.example/**\"]}\nsignatures: {keys: [default]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := name.NewDigest("r.example/app@sha256:" + strings.Repeat("a", 64))
	b, _ := name.NewDigest("r.example/app@sha256:" + strings.Repeat("b", 64))
	done := make(chan struct{})
	go func() {
		v.Request(a, pol, 1)
		v.Request(a, pol, 1) // the same: not asked again
		v.Request(b, pol, 1) // the buffer is full: dropped
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Request blocked")
	}
	if len(v.queue) != 1 {
		t.Errorf("%d asks queued, want 1", len(v.queue))
	}
	if _, ok := v.recent[VSAArgs{Image: b.String(), Policy: "release", Revision: pol.Revision(), KeySetRevision: 1}]; ok {
		t.Error("a dropped ask is remembered: the next allow would not ask again")
	}
	<-v.queue
	v.Request(a, pol, 2) // a new key-set revision is another VSA
	if len(v.queue) != 1 {
		t.Error("a new key-set revision was not asked for")
	}
}
