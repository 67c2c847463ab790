package e2e

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv/hostile"
)

// BenchmarkHostileManifestMemory runs 8 concurrent gate decisions, each on
// an image whose 64 MiB manifest (sent without a Content-Length, so that
// only the cap on the body stops it) comes from a hostile registry, and
// reports the peak growth of the heap in use (sampled every millisecond)
// next to the manifest cap and the read budget: with the default budget,
// and with a budget of 16 MiB, which lets four such reads run at once.
// Before the cap moved into the transport, ggcr read each manifest whole
// (~130 MB per decision; 1.2 GiB of heap for the eight). The budget bounds
// the bytes being read at once; the heap's peak past that is garbage
// awaiting the collector (the growing buffers of io.ReadAll in ggcr), so
// with 4 MiB manifests the two budgets show about the same peak. The budget
// binds for blobs (64 MiB cap each).
func BenchmarkHostileManifestMemory(b *testing.B) {
	for _, budget := range []int64{app.Defaults().RegistryReadBudget, 16 << 20} {
		b.Run(fmt.Sprintf("budget=%dMiB", budget>>20), func(b *testing.B) {
			benchHostileManifestMemory(b, budget)
		})
	}
}

func benchHostileManifestMemory(b *testing.B, budget int64) {
	const concurrent = 8
	ctx := context.Background()
	reg := hostile.New(b)
	cfg := app.Defaults()
	cfg.RegistryReadBudget = budget
	_, vc := hostileGate(b, reg, func(c *app.Config) { c.RegistryReadBudget = budget })
	refs := make([]string, concurrent)
	for i := range refs {
		refs[i] = reg.HugeManifestRef(fmt.Sprintf("huge/app%d", i), 64<<20, false)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		for _, ref := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dec, err := vc.Verify(ctx, wire.VerifyRequest{Image: ref, Policy: "p"})
				if err == nil && dec.Allow {
					err = fmt.Errorf("a 64 MiB manifest was allowed: %+v", dec)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	close(stop)
	<-sampled
	growth := float64(0)
	if p := peak.Load(); p > base {
		growth = float64(p - base)
	}
	const mib = 1 << 20
	b.ReportMetric(growth/mib, "peak-heap-growth-MiB")
	b.ReportMetric(float64(cfg.MaxManifestBytes)/mib, "manifest-cap-MiB")
	b.ReportMetric(float64(cfg.RegistryReadBudget)/mib, "read-budget-MiB")
	b.ReportMetric(float64(reg.HugeSent())/float64(b.N*concurrent)/mib, "sent-MiB/read")
}
