package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/testenv"
)

// chromium finds the browser: $ATTESTD_CHROMIUM, else chromium on PATH.
// Under CI a missing browser fails the test; elsewhere it skips.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ATTESTD_CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no chromium on PATH and ATTESTD_CHROMIUM is not set: the browser test needs headless Chromium (.ci/run installs it)")
		}
		t.Skipf("no chromium on PATH and ATTESTD_CHROMIUM is not set: install Debian's chromium to run the browser test")
	}
	return p
}

// demo is the walk-through's chain: an image pushed, provenance with a
// source repository and commit, an SPDX SBOM, a signature, a policy and
// an allow.
type demo struct {
	s                          *testenv.Server
	repository, digest, decide string
	auditor                    string
}

func walkthrough(t *testing.T) demo {
	t.Helper()
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.ScopedToken(t, []string{s.RegistryHost + "/demo/**"}, "signer")
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "demo/app", &authn.Basic{Username: "ci", Password: signer})
	ci := s.Client(t, signer)
	if _, err := ci.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: d.String()}},
		Source: wire.Source{Repository: "https://git.example/app", Commit: "abc123"}}); err != nil {
		t.Fatalf("provenance: %v", err)
	}
	spdx, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", "spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ci.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: "https://spdx.dev/Document", Predicate: spdx}); err != nil {
		t.Fatalf("SBOM attestation: %v", err)
	}
	if _, err := ci.Sign(ctx, d.String()); err != nil {
		t.Fatalf("sign: %v", err)
	}
	pol := "name: demo\nmatch: {images: [\"" + s.RegistryHost + "/demo/**\"], namespaces: [demo]}\nsignatures: {keys: [default]}\n" +
		"attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    origin: attestd\n"
	if _, err := s.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		t.Fatalf("policy: %v", err)
	}
	dec, err := s.Client(t, s.Token(t, "verifier")).Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "demo"})
	if err != nil || !dec.Allow {
		t.Fatalf("verify: %+v %v", dec, err)
	}
	// It runs: an admission in namespace demo reuses the allow.
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"demo-1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"namespace":"demo","operation":"CREATE","object":{"metadata":{"name":"web"},"spec":{"containers":[{"name":"web","image":"` + d.String() + `"}]}}}}`
	if resp, err := s.Client(t, s.Token(t, "verifier")).Admission(ctx, []byte(review), false); err != nil || !strings.Contains(string(resp), `"allowed":true`) {
		t.Fatalf("admission of the demo image: %v\n%s", err, resp)
	}
	auditor := s.Token(t, "auditor")
	// Reuse counts are flushed each second: wait until the report has it.
	for i := 0; ; i++ {
		rep, err := s.Client(t, auditor).Artifact(ctx, d.DigestStr(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Admissions) > 0 {
			break
		}
		if i == 50 {
			t.Fatal("the admission is not in the report after 5 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return demo{s: s, repository: d.Context().String(), digest: d.DigestStr(), decide: dec.ID, auditor: auditor}
}

var spaces = regexp.MustCompile(`\s+`)

// TestBrowserWalksTheChain signs in with headless Chromium, finds the demo
// image, reads each node of its graph, filters decisions, signs out, and
// checks that the pages then send the browser to sign-in.
func TestBrowserWalksTheChain(t *testing.T) {
	exe := chromium(t)
	d := walkthrough(t)
	shots := os.Getenv("ATTESTD_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.Headless,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1600, 1000))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run its sandbox as root
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx); err != nil { // starts the browser, without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
	defer cancel()

	n := 0
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		n++
		p := filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(spaces.ReplaceAllString(s, " "))
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}

	// Signed out, the console sends the browser to sign-in.
	do("open the console", chromedp.Navigate(d.s.URL+"/ui/search"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := location(); !strings.HasSuffix(loc, "/ui/signin") {
		t.Fatalf("signed out, the console opened %s", loc)
	}
	shot("signin")
	do("sign in", chromedp.SendKeys(chromedp.ID("token"), d.auditor), chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.ID("repository")))

	// Search for the demo image and open it.
	do("search", chromedp.SendKeys(chromedp.ID("repository"), d.repository), chromedp.Submit(chromedp.ID("repository")),
		chromedp.WaitVisible(chromedp.CSS("a.digest")))
	shot("search")
	if got := text("a.digest"); got != d.digest {
		t.Fatalf("search found %q, want %s", got, d.digest)
	}
	do("open the artifact", chromedp.Click(chromedp.CSS("a.digest")), chromedp.WaitVisible(chromedp.CSS("svg.graph")))
	shot("artifact")

	for sel, want := range map[string][]string{
		"#node-source-0":        {"source https://git.example/app", "commit abc123"},
		"#node-build-0":         {"build https://", "commit abc123"},
		"#node-image":           {"image " + d.digest[:20]},
		"#node-sig-0":           {"signature", "key default (unversioned)", "valid"},
		"#node-sbom-0":          {"SBOM spdx, 1 packages", "valid"},
		"#node-dec-" + d.decide: {"ALLOW policy demo"},
		"#node-runs-0":          {"runs in demo", "Pod/web"},
	} {
		got := text(sel)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("node %s says %q, want %q in it", sel, got, w)
			}
		}
	}

	// From the keyboard alone: Tab reaches the signature's node, and Enter
	// follows it to the signature's evidence.
	focused := ""
	for range 40 {
		do("tab", chromedp.KeyEvent("\t"))
		id, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.activeElement ? document.activeElement.id : ''"))
		if err != nil {
			t.Fatal(err)
		}
		if focused = id; focused == "node-sig-0" {
			break
		}
	}
	if focused != "node-sig-0" {
		t.Fatalf("Tab never reached the signature node (last focus %q)", focused)
	}
	do("follow the node", chromedp.KeyEvent("\r"))
	if loc := location(); !strings.HasSuffix(loc, "#sig-0") {
		t.Errorf("Enter on the signature node opened %s, want its evidence #sig-0", loc)
	}

	// Filter the SBOM's packages.
	do("filter the SBOM", chromedp.SendKeys(chromedp.ID("name"), "log4j-core"), chromedp.Submit(chromedp.ID("name")),
		chromedp.WaitVisible(chromedp.CSS("ul.packages")))
	shot("sbom-filter")
	if got := text("ul.packages"); !strings.Contains(got, "pkg:maven/org.apache.logging.log4j/log4j-core@2.16.0") || !strings.Contains(got, "Apache-2.0") {
		t.Errorf("the SBOM filter shows %q", got)
	}

	// Filter decisions: no deny, one allow by policy demo.
	do("decisions, deny only", chromedp.Navigate(d.s.URL+"/ui/decisions"), chromedp.WaitVisible(chromedp.ID("allowed")),
		chromedp.SetValue(chromedp.ID("allowed"), "false"), chromedp.Submit(chromedp.ID("allowed")), chromedp.WaitVisible(chromedp.ID("none")))
	shot("decisions-deny")
	if loc := location(); !strings.Contains(loc, "allowed=false") {
		t.Errorf("the deny filter opened %s", loc)
	}
	do("decisions, allow by demo", chromedp.SetValue(chromedp.ID("allowed"), "true"), chromedp.SendKeys(chromedp.ID("policy"), "demo"),
		chromedp.Submit(chromedp.ID("policy")), chromedp.WaitVisible(chromedp.ID("dec-"+d.decide)))
	shot("decisions-allow")
	if got := text("#dec-" + d.decide); !strings.Contains(got, "ALLOW policy demo") || !strings.Contains(got, d.digest) {
		t.Errorf("the allow reads %q", got)
	}

	if strings.Contains(d.s.LogText(), d.auditor) {
		t.Errorf("the server logged the auditor's token")
	}

	// The key set and the audit log's checkpoint, verified against the log key.
	do("keys", chromedp.Navigate(d.s.URL+"/ui/keys"), chromedp.WaitVisible(chromedp.CSS("table")))
	if got := text("tbody"); !strings.Contains(got, "default (default)") || !strings.Contains(got, "active") {
		t.Errorf("the keys page reads %q", got)
	}
	do("audit log", chromedp.Navigate(d.s.URL+"/ui/log"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	shot("audit-log")
	if got := text("main"); !strings.Contains(got, "The latest checkpoint verifies") || !strings.Contains(got, "does not prove") {
		t.Errorf("the audit log page reads %q", got)
	}

	// Sign out; every page then goes to sign-in.
	do("sign out", chromedp.Click(chromedp.CSS("form.signout button")), chromedp.WaitVisible(chromedp.ID("token")))
	shot("signed-out")
	for _, p := range []string{"/ui/search", "/ui/artifact?digest=" + d.digest, "/ui/decisions", "/ui/keys", "/ui/log"} {
		do("open "+p, chromedp.Navigate(d.s.URL+p), chromedp.WaitVisible(chromedp.ID("token")))
		if loc := location(); !strings.HasSuffix(loc, "/ui/signin") {
			t.Errorf("after sign-out %s opened %s", p, loc)
		}
	}
}
