package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
name: release
match:
  images: ["registry.example/team/**", "localhost:*/app"]
  namespaces: [prod]
signatures:
  keys: [release, sha256:abc]
  threshold: 2
attestations:
  - predicateType: https://slsa.dev/provenance/v1
    condition: predicate.buildDefinition.buildType == "https://ci.example/build/v1"
  - predicateType: https://spdx.dev/Document
    condition: '!predicate.packages.exists(p, has(p.licenseConcluded) && p.licenseConcluded == "GPL-3.0")'
  - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
    condition: now - timestamp(predicate.metadata.scanFinishedOn) < duration("168h")
mode: enforce
breakglass: {allowed: true, maxDuration: 4h}
`

func TestParseAndMatch(t *testing.T) {
	p, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision() == "" || p.Mode != Enforce || p.Signatures.Threshold != 2 {
		t.Errorf("parsed %+v", p)
	}
	q, _ := Parse([]byte(strings.Replace(good, "threshold: 2", "threshold: 1", 1)))
	if q.Revision() == p.Revision() {
		t.Error("a changed policy keeps its revision")
	}
	for repo, want := range map[string]bool{
		"registry.example/team/a": true, "registry.example/team/a/b": true, "registry.example/other": false,
		"localhost:5000/app": true, "localhost:5000/app/x": false, "evil.example/registry.example/team/a": false,
	} {
		if p.CoversImage(repo) != want {
			t.Errorf("CoversImage(%s) != %v", repo, want)
		}
	}
	if !p.CoversNamespace("prod") || p.CoversNamespace("dev") {
		t.Error("namespace match")
	}
}

func TestRefusedAtLoad(t *testing.T) {
	for why, doc := range map[string]string{
		"unknown field":     "name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\nsurprise: 1\n",
		"bad name":          "name: X Y\nmatch: {images: [a]}\nsignatures: {keys: [k]}\n",
		"no requirement":    "name: x\nmatch: {images: [a]}\n",
		"no images":         "name: x\nmatch: {images: []}\nsignatures: {keys: [k]}\n",
		"threshold":         "name: x\nmatch: {images: [a]}\nsignatures: {keys: [k], threshold: 2}\n",
		"mode":              "name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\nmode: maybe\n",
		"cel syntax":        "name: x\nmatch: {images: [a]}\nattestations: [{predicateType: 'https://e.x/p', condition: 'predicate.a =='}]\n",
		"cel not bool":      "name: x\nmatch: {images: [a]}\nattestations: [{predicateType: 'https://e.x/p', condition: '1 + 2'}]\n",
		"cel over cost":     "name: x\nmatch: {images: [a]}\nattestations: [{predicateType: 'https://e.x/p', condition: 'predicate.a.all(x, predicate.b.all(y, predicate.c.exists(z, x == y && y == z)))'}]\n",
		"relative type":     "name: x\nmatch: {images: [a]}\nattestations: [{predicateType: 'provenance'}]\n",
		"breakglass no max": "name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\nbreakglass: {allowed: true}\n",
	} {
		if _, err := Parse([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", why, err)
		}
	}
}

func predicate(t *testing.T, file string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestConditions(t *testing.T) {
	p, err := Parse([]byte(strings.ReplaceAll(good, "https://ci.example/build/v1", "https://example.com/build/v1")))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	ok, err := p.Eval(0, Input{Predicate: predicate(t, "slsa1.json"), Now: now})
	if err != nil || !ok {
		t.Errorf("buildType condition: %v %v", ok, err)
	}
	ok, err = p.Eval(1, Input{Predicate: predicate(t, "spdx.json"), Now: now})
	if err != nil || !ok {
		t.Errorf("no GPL condition on an Apache SBOM: %v %v", ok, err)
	}
	gpl := predicate(t, "spdx.json").(map[string]any)
	gpl["packages"].([]any)[0].(map[string]any)["licenseConcluded"] = "GPL-3.0"
	if ok, err := p.Eval(1, Input{Predicate: gpl, Now: now}); err != nil || ok {
		t.Errorf("no GPL condition on a GPL SBOM: %v %v", ok, err)
	}
	if ok, err := p.Eval(2, Input{Predicate: predicate(t, "vuln.json"), Now: now}); err != nil || !ok {
		t.Errorf("fresh scan: %v %v", ok, err)
	}
	if ok, err := p.Eval(2, Input{Predicate: predicate(t, "vuln.json"), Now: now.Add(30 * 24 * time.Hour)}); err != nil || ok {
		t.Errorf("stale scan: %v %v", ok, err)
	}
	// A condition over the wrong shape is an error, not a pass.
	if ok, err := p.Eval(0, Input{Predicate: map[string]any{}, Now: now}); err == nil || ok {
		t.Errorf("condition on a missing field: %v %v", ok, err)
	}
}

func TestBreakglass(t *testing.T) {
	p, _ := Parse([]byte(good))
	if err := p.BreakglassFor("incident 42", time.Hour); err != nil {
		t.Error(err)
	}
	if p.BreakglassFor("", time.Hour) == nil || p.BreakglassFor("x", 5*time.Hour) == nil || p.BreakglassFor("x", 0) == nil {
		t.Error("breakglass accepted without justification, or too long")
	}
	q, _ := Parse([]byte(strings.Replace(good, "breakglass: {allowed: true, maxDuration: 4h}", "", 1)))
	if q.BreakglassFor("x", time.Hour) == nil {
		t.Error("breakglass on a policy that allows none")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\n"))
	f.Add([]byte("name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\nacceptVSA: {keys: [central], maxAge: 24h}\nverifiedLevels: [SLSA_BUILD_LEVEL_2]\n"))
	f.Add([]byte("name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\nacceptVSA: {keys: [], maxAge: -1h}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.Revision() == "" || len(p.Match.Images) == 0 {
			t.Fatalf("accepted policy without revision or images: %+v", p)
		}
		if a := p.AcceptVSA; a != nil && (len(a.Keys) == 0 || a.Age() <= 0 || a.Age() > maxVSAAge) {
			t.Fatalf("accepted acceptVSA %+v", a)
		}
	})
}

func TestPolicySizeCaps(t *testing.T) {
	big := "name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\ndescription: " + strings.Repeat("y", 300<<10) + "\n"
	if _, err := Parse([]byte(big)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("a 300 KiB policy: %v", err)
	}
	long := "name: x\nmatch: {images: [a]}\nattestations: [{predicateType: 'https://e.x/p', condition: '" + strings.Repeat("true && ", 600) + "true'}]\n"
	if _, err := Parse([]byte(long)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "4096") {
		t.Errorf("a condition over 4096 characters: %v", err)
	}
}

// FuzzEval evaluates conditions over fuzzed predicates, as the gate does
// with whatever a signed attestation carries: evaluation ends within its
// cost budget with a boolean or an error, never a panic, and a condition
// over a field the predicate lacks is never true by accident.
func FuzzEval(f *testing.F) {
	doc := []byte(`name: fuzz
