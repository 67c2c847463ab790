package attest

import (
	"strings"
	"testing"
	"time"
)

func TestVSARoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	in := VSA{Verifier: "https://attestd.dev/builder/v1", KeySetRevision: 3, Resource: "r.example/app@sha256:" + strings.Repeat("a", 64),
		Policy: "prod", PolicyDigest: PolicyDigest([]byte("name: prod")), Time: at, Result: VSAPassed, Levels: []string{"SLSA_BUILD_LEVEL_2"},
		Inputs: []VSAInput{{URI: "r.example/app:sha256-x.att", SHA256: strings.Repeat("b", 64)}}}
	b, err := NewVSA(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidatePredicate(PredicateVSA, b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"verificationResult":"PASSED"`, `"policy":{"digest":{"sha256":"`, `"uri":"urn:attestd:policy:prod#key-set=3"`, `"inputAttestations":[`, `"verifiedLevels":["SLSA_BUILD_LEVEL_2"]`, `"timeVerified":"2026-11-27T09:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("VSA %s lacks %s", b, want)
		}
	}
	out, err := ParseVSA(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Policy != "prod" || out.PolicyRevision() != in.PolicyDigest[:16] || !out.Time.Equal(at) || out.KeySetRevision != 3 || out.Result != VSAPassed || len(out.Inputs) != 1 {
		t.Errorf("parsed %+v from %s", out, b)
	}
}

func TestVSARefusesMalformed(t *testing.T) {
	for name, b := range map[string]string{
		"no verifier":  `{"timeVerified":"2026-01-01T00:00:00Z","resourceUri":"x","policy":{"uri":"urn:a:b"},"verificationResult":"PASSED"}`,
		"bad result":   `{"verifier":{"id":"v"},"timeVerified":"2026-01-01T00:00:00Z","resourceUri":"x","policy":{"uri":"urn:a:b"},"verificationResult":"OK"}`,
		"no time":      `{"verifier":{"id":"v"},"resourceUri":"x","policy":{"uri":"urn:a:b"},"verificationResult":"PASSED"}`,
		"unknown":      `{"verifier":{"id":"v"},"timeVerified":"2026-01-01T00:00:00Z","resourceUri":"x","policy":{"uri":"urn:a:b"},"verificationResult":"PASSED","x":1}`,
		"relative uri": `{"verifier":{"id":"v"},"timeVerified":"2026-01-01T00:00:00Z","resourceUri":"x","policy":{"uri":"prod"},"verificationResult":"PASSED"}`,
	} {
		if err := ValidatePredicate(PredicateVSA, []byte(b)); err == nil {
			t.Errorf("%s: accepted %s", name, b)
		}
	}
}
