package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"gopkg.in/yaml.v3"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/internal/testenv/oidcprovider"
	"github.com/attestd/attestd/service/identity"
	"github.com/attestd/attestd/storage/index"
)

func run(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("ATTESTD_TOKEN", token)
	var out bytes.Buffer
	c := root()
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestAttestctl(t *testing.T) {
	s := testenv.Start(t, nil)
	srv := "--server=" + s.URL

	out, err := run(t, s.AdminToken, srv, "tokens", "create", "--name", "ci", "--role", "signer", "--repository", s.RegistryHost+"/ctl/**", "-o", "json")
	if err != nil {
		t.Fatalf("tokens create: %v\n%s", err, out)
	}
	var tok struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || !strings.HasPrefix(tok.Secret, "atd_") {
		t.Fatalf("tokens create -o json: %q (%v)", out, err)
	}

	tag, d, _ := testenv.PushRandom(t, s.RegistryHost, "ctl/app", &authn.Basic{Username: "ci", Password: tok.Secret})
	out, err = run(t, tok.Secret, srv, "sign", tag.String())
	if err != nil {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Signed "+d.String()) || !strings.Contains(out, "legacy-tag") || !strings.Contains(out, "referrer") {
		t.Errorf("sign output:\n%s", out)
	}

	out, err = run(t, "", srv, "keys", "--pem")
	if err != nil || !strings.HasPrefix(out, "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("keys --pem: %v\n%s", err, out)
	}

	out, err = run(t, s.AdminToken, srv, "tokens", "list")
	if err != nil || !strings.Contains(out, tok.ID) || strings.Contains(out, tok.Secret) || !strings.Contains(out, s.RegistryHost+"/ctl/**") {
		t.Errorf("tokens list: %v\n%s", err, out)
	}

	auditor := s.Token(t, "auditor")
	out, err = run(t, auditor, srv, "audit", "events", "--digest", d.DigestStr())
	if err != nil || !strings.Contains(out, "signature.created") || !strings.Contains(out, "ci") || !strings.Contains(out, "referrer:sha256:") || !strings.Contains(out, "(v1)") {
		t.Errorf("audit events --digest: %v\n%s", err, out)
	}
	out, err = run(t, auditor, srv, "audit", "events", "--kind", "token.*", "--all", "-o", "json")
	if err != nil || strings.Count(out, `"kind": "token.created"`) < 2 || strings.Contains(out, tok.Secret) {
		t.Errorf("audit events --kind token.*: %v\n%s", err, out)
	}
	if _, err := run(t, tok.Secret, srv, "audit", "events"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a signer reading the record: %v, want 403", err)
	}

	t.Run("failures are clear and non-zero", func(t *testing.T) {
		_, err := run(t, tok.Secret, srv, "tokens", "list")
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "request id") {
			t.Errorf("signer listing tokens: %v", err)
		}
		_, err = run(t, "", srv, "sign", tag.String())
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("sign without token: %v", err)
		}
		_, err = run(t, tok.Secret, "--server=http://127.0.0.1:1", "sign", tag.String())
		if err == nil {
			t.Error("unreachable server: no error")
		}
		_, err = run(t, tok.Secret, srv, "sign", tag.String(), "-o", "yaml")
		if err == nil || !strings.Contains(err.Error(), "output") {
			t.Errorf("bad output format: %v", err)
		}
	})

	out, err = run(t, s.AdminToken, srv, "tokens", "revoke", tok.ID)
	if err != nil || !strings.Contains(out, "Revoked") {
		t.Errorf("revoke: %v\n%s", err, out)
	}
	if _, err := run(t, tok.Secret, srv, "sign", tag.String()); err == nil {
		t.Error("revoked token still signs")
	}
}