match: {images: ["r/**"]}
attestations:
  - predicateType: https://example.com/p
    condition: predicate.runDetails.builder.id == "https://attestd.dev/builder/v1"
  - predicateType: https://example.com/p
    condition: '!predicate.packages.exists(p, has(p.licenseConcluded) && p.licenseConcluded == "GPL-3.0")'
  - predicateType: https://example.com/p
    condition: now - timestamp(predicate.metadata.scanFinishedOn) < duration("168h")
  - predicateType: https://example.com/p
    condition: predicate.vulns.all(v, v.severity != "CRITICAL") && size(predicate.vulns) < 1000
`)
	p, err := Parse(doc)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"runDetails":{"builder":{"id":"https://attestd.dev/builder/v1"}}}`,
		`{"packages":[{"licenseConcluded":"GPL-3.0"},{"name":"x"}]}`, `{"metadata":{"scanFinishedOn":"2026-11-27T00:00:00Z"}}`,
		`{"metadata":{"scanFinishedOn":"not a time"}}`, `{"vulns":[{"severity":"LOW"}]}`, `{"vulns":"x"}`, `{"packages":[1,2,3]}`} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		var pred any
		if json.Unmarshal(b, &pred) != nil {
			return
		}
		for i := range p.Attestations {
			ok, err := p.Eval(i, Input{Predicate: pred, PredicateType: "https://example.com/p", Digest: "sha256:00", Now: now})
			if err != nil && ok {
				t.Fatalf("condition %d: true with an error %v", i, err)
			}
			if i == 0 && ok {
				m, _ := pred.(map[string]any)
				rd, _ := m["runDetails"].(map[string]any)
				bd, _ := rd["builder"].(map[string]any)
				if bd["id"] != "https://attestd.dev/builder/v1" {
					t.Fatalf("builder condition true for %s", b)
				}
			}
		}
	})
}

func TestAcceptVSA(t *testing.T) {
	base := "name: x\nmatch: {images: [a]}\nsignatures: {keys: [k]}\n"
	p, err := Parse([]byte(base + "acceptVSA: {keys: [central, 'sha256:ab'], maxAge: 24h}\nverifiedLevels: [SLSA_BUILD_LEVEL_3]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.AcceptVSA.Age() != 24*time.Hour || len(p.AcceptVSA.Keys) != 2 || p.VerifiedLevels[0] != "SLSA_BUILD_LEVEL_3" {
		t.Errorf("parsed %+v", p.AcceptVSA)
	}
	for name, doc := range map[string]string{
		"no keys":       "acceptVSA: {keys: [], maxAge: 24h}\n",
		"no maxAge":     "acceptVSA: {keys: [k]}\n",
		"negative":      "acceptVSA: {keys: [k], maxAge: -1h}\n",
		"too long":      "acceptVSA: {keys: [k], maxAge: 2000h}\n",
		"unknown field": "acceptVSA: {keys: [k], maxAge: 1h, anyKey: true}\n",
		"bad level":     "verifiedLevels: [level 2]\n",
	} {
		if _, err := Parse([]byte(base + doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
