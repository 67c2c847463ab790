package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/internal/testenv"
)

// BenchmarkSignVsCosignCLI signs fresh images on the embedded registry with
// attestd's API (both copies: legacy tag and bundle referrer) and, as the
// baseline measured in the same run, with `cosign sign --key` (v3, one bundle
// referrer) using the same key. It reports both times and their ratio.
func BenchmarkSignVsCosignCLI(b *testing.B) {
	cosign3 := os.Getenv("ATTESTD_COSIGN3")
	if cosign3 == "" {
		b.Skip("ATTESTD_COSIGN3 is not set (make bench sets it)")
	}
	ctx := context.Background()
	s := testenv.Start(b, nil)
	signer := s.Token(b, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	cl := s.Client(b, signer)

	dir := b.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.RegistryHost, base64.StdEncoding.EncodeToString([]byte("ci:"+signer)))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(s.DataDir, "cosign.password"))
	if err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "DOCKER_CONFIG="+dir, "COSIGN_PASSWORD="+strings.TrimSpace(string(pw)), "TUF_ROOT="+b.TempDir())
	sc := filepath.Join(dir, "sc.json")
	if out, err := exec.Command(cosign3, "signing-config", "create", "--out", sc).CombinedOutput(); err != nil {
		b.Fatalf("signing-config: %v\n%s", err, out)
	}

	var attestd, cli time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, d1, _ := testenv.PushRandom(b, s.RegistryHost, fmt.Sprintf("bench/a%d", i), auth)
		_, d2, _ := testenv.PushRandom(b, s.RegistryHost, fmt.Sprintf("bench/c%d", i), auth)
		b.StartTimer()

		t0 := time.Now()
		if _, err := cl.Sign(ctx, d1.String()); err != nil {
			b.Fatal(err)
		}
		attestd += time.Since(t0)

		t1 := time.Now()
		cmd := exec.Command(cosign3, "sign", "--yes", "--key", filepath.Join(s.DataDir, "cosign.key"),
			"--signing-config", sc, "--allow-http-registry=true", d2.String())
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("cosign sign: %v\n%s", err, out)
		}
		cli += time.Since(t1)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(attestd.Milliseconds())/n, "attestd-ms/sign")
	b.ReportMetric(float64(cli.Milliseconds())/n, "cosign-cli-ms/sign")
	b.ReportMetric(float64(attestd)/float64(cli), "attestd/cosign-ratio")
}
