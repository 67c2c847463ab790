package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// need returns the value of env var k, naming what provides it. Under CI a
// missing dependency fails the test; elsewhere it skips with the reason.
func need(t *testing.T, k, what string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: %s", k, what)
		}
		t.Skipf("%s is not set: %s (make test sets it)", k, what)
	}
	return v
}

type cosignCLI struct {
	name, path string
}

func cosigns(t *testing.T) []cosignCLI {
	return []cosignCLI{
		{"v2", need(t, "ATTESTD_COSIGN2", "path of the cosign v2 CLI, built by make tools")},
		{"v3", need(t, "ATTESTD_COSIGN3", "path of the cosign v3 CLI, built by make tools")},
	}
}

// run runs the cosign CLI with a bounded time and returns its output.
func (c cosignCLI) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.path, args...)
	// No TUF fetches, no network beyond loopback: keyed verification only.
	cmd.Env = append(os.Environ(), "TUF_ROOT="+t.TempDir(), "SIGSTORE_NO_CACHE=1", "COSIGN_EXPERIMENTAL=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// cliCase signs an image on one registry with attestd and checks it with
// the cosign CLIs: first the bundle referrer (v3 by default; v2.6 detects
// bundles and needs attestd's trusted root), then the legacy `.sig` tag
// (v3 with --new-bundle-format=false; v2 once the referrer is gone).
func cliCase(t *testing.T, s *testenv.Server, host string, auth authn.Authenticator) {
	ctx := context.Background()
	tag, want, _ := testenv.PushRandom(t, host, "interop/app", auth)
	_, unsigned, _ := testenv.PushRandom(t, host, "interop/unsigned", auth)
	res, err := s.Client(t, s.Token(t, "signer")).Sign(ctx, tag.String())
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if res.Digest != want.DigestStr() {
		t.Fatalf("signed %s, pushed %s", res.Digest, want.DigestStr())
	}
	var referrer string
	for _, l := range res.Locations {
		if l.Kind == "referrer" {
			referrer = l.Ref
		}
	}
	pub := s.PublicKeyPEM(t)
	other := testenv.Start(t, nil).PublicKeyPEM(t)
	trustedRoot := s.TrustedRoot(t)
	c2, c3 := cosigns(t)[0], cosigns(t)[1]
	common := []string{"verify", "--insecure-ignore-tlog=true", "--allow-http-registry=true"}

	check := func(t *testing.T, c cosignCLI, marker string, extra ...string) {
		t.Helper()
		args := append(append([]string{}, common...), extra...)
		out, err := c.run(t, append(args, "--key", pub, want.String())...)
		if err != nil {
			t.Fatalf("cosign %s rejected attestd's signature: %v\n%s", c.name, err, out)
		}
		if !strings.Contains(out, want.DigestStr()) || !strings.Contains(out, marker) {
			t.Errorf("cosign %s output lacks the digest or %q:\n%s", c.name, marker, out)
		}
		if out, err := c.run(t, append(args, "--key", pub, unsigned.String())...); err == nil {
			t.Errorf("cosign %s verified an unsigned image:\n%s", c.name, out)
		}
		if out, err := c.run(t, append(args, "--key", other, want.String())...); err == nil {
			t.Errorf("cosign %s verified with the wrong key:\n%s", c.name, out)
		}
	}
	t.Run("v3/bundle", func(t *testing.T) { check(t, c3, bundleMarker) })
	t.Run("v2/bundle", func(t *testing.T) { check(t, c2, bundleMarker, "--trusted-root", trustedRoot) })
	t.Run("v3/legacy", func(t *testing.T) { check(t, c3, legacyMarker, "--new-bundle-format=false") })
	t.Run("v2/legacy", func(t *testing.T) {
		// cosign v2.6 prefers a bundle when one exists; remove the referrer
		// so that it reads the legacy tag.
		r, err := name.NewDigest(referrer)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Delete(r, remote.WithAuth(auth)); err != nil {
			t.Fatalf("delete referrer: %v", err)
		}
		check(t, c2, legacyMarker)
	})
}

// What cosign prints for a verified bundle and for a verified legacy signature.
const (
	bundleMarker = "https://sigstore.dev/cosign/sign/v1"
	legacyMarker = "cosign container image signature"
)

func TestCosignCLIEmbeddedRegistry(t *testing.T) {
	s := testenv.Start(t, nil)
	// An admin token: the case deletes a referrer, which only an admin may.
	cliCase(t, s, s.RegistryHost, &authn.Basic{Username: "admin", Password: s.AdminToken})
}

func TestCosignCLIDockerRegistry(t *testing.T) {
	host := need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	s := testenv.Start(t, func(c *app.Config) { c.Registries = []app.Registry{{Host: host}} })
	cliCase(t, s, host, authn.Anonymous)
}
