package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/testenv"
)

// demo is the README walk-through's state: the demo image uploaded,
// attested (provenance, a CI SPDX SBOM holding log4j-core 2.16.0), signed,
// judged by the demo policy and admitted as Pod web in namespace demo.
type demo struct {
	s                         *testenv.Server
	srv, host                 string
	signer, verifier, auditor string
	image, repository, digest string
	decisionID                string
}

// walkthrough follows the README's walk-through on the demo image, as
// TestWalkthroughRecord does.
func walkthrough(t *testing.T) demo {
	t.Helper()
	s := testenv.Start(t, nil)
	d := demo{s: s, srv: "--server=" + s.URL, host: s.RegistryHost}
	out, err := run(t, s.AdminToken, d.srv, "tokens", "create", "--name", "ci", "--role", "signer", "--repository", d.host+"/demo/**", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Secret string }
	_ = json.Unmarshal([]byte(out), &tok)
	d.signer = tok.Secret
	img, _ := random.Image(512, 1)
	archive := filepath.Join(t.TempDir(), "hello.tar")
	ref, _ := name.NewTag("example.com/hello:v1")
	if err := tarball.WriteToFile(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	d.repository, d.image = d.host+"/demo/app", d.host+"/demo/app:v1"
	for _, args := range [][]string{
		{"push", archive, "--repo", d.repository, "--tag", "v1"},
		{"provenance", d.image, "--source-repo", "https://git.example/app", "--commit", "abc123"},
		{"attest", d.image, "--type", "spdxjson", "--predicate", filepath.Join("..", "..", "attest", "testdata", "spdx.json")},
		{"sign", d.image},
	} {
		if out, err := run(t, d.signer, append([]string{d.srv}, args...)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	pol := filepath.Join(t.TempDir(), "demo.yaml")
	_ = os.WriteFile(pol, []byte("name: demo\nmatch: {images: [\""+d.host+"/demo/**\"], namespaces: [demo]}\nsignatures: {keys: [default]}\nattestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    origin: attestd\n"), 0o600)
	if out, err := run(t, s.AdminToken, d.srv, "policy", "load", pol); err != nil {
		t.Fatalf("policy load: %v\n%s", err, out)
	}
	d.verifier = s.Token(t, "verifier")
	out, err = run(t, d.verifier, d.srv, "verify", d.image, "--policy", "demo", "-o", "json")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	var dec struct {
		ID     string `json:"decision_id"`
		Digest string
	}
	_ = json.Unmarshal([]byte(out), &dec)
	d.digest, d.decisionID = dec.Digest, dec.ID
	waitVSA(t, s, d.verifier, d.repository, d.digest)
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"demo-1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"namespace":"demo","operation":"CREATE","object":{"metadata":{"name":"web"},"spec":{"containers":[{"name":"web","image":"` + d.repository + `@` + d.digest + `"}]}}}}`
	resp, err := s.Client(t, d.verifier).Admission(context.Background(), []byte(review), false)
	if err != nil || !strings.Contains(string(resp), `"allowed":true`) {
		t.Fatalf("admission of the demo image: %v\n%s", err, resp)
	}
	d.auditor = s.Token(t, "auditor")
	return d
}

// waitVSA waits (up to 20 s) until the VSA of the verify's allow, signed
// off the request path by a job, is stored in both layouts.
func waitVSA(t *testing.T, s *testenv.Server, token, repo, digest string) {
	t.Helper()
	for range 100 {
		list, err := s.Client(t, token).Attestations(context.Background(), repo, digest, attest.PredicateVSA)
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Attestations) >= 2 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no VSA of the allow of %s@%s", repo, digest)
}

// report reads audit show -o json, waiting (up to 3 s) until the admission
// reused from the verify is counted (reuse counts are flushed each second).
func (d demo) report(t *testing.T, ref string) wire.ArtifactReport {
	t.Helper()
	var rep wire.ArtifactReport
	for range 30 {
		out, err := run(t, d.auditor, d.srv, "audit", "show", ref, "-o", "json")
		if err != nil {
			t.Fatalf("audit show -o json: %v\n%s", err, out)
		}
		rep = wire.ArtifactReport{}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Admissions) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return rep
}

// TestWalkthroughAuditShow: after the walk-through, audit show on the demo
// image tells its story: its signature with key and key version (checked
// now), its provenance (source repo and commit), its SBOM, its gate
// decision and where it ran.
func TestWalkthroughAuditShow(t *testing.T) {
	d := walkthrough(t)
	rep := d.report(t, d.image)
	if rep.Digest != d.digest || len(rep.Repositories) != 1 || rep.Repositories[0].Repository != d.repository || strings.Join(rep.Repositories[0].Tags, ",") != "v1" {
		t.Errorf("the image: %+v", rep.Repositories)
	}
	if len(rep.Writes) != 1 || rep.Writes[0].Kind != "artifact.uploaded" || rep.Writes[0].Actor != "ci" {
		t.Errorf("who uploaded it: %+v", rep.Writes)
	}
	formats := map[string]bool{}
	for _, s := range rep.Signatures {
		formats[s.Format] = true
		if !s.Valid || s.KeyID != d.s.KeyID || s.KeyName != "default" || s.Signer != "ci" || s.SignedAt == nil {
			t.Errorf("signature %+v: want valid, by key default %s, requested by ci", s, d.s.KeyID)
		}
	}
	if len(rep.Signatures) != 2 || !formats["legacy-tag"] || !formats["referrer"] {
		t.Errorf("signatures in both layouts: %+v", rep.Signatures)
	}
	if len(rep.Provenance) != 1 {
		t.Fatalf("provenance: %+v", rep.Provenance)
	}
	if p := rep.Provenance[0]; p.SourceRepo != "https://git.example/app" || p.Commit != "abc123" || p.Builder == "" || p.Invocation == "" ||
		!p.Evidence.Valid || p.Evidence.Origin != "attestd" || len(p.Evidence.Locations) != 2 {
		t.Errorf("provenance summary %+v", p)
	}
	if len(rep.SBOMs) != 1 || rep.SBOMs[0].Format != "spdx" || rep.SBOMs[0].Packages != 1 || rep.SBOMs[0].Evidence.Origin != "caller" || !rep.SBOMs[0].Evidence.Valid {
		t.Errorf("SBOM summary %+v", rep.SBOMs)
	}
	if len(rep.Attestations) != 6 {
		t.Errorf("%d attestation copies, want 6 (provenance, SBOM and the allow's VSA, two layouts each)", len(rep.Attestations))
	}
	if len(rep.Decisions) != 1 || rep.Decisions[0].ID != d.decisionID || !rep.Decisions[0].Allowed || rep.Decisions[0].Policy != "demo" || rep.Decisions[0].Reason == "" {
		t.Errorf("decisions %+v", rep.Decisions)
	}
	if len(rep.Admissions) != 1 || rep.Admissions[0].Namespace != "demo" || rep.Admissions[0].WorkloadKind != "Pod" || rep.Admissions[0].WorkloadName != "web" || rep.Admissions[0].Count != 1 {
		t.Errorf("where it ran: %+v", rep.Admissions)
	}

	out, err := run(t, d.auditor, d.srv, "audit", "show", d.image)
	if err != nil {
		t.Fatalf("audit show: %v\n%s", err, out)
	}
	keyShort := d.s.KeyID[:19]
	for _, want := range []string{
		"Source\n  https://git.example/app @ abc123",
		"provenance written by attestd",
		"uploaded by ci",
		"valid  key default " + keyShort + "… (unversioned)",
		"https://spdx.dev/Document",
		"SBOMs\n  spdx, 1 packages, origin caller",
		"ALLOW policy demo",
		"reused 1× in demo Pod/web",
		"Where it ran\n  demo Pod/web",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit show does not say %q:\n%s", want, out)
		}
	}
	// The story runs in order: source, build, image, evidence, decisions, where it ran.
	last := -1
	for _, h := range []string{"Source", "Build", "Image", "Signatures", "Attestations", "SBOMs", "Decisions", "Where it ran"} {
		i := strings.Index(out, "\n"+h+"\n")
		if i < last {
			t.Errorf("%s is out of order in:\n%s", h, out)
		}
		last = i
	}
	unknown := "sha256:" + strings.Repeat("0", 64)
	if _, err := run(t, d.auditor, d.srv, "audit", "show", unknown); err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "nothing is recorded") {
		t.Errorf("audit show of a digest nothing names: %v", err)
	}
	// By digest alone, the same story.
	if out, err := run(t, d.auditor, d.srv, "audit", "show", d.digest); err != nil || !strings.Contains(out, "https://git.example/app @ abc123") {
		t.Errorf("audit show DIGEST: %v\n%s", err, out)
	}
}

// TestWalkthroughPackagesSearchAndReplay: after the walk-through, the
// packages its SBOM lists find the demo image with the versions found and
// where it ran; search and decisions find it; a replay of a stricter policy
// lists the decision that would flip, with reasons, and changes nothing.
func TestWalkthroughPackagesSearchAndReplay(t *testing.T) {
	d := walkthrough(t)
	d.report(t, d.digest) // the reuse counts are flushed

	log4j := "pkg:maven/org.apache.logging.log4j/log4j-core"
	out, err := run(t, d.auditor, d.srv, "audit", "packages", log4j, "--range", "vers:maven/<2.17.1", "-o", "json")
	if err != nil {
		t.Fatalf("audit packages: %v\n%s", err, out)
	}
	var page wire.PackagesResponse
	_ = json.Unmarshal([]byte(out), &page)
	if len(page.Matches) != 1 || page.Matches[0].Digest != d.digest || len(page.Matches[0].Packages) != 1 || page.Matches[0].Packages[0].Version != "2.16.0" ||
		len(page.Matches[0].Admissions) != 1 || page.Matches[0].Admissions[0].Namespace != "demo" {
		t.Errorf("log4j-core below 2.17.1: %s", out)
	}
	for _, rng := range []string{"vers:maven/>=2.17.1", "vers:maven/<2.16.0"} {
		if out, err := run(t, d.auditor, d.srv, "audit", "packages", log4j, "--range", rng); err != nil || !strings.Contains(out, "No artifact holds it.") {
			t.Errorf("log4j-core %s: %v\n%s", rng, err, out)
		}
	}
	if out, err := run(t, d.auditor, d.srv, "audit", "packages", "--license", "apache-2.0"); err != nil || !strings.Contains(out, d.digest) || !strings.Contains(out, "ran in demo Pod/web") {
		t.Errorf("by license: %v\n%s", err, out)
	}
	if out, err := run(t, d.auditor, d.srv, "audit", "packages", "--name", "log4j-core", "--type", "maven"); err != nil || !strings.Contains(out, "version 2.16.0") {
		t.Errorf("by name and type: %v\n%s", err, out)
	}
	for args, want := range map[string]string{
		"audit packages " + log4j + " --range vers:npm/<1":          "does not order maven",
		"audit packages " + log4j + " --range vers:maven/<":         "constraint without a version",
		"audit packages " + log4j + " --range <2.17.1":              `does not start with "vers:"`,
		"audit packages pkg:maven --range vers:maven/<1":            "purl",
		"audit packages " + log4j + " --limit 5000":                 "limit must be 1 to 1000",
		"audit search --limit 1001":                                 "limit must be 1 to 1000",
		"audit decisions --cursor nonsense":                         "bad cursor",
		"audit search --key nokey":                                  "nokey",
		"audit show sha256:nothex":                                  "want sha256:<64 hex digits>",
		"audit decisions --digest sha256:nothex":                    "want sha256:<64 hex digits>",
		"audit packages " + log4j + "@2.16.0 --range vers:maven/<3": "not both",
	} {
		_, err := run(t, d.auditor, append([]string{d.srv}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want a 400 saying %q", args, err, want)
		}
	}

	for _, args := range [][]string{
		{"--source-repo", "https://git.example/app", "--commit", "abc123"},
		{"--signed-by", "ci"},
		{"--key", "default"},
		{"--predicate-type", "spdxjson"},
		{"--repository", d.repository, "--since", "1h"},
	} {
		out, err := run(t, d.auditor, append([]string{d.srv, "audit", "search", "-o", "json"}, args...)...)
		var res wire.ArtifactsResponse
		_ = json.Unmarshal([]byte(out), &res)
		if err != nil || len(res.Artifacts) != 1 || res.Artifacts[0].Digest != d.digest {
			t.Errorf("audit search %v: %v\n%s", args, err, out)
		}
	}
	if out, err := run(t, d.auditor, d.srv, "audit", "search", "--commit", "def456"); err != nil || strings.Contains(out, d.digest) {
		t.Errorf("another commit: %v\n%s", err, out)
	}
	out, err = run(t, d.auditor, d.srv, "audit", "decisions", "--namespace", "demo")
	if err != nil || !strings.Contains(out, "ALLOW policy demo") || !strings.Contains(out, "reused 1× in demo Pod/web") {
		t.Errorf("decisions in namespace demo (reused there): %v\n%s", err, out)
	}
	if out, err := run(t, d.auditor, d.srv, "audit", "decisions", "--allowed", "false"); err != nil || strings.Contains(out, "ALLOW") {
		t.Errorf("denies only: %v\n%s", err, out)
	}

	// A stricter policy: the SBOM must not hold log4j-core below 2.17.1, and
	// a vulnerability scan is required.
	strict := filepath.Join(t.TempDir(), "strict.yaml")
	_ = os.WriteFile(strict, []byte(`name: demo-strict
match: {images: ["`+d.host+`/demo/**"], namespaces: [demo]}
signatures: {keys: [default]}
attestations:
  - predicateType: https://slsa.dev/provenance/v1
    origin: attestd
  - predicateType: https://spdx.dev/Document
    condition: '!predicate.packages.exists(p, p.name == "log4j-core" && p.versionInfo.startsWith("2.16."))'
  - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
`), 0o600)
	before, _ := d.s.Admin.Events(context.Background(), clientEvents())
	out, err = run(t, d.auditor, d.srv, "policy", "replay", strict, "--since", "1h", "-o", "json")
	if err != nil {
		t.Fatalf("policy replay: %v\n%s", err, out)
	}
	var rep wire.ReplayReport
	_ = json.Unmarshal([]byte(out), &rep)
	if rep.Policy != "demo-strict" || rep.Decisions != 1 || rep.Judged != 1 || len(rep.Flips) != 1 {
		t.Fatalf("replay report: %s", out)
	}
	f := rep.Flips[0]
	if f.Decision.ID != d.decisionID || f.Recorded != "allow" || f.Candidate != "deny" || len(f.Reasons) != 2 ||
		!strings.Contains(f.Reasons[0], "condition is false") || !strings.Contains(f.Reasons[1], "no attestation of this type") ||
		len(f.Decision.Reuses) != 1 || f.Decision.Reuses[0].Namespace != "demo" {
		t.Errorf("the flip: %+v", f)
	}
	out, err = run(t, d.auditor, d.srv, "policy", "replay", strict, "--since", "1h")
	if err != nil || !strings.Contains(out, "ALLOW → DENY") || !strings.Contains(out, "would fail: attestation https://cosign.sigstore.dev/attestation/vuln/v1") || !strings.Contains(out, "1 would flip") {
		t.Errorf("policy replay text: %v\n%s", err, out)
	}
	// The same policy as loaded flips nothing.
	same := filepath.Join(t.TempDir(), "same.yaml")
	_ = os.WriteFile(same, []byte("name: demo\nmatch: {images: [\""+d.host+"/demo/**\"], namespaces: [demo]}\nsignatures: {keys: [default]}\nattestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    origin: attestd\n"), 0o600)
	if out, err := run(t, d.auditor, d.srv, "policy", "replay", same, "--since", "1h"); err != nil || !strings.Contains(out, "1 unchanged, 0 would flip") {
		t.Errorf("replay of the loaded policy: %v\n%s", err, out)
	}
	after, _ := d.s.Admin.Events(context.Background(), clientEvents())
	if len(after.Events) != len(before.Events) {
		t.Errorf("a replay recorded %d events; it changes nothing", len(after.Events)-len(before.Events))
	}
	if _, err := run(t, d.verifier, d.srv, "verify", d.image, "--policy", "demo-strict"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("the replayed candidate was loaded: %v", err)
	}
}

// TestAuditorReadsEverythingWritesNothing: the auditor role reads every
// audit view and is refused every write, and nothing is recorded for the
// refusals; other roles do not read the audit views.
func TestAuditorReadsEverythingWritesNothing(t *testing.T) {
	d := walkthrough(t)
	ctx := context.Background()
	pol := filepath.Join(t.TempDir(), "p.yaml")
	_ = os.WriteFile(pol, []byte("name: p\nmatch: {images: [\""+d.host+"/demo/**\"]}\nsignatures: {keys: [default]}\n"), 0o600)
	for _, args := range [][]string{
		{"audit", "show", d.image},
		{"audit", "search"},
		{"audit", "decisions"},
		{"audit", "packages", "--license", "Apache-2.0"},
		{"audit", "events"},
		{"policy", "replay", pol},
	} {
		if out, err := run(t, d.auditor, append([]string{d.srv}, args...)...); err != nil {
			t.Errorf("auditor %v: %v\n%s", args, err, out)
		}
	}
	before, _ := d.s.Admin.Events(ctx, clientEvents())
	archive := filepath.Join(t.TempDir(), "x.tar")
	img, _ := random.Image(256, 1)
	ref, _ := name.NewTag("example.com/x:v1")
	_ = tarball.WriteToFile(archive, ref, img)
	for _, args := range [][]string{
		{"sign", d.image},
		{"attest", d.image, "--type", "spdxjson", "--predicate", filepath.Join("..", "..", "attest", "testdata", "spdx.json")},
		{"provenance", d.image, "--source-repo", "https://git.example/app", "--commit", "x"},
		{"push", archive, "--repo", d.host + "/demo/other"},
		{"sbom", d.image},
		{"policy", "load", pol},
		{"keys", "rotate", "default"},
		{"keys", "revoke", "default", "--reason", "x"},
		{"tokens", "create", "--name", "x", "--role", "admin"},
		{"tokens", "list"},
	} {
		if _, err := run(t, d.auditor, append([]string{d.srv}, args...)...); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("auditor %v: %v, want 403", args, err)
		}
	}
	if err := remote.Write(mustTag(t, d.host+"/demo/pushed:v1"), img, remote.WithAuth(&authn.Basic{Username: "auditor", Password: d.auditor})); err == nil {
		t.Error("the auditor pushed to the registry")
	}
	after, _ := d.s.Admin.Events(ctx, clientEvents())
	if len(after.Events) != len(before.Events) {
		t.Errorf("refused writes recorded %d events", len(after.Events)-len(before.Events))
	}
	for _, role := range []string{"signer", "verifier"} {
		tok := d.s.Token(t, role)
		for _, args := range [][]string{
			{"audit", "show", d.repository + "@" + d.digest},
			{"audit", "search"},
			{"audit", "decisions"},
			{"audit", "packages", "--license", "Apache-2.0"},
			{"policy", "replay", pol},
		} {
			if _, err := run(t, tok, append([]string{d.srv}, args...)...); err == nil || !strings.Contains(err.Error(), "403") {
				t.Errorf("%s %v: %v, want 403", role, args, err)
			}
		}
	}
}

func clientEvents() client.EventQuery { return client.EventQuery{Limit: 1000} }

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// ciCycloneDX is a CycloneDX SBOM a CI system made of an image holding
// Debian's bash (the same version as the SBOM test image's) and an RPM.
const ciCycloneDX = `{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[
 {"type":"library","name":"bash","version":"5.2.15-2+b2","purl":"pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12","licenses":[{"license":{"id":"GPL-3.0-or-later"}}]},
 {"type":"library","name":"openssl-libs","version":"3.0.7-27.el9","purl":"pkg:rpm/redhat/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1"}]}`

// TestAuditPackagesOfTheSBOMImage: the SBOM attestd makes of the SBOM test
// image (its dpkg database holds bash 5.2.15-2+b2) is indexed by package,
// and so is a CycloneDX SBOM uploaded by CI: a range bash's version meets
// lists both, with where they were admitted; a range it does not meet lists
// neither.
func TestAuditPackagesOfTheSBOMImage(t *testing.T) {
	s := testenv.Start(t, nil)
	srv, host := "--server="+s.URL, s.RegistryHost
	signer := s.ScopedToken(t, []string{host + "/sbom/**"}, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	made := mustTag(t, host+"/sbom/app:v1")
	img := testenv.SBOMImage(t)
	if err := remote.Write(made, img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	if out, err := run(t, signer, srv, "sbom", made.String(), "--wait"); err != nil || !strings.Contains(out, "completed") {
		t.Fatalf("sbom --wait: %v\n%s", err, out)
	}
	_, ciDigest, _ := testenv.PushRandom(t, host, "sbom/ci", auth)
	cdx := filepath.Join(t.TempDir(), "bom.json")
	_ = os.WriteFile(cdx, []byte(ciCycloneDX), 0o600)
	if out, err := run(t, signer, srv, "attest", ciDigest.String(), "--type", "cyclonedx", "--predicate", cdx); err != nil {
		t.Fatalf("attest a CycloneDX SBOM: %v\n%s", err, out)
	}
	// The SBOM image is admitted in prod.
	pol := filepath.Join(t.TempDir(), "prod.yaml")
	_ = os.WriteFile(pol, []byte("name: prod\nmatch: {images: [\""+host+"/sbom/**\"], namespaces: [prod]}\nsignatures: {keys: [default]}\n"), 0o600)
	if _, err := run(t, s.AdminToken, srv, "policy", "load", pol); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, signer, srv, "sign", made.String()); err != nil {
		t.Fatal(err)
	}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"Deployment"},` +
		`"namespace":"prod","operation":"CREATE","object":{"metadata":{"name":"shell"},"spec":{"template":{"spec":{"containers":[{"name":"sh","image":"` + host + `/sbom/app@` + h.String() + `"}]}}}}}}`
	if resp, err := s.Client(t, s.Token(t, "verifier")).Admission(context.Background(), []byte(review), false); err != nil || !strings.Contains(string(resp), `"allowed":true`) {
		t.Fatalf("admission: %v\n%s", err, resp)
	}

	auditor := s.Token(t, "auditor")
	out, err := run(t, auditor, srv, "audit", "packages", "pkg:deb/debian/bash", "--range", "vers:deb/<99", "-o", "json")
	if err != nil {
		t.Fatalf("audit packages: %v\n%s", err, out)
	}
	var page wire.PackagesResponse
	_ = json.Unmarshal([]byte(out), &page)
	found := map[string]wire.PackageMatch{}
	for _, m := range page.Matches {
		found[m.Digest] = m
	}
	if len(page.Matches) != 2 || page.Range != "vers:deb/<99" {
		t.Fatalf("bash below 99: want the SBOM test image and the CI one:\n%s", out)
	}
	if m := found[h.String()]; len(m.Packages) != 1 || m.Packages[0].Version != "5.2.15-2+b2" || m.Packages[0].Type != "deb" ||
		len(m.Admissions) != 1 || m.Admissions[0].Namespace != "prod" || m.Admissions[0].WorkloadKind != "Deployment" || m.Admissions[0].WorkloadName != "shell" {
		t.Errorf("the SBOM test image (attestd's SPDX): %+v", m)
	}
	if m := found[ciDigest.DigestStr()]; len(m.Packages) != 1 || m.Packages[0].Version != "5.2.15-2+b2" || len(m.Admissions) != 0 {
		t.Errorf("the CI image (its CycloneDX): %+v", m)
	}
	out, err = run(t, auditor, srv, "audit", "packages", "pkg:deb/debian/bash", "--range", "vers:deb/<99")
	if err != nil || !strings.Contains(out, host+"/sbom/app@"+h.String()) || !strings.Contains(out, "ran in prod Deployment/shell") || !strings.Contains(out, "version 5.2.15-2+b2") {
		t.Errorf("audit packages (text): %v\n%s", err, out)
	}
	for _, rng := range []string{"vers:deb/<5.2.15-2", "vers:deb/>=5.2.15-2+b3", "vers:deb/!=5.2.15-2+b2"} {
		if out, err := run(t, auditor, srv, "audit", "packages", "pkg:deb/debian/bash", "--range", rng); err != nil || !strings.Contains(out, "No artifact holds it.") {
			t.Errorf("bash %s (its version does not meet it): %v\n%s", rng, err, out)
		}
	}
	if out, err := run(t, auditor, srv, "audit", "packages", "pkg:deb/debian/bash@5.2.15-2+b2"); err != nil || strings.Count(out, "version 5.2.15-2+b2") != 2 {
		t.Errorf("bash at its version: %v\n%s", err, out)
	}
	// The epoch in an RPM purl orders the version.
	if out, err := run(t, auditor, srv, "audit", "packages", "pkg:rpm/redhat/openssl-libs", "--range", "vers:rpm/>=1:3.0"); err != nil || !strings.Contains(out, ciDigest.DigestStr()) {
		t.Errorf("openssl-libs with its epoch: %v\n%s", err, out)
	}
	if out, err := run(t, auditor, srv, "audit", "packages", "--name", "libc6", "--type", "deb"); err != nil || !strings.Contains(out, h.String()) || strings.Contains(out, ciDigest.DigestStr()) {
		t.Errorf("libc6 by name: %v\n%s", err, out)
	}
	// audit show counts the SBOM's packages.
	out, err = run(t, auditor, srv, "audit", "show", made.String())
	if err != nil || !strings.Contains(out, "SBOMs\n  spdx, ") || !strings.Contains(out, "origin attestd") {
		t.Errorf("audit show of the SBOM image: %v\n%s", err, out)
	}
}
