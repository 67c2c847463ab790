package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
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

// benchGate is a server with a policy requiring a signature, SLSA
// provenance and an SPDX SBOM (for admission, in namespace prod), a
// verifier client, and a function that pushes a fresh image meeting it.
func benchGate(b *testing.B) (*testenv.Server, *client.Client, func() name.Digest) {
	ctx := context.Background()
	s := testenv.Start(b, func(c *app.Config) { c.BuilderID = builderID })
	pol := fmt.Sprintf(`name: bench
match: {images: ["%s/bench/**"], namespaces: [prod]}
signatures: {keys: [default]}
attestations:
  - predicateType: https://slsa.dev/provenance/v1
    condition: predicate.runDetails.builder.id == "%s"
  - predicateType: https://spdx.dev/Document
    condition: '!predicate.packages.exists(p, has(p.licenseConcluded) && p.licenseConcluded == "GPL-3.0")'
`, s.RegistryHost, builderID)
	if _, err := s.Admin.PutPolicy(ctx, []byte(pol)); err != nil {
		b.Fatal(err)
	}
	signer := s.Token(b, "signer")
	sc := s.Client(b, signer)
	auth := &authn.Basic{Username: "ci", Password: signer}
	spdx, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", "spdx.json"))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	fresh := func() name.Digest {
		n++
		_, d, _ := testenv.PushRandom(b, s.RegistryHost, fmt.Sprintf("bench/app%d", n), auth)
		if _, err := sc.Sign(ctx, d.String()); err != nil {
			b.Fatal(err)
		}
		if _, err := sc.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: d.String()}}, Source: wire.Source{Repository: "https://git.example/app", Commit: "abc"}}); err != nil {
			b.Fatal(err)
		}
		if _, err := sc.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: attest.PredicateSPDX, Predicate: spdx}); err != nil {
			b.Fatal(err)
		}
		return d
	}
	return s, s.Client(b, s.Token(b, "verifier")), fresh
}

// BenchmarkGateColdVsCosignCLI times a cold decision (a fresh digest with a
// signature and two attestations) against, as the baseline measured in the
// same run, `cosign verify` plus two `cosign verify-attestation` on the same
// image. The goal is a cold verify 20 times faster than the CLIs.
func BenchmarkGateColdVsCosignCLI(b *testing.B) {
	cosign3 := os.Getenv("ATTESTD_COSIGN3")
	if cosign3 == "" {
		b.Skip("ATTESTD_COSIGN3 is not set (make bench sets it)")
	}
	ctx := context.Background()
	s, vc, fresh := benchGate(b)
	pub := s.PublicKeyPEM(b)
	env := append(os.Environ(), "TUF_ROOT="+b.TempDir())
	var gate, cli time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d := fresh()
		b.StartTimer()
		t0 := time.Now()
		dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: "bench"})
		if err != nil || !dec.Allow || dec.Cached {
			b.Fatalf("cold verify: %+v %v", dec, err)
		}
		gate += time.Since(t0)
		t1 := time.Now()
		for _, args := range [][]string{
			{"verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry=true", d.String()},
			{"verify-attestation", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--type", "slsaprovenance1", d.String()},
			{"verify-attestation", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--type", "spdxjson", d.String()},
		} {
			cmd := exec.Command(cosign3, args...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("cosign %s: %v\n%s", args[0], err, out)
			}
		}
		cli += time.Since(t1)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(gate.Microseconds())/n/1000, "gate-cold-ms")
	b.ReportMetric(float64(cli.Microseconds())/n/1000, "cosign-cli-ms")
	b.ReportMetric(float64(cli)/float64(gate), "cli/gate-speedup")
}

// BenchmarkGateWarmP99 sends decisions for an already-judged digest at a
// steady 1000 requests a second over loopback and reports the p99 latency.
// The goal is a warm p99 of 2 ms or less.
func BenchmarkGateWarmP99(b *testing.B) {
	ctx := context.Background()
	_, vc, fresh := benchGate(b)
	d := fresh()
	req := wire.VerifyRequest{Image: d.String(), Policy: "bench"}
	if dec, err := vc.Verify(ctx, req); err != nil || !dec.Allow {
		b.Fatalf("warm-up: %+v %v", dec, err)
	}
	const perRound = 1000
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tick := time.NewTicker(time.Second / perRound)
		for j := 0; j < perRound; j++ {
			<-tick.C
			t0 := time.Now()
			dec, err := vc.Verify(ctx, req)
			if err != nil || !dec.Allow || !dec.Cached {
				b.Fatalf("warm verify: %+v %v", dec, err)
			}
			lat = append(lat, time.Since(t0))
		}
		tick.Stop()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*50/100].Microseconds())/1000, "warm-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "warm-p99-ms")
}