func TestAttestctlArtifactsAndAttestations(t *testing.T) {
	s := testenv.Start(t, nil)
	srv := "--server=" + s.URL
	signer := s.Token(t, "signer")
	dir := t.TempDir()

	img, _ := random.Image(512, 1)
	want, _ := img.Digest()
	tag, _ := name.NewTag("example.com/app:v1")
	archive := filepath.Join(dir, "app.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	repo := s.RegistryHost + "/ctl/built"
	out, err := run(t, signer, srv, "push", archive, "--repo", repo, "--tag", "v1", "-o", "json")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	var pushed struct{ Digest, Image string }
	if err := json.Unmarshal([]byte(out), &pushed); err != nil || pushed.Digest != want.String() {
		t.Fatalf("push printed %s (%v), want digest %s", out, err, want)
	}
	plain := filepath.Join(dir, "notes.txt")
	_ = os.WriteFile(plain, []byte("release notes"), 0o600)
	if out, err := run(t, signer, srv, "push", plain, "--repo", s.RegistryHost+"/ctl/notes"); err != nil || !strings.Contains(out, "(file,") {
		t.Errorf("push a plain file: %v\n%s", err, out)
	}

	sbom := filepath.Join("..", "..", "attest", "testdata", "spdx.json")
	if out, err := run(t, signer, srv, "attest", repo+":v1", "--type", "spdxjson", "--predicate", sbom); err != nil || !strings.Contains(out, "https://spdx.dev/Document") {
		t.Errorf("attest: %v\n%s", err, out)
	}
	if out, err := run(t, signer, srv, "provenance", repo+":v1", "--source-repo", "https://git.example/app", "--commit", "abc123", "--material", "git+https://git.example/app@sha1:abc123"); err != nil || !strings.Contains(out, "https://slsa.dev/provenance/v1") {
		t.Errorf("provenance: %v\n%s", err, out)
	}
	out, err = run(t, signer, srv, "attestations", repo+":v1")
	if err != nil || strings.Count(out, "valid") < 4 || strings.Contains(out, "INVALID") {
		t.Errorf("attestations: %v\n%s", err, out)
	}
	if _, err := run(t, signer, srv, "attest", repo+":v1", "--type", "spdxjson", "--predicate", plain); err == nil {
		t.Error("attest with a predicate that is not JSON succeeded")
	}
}

func TestAttestctlVerifyAndPolicy(t *testing.T) {
	s := testenv.Start(t, nil)
	srv := "--server=" + s.URL
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	_ = os.WriteFile(pol, []byte("name: ctl\nmatch: {images: [\""+s.RegistryHost+"/ctl/**\"]}\nsignatures: {keys: [default]}\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("name: ctl\nmatch: {images: [x]}\nsignatures: {keys: [default], threshold: 3}\n"), 0o600)

	if out, err := run(t, "", "policy", "lint", pol); err != nil || !strings.Contains(out, "is valid") {
		t.Errorf("lint a good policy: %v\n%s", err, out)
	}
	if _, err := run(t, "", "policy", "lint", bad); err == nil || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("lint a bad policy: %v", err)
	}
	if out, err := run(t, s.AdminToken, srv, "policy", "load", pol); err != nil || !strings.Contains(out, "Loaded policy ctl") {
		t.Fatalf("load: %v\n%s", err, out)
	}
	signer := s.Token(t, "signer")
	_, signed, _ := testenv.PushRandom(t, s.RegistryHost, "ctl/signed", &authn.Basic{Username: "ci", Password: signer})
	_, unsigned, _ := testenv.PushRandom(t, s.RegistryHost, "ctl/unsigned", &authn.Basic{Username: "ci", Password: signer})
	if _, err := run(t, signer, srv, "sign", signed.String()); err != nil {
		t.Fatal(err)
	}
	verifier := s.Token(t, "verifier")
	if out, err := run(t, verifier, srv, "verify", signed.String(), "--policy", "ctl"); err != nil || !strings.HasPrefix(out, "ALLOW") {
		t.Errorf("verify a signed image: %v\n%s", err, out)
	}
	out, err := run(t, verifier, srv, "verify", unsigned.String(), "--policy", "ctl")
	if err == nil || !strings.HasPrefix(out, "DENY") || !strings.Contains(out, "FAIL signatures") {
		t.Errorf("verify an unsigned image: exit error %v\n%s", err, out)
	}
}

func TestAttestctlSBOM(t *testing.T) {
	s := testenv.Start(t, nil)
	srv := "--server=" + s.URL
	signer := s.Token(t, "signer")
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "ctl/sbom", &authn.Basic{Username: "ci", Password: signer})
	out := filepath.Join(t.TempDir(), "sbom.spdx.json")
	printed, err := run(t, signer, srv, "sbom", d.String(), "--wait", "--out", out)
	if err != nil || !strings.Contains(printed, "completed") {
		t.Fatalf("sbom --wait: %v\n%s", err, printed)
	}
	b, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(b), `"spdxVersion":"SPDX-2.3"`) {
		t.Errorf("written SBOM: %v\n%.200s", err, b)
	}
	if _, err := run(t, signer, srv, "sbom", d.String(), "-f", "swid"); err == nil {
		t.Error("an unknown format was accepted")
	}
}

