package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/testenv"
)

// BenchmarkSBOMMinbaseVsSyftCLI is BenchmarkSBOMVsSyftCLI on a Debian
// minbase root filesystem (about 90 packages and 4,800 files, built from
// the host's dpkg database; skipped where there is none), asking attestd
// for both formats, SPDX and CycloneDX, each signed and stored, against the
// syft CLI writing SPDX JSON alone. The goal is a ratio of at most 1.0.
func BenchmarkSBOMMinbaseVsSyftCLI(b *testing.B) {
	syftCLI := os.Getenv("ATTESTD_SYFT")
	if syftCLI == "" {
		b.Skip("ATTESTD_SYFT is not set (make bench sets it)")
	}
	ctx := context.Background()
	img := testenv.DebianMinbaseImage(b)
	s := testenv.Start(b, nil)
	signer := s.Token(b, "signer")
	cl := s.Client(b, signer)
	auth := &authn.Basic{Username: "ci", Password: signer}
	var ours, cli time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fresh, err := mutate.AppendLayers(img, layerOf(b, map[string][]byte{fmt.Sprintf("etc/bench-%d", i): nil}))
		if err != nil {
			b.Fatal(err)
		}
		tag, _ := name.NewTag(fmt.Sprintf("%s/bench/minbase:%d", s.RegistryHost, i))
		if err := remote.Write(tag, fresh, remote.WithAuth(auth)); err != nil {
			b.Fatal(err)
		}
		h, _ := fresh.Digest()
		d := tag.Context().Digest(h.String())
		b.StartTimer()

		t0 := time.Now()
		j, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}, Formats: []string{"spdx-json", "cyclonedx-json"}})
		if err != nil {
			b.Fatal(err)
		}
		waitSBOMJob(ctx, b, cl, j)
		ours += time.Since(t0)

		cli += syftScan(b, syftCLI, d)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(ours.Microseconds())/n/1000, "attestd-ms")
	b.ReportMetric(float64(cli.Microseconds())/n/1000, "syft-cli-ms")
	b.ReportMetric(float64(ours)/float64(cli), "attestd/syft-ratio")
}