// BenchmarkSBOMVsSyftCLI catalogs the same image (a dpkg database and a Go
// binary) with attestd (request, job, SPDX signed and stored) and, as the
// baseline in the same run, with the syft CLI writing SPDX JSON. It also
// times a repeat request, which returns the stored result. The goals are a
// ratio of at most 1.0 and a repeat in 10 ms or less.
func BenchmarkSBOMVsSyftCLI(b *testing.B) {
	syftCLI := os.Getenv("ATTESTD_SYFT")
	if syftCLI == "" {
		b.Skip("ATTESTD_SYFT is not set (make bench sets it)")
	}
	ctx := context.Background()
	s := testenv.Start(b, nil)
	signer := s.Token(b, "signer")
	cl := s.Client(b, signer)
	auth := &authn.Basic{Username: "ci", Password: signer}
	img := sbomImage(b)
	var ours, cli, repeat time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// A fresh digest each time: same content, one more empty file.
		fresh, err := mutate.AppendLayers(img, layerOf(b, map[string][]byte{fmt.Sprintf("etc/bench-%d", i): nil}))
		if err != nil {
			b.Fatal(err)
		}
		tag, _ := name.NewTag(fmt.Sprintf("%s/bench/sbom:%d", s.RegistryHost, i))
		if err := remote.Write(tag, fresh, remote.WithAuth(auth)); err != nil {
			b.Fatal(err)
		}
		h, _ := fresh.Digest()
		d := tag.Context().Digest(h.String())
		b.StartTimer()

		t0 := time.Now()
		j, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}})
		if err != nil {
			b.Fatal(err)
		}
		waitSBOMJob(ctx, b, cl, j)
		ours += time.Since(t0)

		t1 := time.Now()
		if _, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}}); err != nil {
			b.Fatal(err)
		}
		repeat += time.Since(t1)

		cli += syftScan(b, syftCLI, d)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(ours.Microseconds())/n/1000, "attestd-ms")
	b.ReportMetric(float64(cli.Microseconds())/n/1000, "syft-cli-ms")
	b.ReportMetric(float64(ours)/float64(cli), "attestd/syft-ratio")
	b.ReportMetric(float64(repeat.Microseconds())/n/1000, "repeat-ms")
}

// waitSBOMJob polls the SBOM job j until it completes; a cancelled or
// discarded job fails the benchmark.
func waitSBOMJob(ctx context.Context, b *testing.B, cl *client.Client, j wire.Job) {
	b.Helper()
	var err error
	for j.State != "completed" {
		if j.State == "cancelled" || j.State == "discarded" {
			b.Fatalf("job %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
		if j, err = cl.Job(ctx, j.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// syftScan times the syft CLI writing SPDX JSON for d, the SBOM baseline.
func syftScan(b *testing.B, syftCLI string, d name.Digest) time.Duration {
	b.Helper()
	t0 := time.Now()
	cmd := exec.Command(syftCLI, "scan", "registry:"+d.String(), "-o", "spdx-json", "-q")
	cmd.Env = append(os.Environ(), "SYFT_REGISTRY_INSECURE_USE_HTTP=true", "SYFT_CHECK_FOR_APP_UPDATE=false")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("syft: %v\n%s", err, stderr.String())
	}
	return time.Since(t0)
}

// BenchmarkSignLogOnOff measures sign throughput (fresh digests, 8
// concurrent callers, both copies written) with the audit log on and, as
// the baseline in the same run, off (the index alone records). The goal:
// the log costs at most 10%.
func BenchmarkSignLogOnOff(b *testing.B) {
	ctx := context.Background()
	const callers, perRound = 8, 16
	type side struct {
		cl      *client.Client
		digests []string
		took    time.Duration
	}
	start := func(off bool) *side {
		s := testenv.Start(b, func(c *app.Config) { c.UnsafeNoAuditLog = off })
		signer := s.Token(b, "signer")
		sd := &side{cl: s.Client(b, signer)}
		auth := &authn.Basic{Username: "ci", Password: signer}
		for i := range b.N * perRound {
			_, d, _ := testenv.PushRandom(b, s.RegistryHost, fmt.Sprintf("bench/log%d", i), auth)
			sd.digests = append(sd.digests, d.String())
		}
		return sd
	}
	on, off := start(false), start(true)
	round := func(sd *side, i int) {
		t0 := time.Now()
		work := make(chan string, perRound)
		for _, d := range sd.digests[i*perRound : (i+1)*perRound] {
			work <- d
		}
		close(work)
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d := range work {
					if _, err := sd.cl.Sign(ctx, d); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		sd.took += time.Since(t0)
	}
	b.ResetTimer()
	for i := range b.N {
		// Alternate which goes first, so that neither always runs warmer.
		if i%2 == 0 {
			round(on, i)
			round(off, i)
		} else {
			round(off, i)
			round(on, i)
		}
	}
	b.StopTimer()
	n := float64(b.N * perRound)
	onRate, offRate := n/on.took.Seconds(), n/off.took.Seconds()
	b.ReportMetric(onRate, "signs/s-log-on")
	b.ReportMetric(offRate, "signs/s-log-off")
	b.ReportMetric(100*(1-onRate/offRate), "log-cost-%")
}
