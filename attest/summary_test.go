package attest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSummarizeProvenance(t *testing.T) {
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	attestd := []byte(`{"buildDefinition":{"buildType":"https://attestd.dev/provenance/ci-report/v1","externalParameters":{"source":{"repository":"https://git.example/app","commit":"abc123","ref":"refs/heads/main"},"buildType":"https://ci.example/build/v1"}},"runDetails":{"builder":{"id":"https://attestd.dev/builder/v1"},"metadata":{"invocationId":"req-1","finishedOn":"2026-11-26T06:05:00Z"}}}`)
	for name, tc := range map[string]struct {
		pt   string
		pred []byte
		want Provenance
	}{
		"attestd's own": {PredicateSLSAProvenanceV1, attestd, Provenance{SourceRepo: "https://git.example/app", Commit: "abc123", Ref: "refs/heads/main",
			Builder: "https://attestd.dev/builder/v1", BuildType: "https://attestd.dev/provenance/ci-report/v1", ReportedBuildType: "https://ci.example/build/v1", Invocation: "req-1", FinishedOn: "2026-11-26T06:05:00Z"}},
		"SLSA v1 from CI": {PredicateSLSAProvenanceV1, read("slsa1.json"), Provenance{SourceRepo: "https://git.example/app", Commit: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", Ref: "refs/heads/main",
			Builder: "https://ci.example/builder/v1", BuildType: "https://example.com/build/v1", Invocation: "run-42", StartedOn: "2026-11-26T06:00:00Z", FinishedOn: "2026-11-26T06:05:00Z"}},
		"SLSA v0.2": {PredicateSLSAProvenanceV02, read("slsa02.json"), Provenance{SourceRepo: "https://git.example/app", Commit: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
			Builder: "https://ci.example/builder", BuildType: "https://example.com/build/v0", StartedOn: "2026-11-26T06:00:00Z"}},
	} {
		got, ok := SummarizeProvenance(tc.pt, tc.pred)
		if !ok || got != tc.want {
			t.Errorf("%s:\n got  %+v\n want %+v", name, got, tc.want)
		}
	}
	if _, ok := SummarizeProvenance(PredicateSPDX, read("spdx.json")); ok {
		t.Error("an SBOM summarized as provenance")
	}
	if _, ok := SummarizeProvenance(PredicateSLSAProvenanceV1, []byte(`[1]`)); ok {
		t.Error("a predicate that is not an object summarized")
	}
}

func TestSummarizeVulnerabilities(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join("testdata", "vuln.json"))
	v, ok := SummarizeVulnerabilities(PredicateCosignVuln, b)
	if !ok || v.Scanner != "pkg:github/aquasecurity/trivy@0.50.0" || v.ScannedAt != "2026-11-26T06:01:00Z" {
		t.Errorf("cosign vuln: %+v %v", v, ok)
	}
	b, _ = os.ReadFile(filepath.Join("testdata", "openvex.json"))
	v, ok = SummarizeVulnerabilities(PredicateOpenVEX, b)
	if !ok || v.Statements != 1 || v.Affected != 0 || v.Scanner != "Security Team" {
		t.Errorf("OpenVEX: %+v %v", v, ok)
	}
}