// TestWalkthroughRecord follows the README's walk-through on the demo image
// (upload, provenance, attestation, signature, a policy, verify, one
// admission review) and checks that every write and decision left an event
// with its actor, key and registry locations, listed by audit events.
func TestWalkthroughRecord(t *testing.T) {
	s := testenv.Start(t, nil)
	srv := "--server=" + s.URL
	host := s.RegistryHost
	out, err := run(t, s.AdminToken, srv, "tokens", "create", "--name", "ci", "--role", "signer", "--repository", host+"/demo/**", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Secret string }
	_ = json.Unmarshal([]byte(out), &tok)
	signer := tok.Secret

	img, _ := random.Image(512, 1)
	archive := filepath.Join(t.TempDir(), "hello.tar")
	ref, _ := name.NewTag("example.com/hello:v1")
	if err := tarball.WriteToFile(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	demo := host + "/demo/app:v1"
	for _, args := range [][]string{
		{"push", archive, "--repo", host + "/demo/app", "--tag", "v1"},
		{"provenance", demo, "--source-repo", "https://git.example/app", "--commit", "abc123"},
		{"attest", demo, "--type", "spdxjson", "--predicate", filepath.Join("..", "..", "attest", "testdata", "spdx.json")},
		{"sign", demo},
	} {
		if out, err := run(t, signer, append([]string{srv}, args...)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	pol := filepath.Join(t.TempDir(), "demo.yaml")
	_ = os.WriteFile(pol, []byte("name: demo\nmatch: {images: [\""+host+"/demo/**\"], namespaces: [demo]}\nsignatures: {keys: [default]}\nattestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    origin: attestd\n"), 0o600)
	if out, err := run(t, s.AdminToken, srv, "policy", "load", pol); err != nil {
		t.Fatalf("policy load: %v\n%s", err, out)
	}
	verifier := s.Token(t, "verifier")
	out, err = run(t, verifier, srv, "verify", demo, "--policy", "demo", "-o", "json")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	var dec struct{ Digest string }
	_ = json.Unmarshal([]byte(out), &dec)
	waitVSA(t, s, verifier, host+"/demo/app", dec.Digest)
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"demo-1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"namespace":"demo","operation":"CREATE","object":{"metadata":{"name":"web"},"spec":{"containers":[{"name":"web","image":"` + host + `/demo/app@` + dec.Digest + `"}]}}}}`
	resp, err := s.Client(t, verifier).Admission(context.Background(), []byte(review), false)
	if err != nil || !strings.Contains(string(resp), `"allowed":true`) {
		t.Fatalf("admission of the demo image: %v\n%s", err, resp)
	}

	out, err = run(t, s.Token(t, "auditor"), srv, "audit", "events", "--digest", dec.Digest, "-o", "json")
	if err != nil {
		t.Fatalf("audit events: %v\n%s", err, out)
	}
	var page wire.EventsResponse
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range page.Events {
		seen[e.Kind]++
		// attestd signs the allow's VSA in a job: no request.
		if e.Actor.Name == "" || (e.RequestID == "" && e.Kind != "vsa.issued") || e.Repository != host+"/demo/app" {
			t.Errorf("event without actor, request id or subject: %+v", e)
		}
		switch e.Kind {
		case "signature.created", "attestation.created", "provenance.created":
			var locs []wire.Location
			_ = json.Unmarshal(e.Locations, &locs)
			if e.Key == nil || e.Key.ID != s.KeyID || len(locs) != 2 || locs[0].Content == "" || locs[1].Content == "" {
				t.Errorf("%s without its key or both registry locations: %+v", e.Kind, e)
			}
		case "decision.made":
			var d struct{ Policy string }
			if _ = json.Unmarshal(e.Detail, &d); d.Policy != "demo" {
				t.Errorf("decision without its policy: %s", e.Detail)
			}
		}
	}
	for kind, want := range map[string]int{"artifact.uploaded": 1, "provenance.created": 1, "attestation.created": 1, "signature.created": 1, "decision.made": 1, "vsa.issued": 1} {
		if seen[kind] != want {
			t.Errorf("%d %s events about the demo image, want %d (all: %v)", seen[kind], kind, want, seen)
		}
	}
	// The admission reused the verify's allow from the verdict cache: it is
	// counted against that decision, with where it was admitted, within a
	// second or so.
	var decisionID string
	for _, e := range page.Events {
		if e.Kind == "decision.made" {
			var d struct {
				ID string `json:"decision_id"`
			}
			_ = json.Unmarshal(e.Detail, &d)
			decisionID = d.ID
		}
	}
	db, err := index.OpenSQLite(context.Background(), filepath.Join(s.DataDir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reuses []index.Reuse
	for range 60 {
		if reuses, err = db.Reuses(context.Background(), decisionID); err == nil && len(reuses) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(reuses) != 1 || reuses[0].Namespace != "demo" || reuses[0].WorkloadKind != "Pod" || reuses[0].WorkloadName != "web" || reuses[0].Count != 1 {
		t.Errorf("the admission's reuse of decision %s: %+v %v", decisionID, reuses, err)
	}
	checkWalkthroughLog(t, s, dec.Digest, signer, demo, len(page.Events))
}

// checkWalkthroughLog is the walk-through's done-when for the audit log:
// verify-log, with the log key pinned from `audit log-key`, proves that the
// demo image's upload, provenance, attestation, signature and decision are
// in the log under a signed checkpoint; a second run with --since proves
// the log grew consistently from the checkpoint the first run saved.
func checkWalkthroughLog(t *testing.T, s *testenv.Server, digest, signer, demo string, events int) {
	t.Helper()
	srv := "--server=" + s.URL
	dir := t.TempDir()
	key, err := run(t, "", srv, "audit", "log-key")
	if err != nil || !strings.HasPrefix(key, "attestd/") {
		t.Fatalf("audit log-key (anonymous): %q, %v", key, err)
	}
	keyFile, cpFile := filepath.Join(dir, "log.pub"), filepath.Join(dir, "checkpoint.txt")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	auditor := s.Token(t, "auditor")
	verify := func() verifyLogResult {
		t.Helper()
		out, err := run(t, auditor, srv, "audit", "verify-log", "--log-key", keyFile, "--digest", digest, "--since", cpFile, "-o", "json")
		if err != nil {
			t.Fatalf("audit verify-log: %v\n%s", err, out)
		}
		var res verifyLogResult
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
			t.Fatalf("verify-log -o json: %v\n%s", err, out)
		}
		return res
	}
	first := verify()
	kinds := map[string]int{}
	for _, it := range first.Included {
		kinds[it.Kind]++
	}
	for _, k := range []string{"artifact.uploaded", "provenance.created", "attestation.created", "signature.created", "decision.made"} {
		if kinds[k] != 1 {
			t.Errorf("verify-log proved %d %s events, want 1 (all: %v)", kinds[k], k, kinds)
		}
	}
	if len(first.Included) != events || first.Size < uint64(events) || first.Consistent != nil {
		t.Errorf("first verify-log: %d of %d events, size %d, consistent with %v", len(first.Included), events, first.Size, first.Consistent)
	}
	saved, err := os.ReadFile(cpFile)
	if err != nil || !strings.HasPrefix(string(saved), first.Origin+"\n") {
		t.Fatalf("the checkpoint was not saved: %q, %v", saved, err)
	}
	// The log grows (the demo image signed again), and the second run
	// proves the new checkpoint extends the saved one.
	if out, err := run(t, signer, srv, "sign", demo); err != nil {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	second := verify()
	if second.Consistent == nil || *second.Consistent != first.Size || second.Size <= first.Size || len(second.Included) != events+1 {
		t.Errorf("second verify-log: consistent with %v (want %d), size %d, %d events", second.Consistent, first.Size, second.Size, len(second.Included))
	}
}

// TestAttestctlCIIdentity: in a GitHub Actions job, attestctl asks the
// runner for an ID token with attestd's audience and signs and writes
// provenance with it, with no attestd secret stored in CI.
func TestAttestctlCIIdentity(t *testing.T) {
	p := oidcprovider.Start(t)
	s := testenv.Start(t, func(c *app.Config) {
		c.OIDC.Issuers = []identity.Issuer{{Name: "github", URL: p.Issuer, Audience: "attestd.ci", Kind: identity.KindGitHubActions}}
		c.OIDC.Rules = []identity.Rule{{Issuer: "github", When: `claims.repository == "acme/app" && claims.ref == "refs/heads/main"`,
			Roles: []string{"signer"}, Repositories: []string{"*/acme/app/**"}, Keys: []string{"default"}}}
	})
	tok := p.Token(t, oidcprovider.GitHubActions("attestd.ci", "acme/app", "refs/heads/main", "0123456789abcdef0123456789abcdef01234567"))
	runner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer runner-secret" || r.URL.Query().Get("audience") != "attestd.ci" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"value": tok})
	}))
	defer runner.Close()
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", runner.URL+"/token?api-version=2.0")
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
	srv := "--server=" + s.URL
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "acme/app/web", &authn.Basic{Username: "admin", Password: s.AdminToken})
	if out, err := run(t, "", srv, "sign", d.String()); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Errorf("in GitHub Actions without an audience: %v\n%s", err, out)
	}
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "http://runner.example/token")
	if out, err := run(t, "", srv, "--audience", "attestd.ci", "sign", d.String()); err == nil || !strings.Contains(err.Error(), "must be https") {
		t.Errorf("a plain-http token URL off this machine would carry the runner's token in clear: %v\n%s", err, out)
	}
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", runner.URL+"/token?api-version=2.0")
	if out, err := run(t, "", srv, "--audience", "attestd.ci", "sign", d.String()); err != nil {
		t.Fatalf("sign with the job's identity: %v\n%s", err, out)
	}
	if out, err := run(t, "", srv, "--audience", "attestd.ci", "provenance", d.String()); err != nil || !strings.Contains(out, "https://slsa.dev/provenance/v1") {
		t.Errorf("provenance with the job's identity (source from the claims): %v\n%s", err, out)
	}
	file := filepath.Join(t.TempDir(), "id-token")
	_ = os.WriteFile(file, []byte(tok+"\n"), 0o600)
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "")
	if out, err := run(t, "", srv, "--id-token-file", file, "sign", d.String()); err != nil {
		t.Errorf("sign with --id-token-file: %v\n%s", err, out)
	}
	if _, err := run(t, "", srv, "provenance", d.String()); err == nil {
		t.Error("provenance with no credential and no source succeeded")
	}
}

