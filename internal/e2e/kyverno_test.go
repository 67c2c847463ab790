package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// kyvernoPolicy is deploy/kyverno/verify-attestd.yaml, the policy the
// README documents, with attestd's key and the test's images filled in.
func kyvernoPolicy(t *testing.T, pubPEM, images string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kyverno", "verify-attestd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(string(b), `registry.example.com/apps/*`, images)
	var out []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.TrimSpace(line) != "REPLACE WITH attestctl keys --pem" {
			out = append(out, line)
			continue
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		for _, k := range strings.Split(strings.TrimSpace(pubPEM), "\n") {
			if strings.HasPrefix(k, "-----") {
				continue // the template has the armour lines already
			}
			out = append(out, indent+k)
		}
	}
	return strings.Join(out, "\n")
}

// kyvernoCase: Kyverno's own CLI (kyverno apply, with registry access)
// passes a Pod whose image attestd signed and gave SLSA provenance, and
// fails an unsigned one and one signed without provenance.
func kyvernoCase(t *testing.T, s *testenv.Server, host string, auth authn.Authenticator) {
	kyverno := need(t, "ATTESTD_KYVERNO", "path of the Kyverno CLI, built by make tools")
	ctx := context.Background()
	_, good, _ := testenv.PushRandom(t, host, "kyv/good", auth)
	_, unsigned, _ := testenv.PushRandom(t, host, "kyv/unsigned", auth)
	_, noProv, _ := testenv.PushRandom(t, host, "kyv/noprov", auth)
	signer := s.Client(t, s.Token(t, "signer"))
	for _, d := range []string{good.String(), noProv.String()} {
		if _, err := signer.Sign(ctx, d); err != nil {
			t.Fatalf("sign %s: %v", d, err)
		}
	}
	if _, err := signer.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: good.String()}},
		Source: wire.Source{Repository: "https://git.example/app", Commit: strings.Repeat("a", 40)}}); err != nil {
		t.Fatalf("provenance: %v", err)
	}
	pub, err := os.ReadFile(s.PublicKeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(kyvernoPolicy(t, string(pub), host+"/kyv/*")), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := func(image string) (string, error) {
		pod := filepath.Join(dir, "pod.yaml")
		body := "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: default}\nspec:\n  containers:\n    - {name: app, image: \"" + image + "\"}\n"
		if err := os.WriteFile(pod, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, kyverno, "apply", policy, "--resource", pod, "--registry", "--detailed-results")
		// No TUF or Rekor here: keyed verification, loopback only.
		cmd.Env = append(os.Environ(), "TUF_ROOT="+t.TempDir(), "HOME="+t.TempDir(), "KYVERNO_EXPERIMENTAL=false")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	passFail := regexp.MustCompile(`pass: (\d+), fail: (\d+)`)
	counts := func(out string) (pass, fail int) {
		m := passFail.FindStringSubmatch(out)
		if m == nil {
			return -1, -1
		}
		pass, _ = strconv.Atoi(m[1])
		fail, _ = strconv.Atoi(m[2])
		return pass, fail
	}
	if out, err := apply(good.String()); err != nil {
		t.Errorf("Kyverno refused an image attestd signed and attested: %v\n%s", err, out)
	} else if p, f := counts(out); p < 1 || f != 0 {
		t.Errorf("Kyverno on the signed, attested image: pass %d, fail %d\n%s", p, f, out)
	}
	for image, why := range map[string]string{unsigned.String(): "no signatures found", noProv.String(): "no matching attestations"} {
		out, err := apply(image)
		if _, f := counts(out); err == nil || f < 1 || !strings.Contains(out, why) {
			t.Errorf("Kyverno on %s: %v, want a failure saying %q\n%s", image, err, why, out)
		}
	}
}

func TestKyvernoEmbeddedRegistry(t *testing.T) {
	s := testenv.Start(t, nil)
	kyvernoCase(t, s, s.RegistryHost, &authn.Basic{Username: "admin", Password: s.AdminToken})
}

func TestKyvernoDockerRegistry(t *testing.T) {
	host := need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	s := testenv.Start(t, func(c *app.Config) { c.Registries = []app.Registry{{Host: host}} })
	kyvernoCase(t, s, host, authn.Anonymous)
}
