package attest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	intotov1 "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidatePredicate(t *testing.T) {
	good := map[string]string{
		PredicateSLSAProvenanceV1:  "slsa1.json",
		PredicateSLSAProvenanceV02: "slsa02.json",
		PredicateSPDX:              "spdx.json",
		PredicateCycloneDX:         "cyclonedx.json",
		PredicateCosignVuln:        "vuln.json",
		PredicateOpenVEX:           "openvex.json",
	}
	for pt, f := range good {
		if err := ValidatePredicate(pt, fixture(t, f)); err != nil {
			t.Errorf("%s with %s: %v", pt, f, err)
		}
		// Each fixture is the wrong shape for every other checked type.
		for other := range good {
			if other == pt {
				continue
			}
			if err := ValidatePredicate(other, fixture(t, f)); !errors.Is(err, ErrPredicate) {
				t.Errorf("%s accepted %s: %v", other, f, err)
			}
		}
	}
	for _, tc := range []struct{ pt, pred, why string }{
		{"https://example.com/custom/v1", `{"anything":[1,2,3]}`, ""},
		{"https://example.com/custom/v1", `[1,2]`, "not a JSON object"},
		{"https://example.com/custom/v1", `"text"`, "not a JSON object"},
		{"not-a-uri", `{}`, "absolute URI"},
		{"https://example.com/custom/v1", `{"a":1,"a":2}`, "ambiguous"},
		{"/relative/path", `{}`, "absolute URI"},
		{PredicateSLSAProvenanceV1, `{"buildDefinition":{"buildType":"x"}}`, "externalParameters"},
		{PredicateSPDX, strings.Replace(string(fixture(t, "spdx.json")), "SPDX-2.3", "SPDX-1.2", 1), "spdxVersion"},
		{PredicateSPDX, strings.Replace(string(fixture(t, "spdx.json")), `"relatedSpdxElement":"SPDXRef-Package-log4j"`, `"relatedSpdxElement":"SPDXRef-Nope"`, 1), "no such package"},
		{PredicateCycloneDX, `{"bomFormat":"SPDX","specVersion":"1.5"}`, "bomFormat"},
		{PredicateCosignVuln, `{"scanner":{"uri":""}}`, "scanner.uri"},
	} {
		err := ValidatePredicate(tc.pt, []byte(tc.pred))
		if tc.why == "" {
			if err != nil {
				t.Errorf("%s %s: %v", tc.pt, tc.pred, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s %.40s: %v, want an error naming %q", tc.pt, tc.pred, err, tc.why)
		}
	}
}

func TestNewStatementKeepsPredicateBytes(t *testing.T) {
	pred := []byte(`{"big": 12345678901234567890, "nested": {"b": 1, "a": 2}}`)
	b, err := NewStatement([]Subject{{Name: "r.example/app", Digest: "sha256:" + hexd}}, "https://example.com/p/v1", pred, SignMeta{KeyID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStatement(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(st.Predicate) != `{"big":12345678901234567890,"nested":{"b":1,"a":2}}` {
		t.Errorf("predicate changed: %s", st.Predicate)
	}
	if st.Meta.KeyID != "k" || len(st.Subjects) != 1 {
		t.Errorf("statement %+v", st)
	}
	if _, err := NewStatement(nil, "https://example.com/p/v1", pred, SignMeta{}); err == nil {
		t.Error("statement without subject built")
	}
	if _, err := NewStatement([]Subject{{Digest: "nohash"}}, "https://example.com/p/v1", pred, SignMeta{}); err == nil {
		t.Error("subject without algorithm accepted")
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e, err := Envelope(InTotoPayloadType, []byte(`{"x":1}`), []byte("sig"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEnvelope(e)
	if err != nil || string(got.Payload) != `{"x":1}` || string(got.Signatures[0]) != "sig" || got.PayloadType != InTotoPayloadType {
		t.Errorf("round trip: %+v %v", got, err)
	}
	if _, err := ParseEnvelope([]byte(`{"payloadType":"x","payload":"e30=","signatures":[]}`)); err == nil {
		t.Error("envelope without signatures accepted")
	}
}

func FuzzValidatePredicate(f *testing.F) {
	for _, n := range []string{"slsa1.json", "slsa02.json", "spdx.json", "cyclonedx.json", "vuln.json", "openvex.json"} {
		f.Add(fixture(f, n))
	}
	f.Add([]byte(`{"verifier":{"id":"https://v.example"},"timeVerified":"2026-01-01T00:00:00Z","resourceUri":"r@sha256:x","policy":{"uri":"urn:attestd:policy:p#key-set=2","digest":{"sha256":"ab"}},"verificationResult":"PASSED","verifiedLevels":["SLSA_BUILD_LEVEL_1"]}`))
	types := []string{PredicateSLSAProvenanceV1, PredicateSLSAProvenanceV02, PredicateSPDX, PredicateCycloneDX, PredicateCosignVuln, PredicateOpenVEX, PredicateVSA, "https://example.com/x"}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, pt := range types {
			if err := ValidatePredicate(pt, b); err == nil {
				st, err := NewStatement([]Subject{{Digest: "sha256:" + hexd}}, pt, b, SignMeta{})
				if err != nil {
					t.Fatalf("%s: valid predicate but no statement: %v", pt, err)
				}
				// NewStatement checks the statement's shape without its
				// predicate; whole, the in-toto library accepts it too.
				var pb intotov1.Statement
				if err := protojson.Unmarshal(st, &pb); err != nil {
					t.Fatalf("%s: the in-toto library refuses the statement: %v", pt, err)
				}
				if err := pb.Validate(); err != nil {
					t.Fatalf("%s: the in-toto library refuses the statement: %v", pt, err)
				}
				if pt == PredicateVSA {
					if v, err := ParseVSA(b); err != nil || (v.Result != VSAPassed && v.Result != VSAFailed) {
						t.Fatalf("a valid VSA does not parse: %+v %v", v, err)
					}
				}
			}
		}
	})
}