// TestCIExamplesUseRealFlags: every attestctl line of the example
// pipelines under deploy/ci names a command and flags attestctl has.
func TestCIExamplesUseRealFlags(t *testing.T) {
	for _, f := range []string{"github-actions.yml", "gitlab-ci.yml", "token-secret.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "ci", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".yml") {
			var doc map[string]any
			if err := yaml.Unmarshal(b, &doc); err != nil || len(doc) == 0 {
				t.Errorf("%s does not parse as YAML: %v", f, err)
			}
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if k := strings.Index(line, "#"); k >= 0 {
				line = line[:k] // comments
			}
			i := strings.Index(line, "attestctl ")
			if i < 0 || strings.Contains(line, "go install") {
				continue
			}
			cmdline := line[i+len("attestctl "):]
			if j := strings.IndexAny(cmdline, "|)"); j >= 0 {
				cmdline = cmdline[:j]
			}
			var argv []string
			for _, w := range strings.Fields(cmdline) {
				argv = append(argv, strings.Trim(w, `"'`))
			}
			c, rest, err := root().Find(argv)
			if err != nil || c.Name() == "attestctl" {
				t.Errorf("%s: %q is not an attestctl command: %v", f, cmdline, err)
				continue
			}
			if err := c.ParseFlags(rest); err != nil {
				t.Errorf("%s: %q: %v", f, cmdline, err)
			}
			n++
		}
		if n < 5 {
			t.Errorf("%s: only %d attestctl lines found", f, n)
		}
	}
}
