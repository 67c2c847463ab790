//go:build warmprofile

package e2e

// BenchmarkWarmProfile drives the warm paths of issue 18 (deliverables 5
// and 6) and prints their figures; it is not part of the test suite:
//
//	go test -tags warmprofile ./internal/e2e -run '^$' -bench WarmProfile -benchtime 1x
//
// It times a cold admission of 8 fresh images, then warm verifies of one
// judged digest from 16 connections (closed loop, then paced at 5,000 and
// 1,500 a second, latency from the scheduled send), then warm admission
// reviews of a Pod of 8 verified images over one connection (paced at 160
// a second, then closed loop). With WARM_PROFILE_DIR set it writes the CPU,
// mutex and block profiles of the closed-loop verifies and the paced
// reviews there. Server and clients share the process and its cores, and
// testenv logs at debug into memory: read the figures as relative.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

type warmRun struct {
	url, token string
	http       *http.Client
}

func (w warmRun) post(path string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, w.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.http.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"allow`)) || bytes.Contains(b, []byte(`"allowed":false`)) || bytes.Contains(b, []byte(`"allow":false`)) {
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	return nil
}

func pct(lat []time.Duration) string {
	if len(lat) == 0 {
		return "no samples"
	}
	slices.Sort(lat)
	q := func(p int) float64 { return float64(lat[min(len(lat)-1, len(lat)*p/100)].Microseconds()) / 1000 }
	return fmt.Sprintf("n=%d p50=%.2fms p99=%.2fms max=%.2fms", len(lat), q(50), q(99), float64(lat[len(lat)-1].Microseconds())/1000)
}

// closed sends as fast as conns clients can for d.
func closed(b *testing.B, w warmRun, conns int, d time.Duration, path string, body []byte) ([]time.Duration, float64) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for time.Since(start) < d {
				t0 := time.Now()
				if err := w.post(path, body); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, float64(len(all)) / time.Since(start).Seconds()
}

// paced sends rate requests a second from conns clients for d; latency is
// measured from the scheduled send time (no coordinated omission).
func paced(b *testing.B, w warmRun, conns, rate int, d time.Duration, path string, body []byte) ([]time.Duration, float64) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	every := time.Duration(int64(time.Second) * int64(conns) / int64(rate))
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			next := start.Add(every * time.Duration(i) / time.Duration(conns))
			for next.Sub(start) < d {
				if s := time.Until(next); s > 0 {
					time.Sleep(s)
				}
				if err := w.post(path, body); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(next))
				next = next.Add(every)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, float64(len(all)) / time.Since(start).Seconds()
}

func profiled(b *testing.B, label string, f func()) {
	dir := os.Getenv("WARM_PROFILE_DIR")
	if dir == "" {
		f()
		return
	}
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(100_000)
	cpu, err := os.Create(filepath.Join(dir, label+".cpu"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		b.Fatal(err)
	}
	f()
	pprof.StopCPUProfile()
	_ = cpu.Close()
	for _, p := range []string{"mutex", "block"} {
		out, err := os.Create(filepath.Join(dir, label+"."+p))
		if err != nil {
			b.Fatal(err)
		}
		_ = pprof.Lookup(p).WriteTo(out, 0)
		_ = out.Close()
	}
	runtime.SetMutexProfileFraction(0)
	runtime.SetBlockProfileRate(0)
}

// serverBuckets reads the server's own latency histogram of route:
// cumulative counts by upper bound ("le").
func serverBuckets(b *testing.B, w warmRun, admin, route string) map[string]float64 {
	req, _ := http.NewRequest(http.MethodGet, w.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := w.http.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "attestd_http_request_duration_seconds_bucket{") || !strings.Contains(line, `route="`+route+`"`) {
			continue
		}
		i := strings.Index(line, `le="`)
		le := line[i+4 : i+4+strings.Index(line[i+4:], `"`)]
		var n float64
		_, _ = fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &n)
		out[le] = n
	}
	return out
}

// serverShare says which share of the requests between two readings the
// server handled within 0.5, 1, 2 and 4 ms (its middleware to its answer).
func serverShare(before, after map[string]float64) string {
	total := after["+Inf"] - before["+Inf"]
	var parts []string
	for _, le := range []string{"0.0005", "0.001", "0.002", "0.004"} {
		parts = append(parts, fmt.Sprintf("≤%sms %.2f%%", strings.TrimRight(strings.TrimRight(fmt.Sprint(1000*atof(le)), "0"), "."), 100*(after[le]-before[le])/total))
	}
	return fmt.Sprintf("server-side (n=%.0f): %s", total, strings.Join(parts, ", "))
}

func atof(s string) float64 {
	var f float64
	_, _ = fmt.Sscan(s, &f)
	return f
}

func podReview(images []name.Digest) []byte {
	var cs []string
	for i, d := range images {
		cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":%q,"resources":{}}`, i, d.String()))
	}
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0df28fbd-5f5f-11e8-bc74-36e6bb280816",` +
		`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"name":"web","namespace":"prod",` +
		`"operation":"CREATE","userInfo":{"username":"alice"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod"},` +
		`"spec":{"containers":[` + strings.Join(cs, ",") + `]}}}}`)
}

func BenchmarkWarmProfile(b *testing.B) {
	ctx := context.Background()
	s, _, fresh := benchGate(b)
	token := s.Token(b, "verifier")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	w := warmRun{url: s.URL, token: token, http: &http.Client{Transport: tr}}
	pol := fmt.Sprintf(`name: bench-prod
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
	one := fresh()
	vbody := []byte(fmt.Sprintf(`{"image":%q,"policy":"bench"}`, one.String()))
	if err := w.post("/v1/verify", vbody); err != nil {
		b.Fatal(err)
	}
	var warm, cold []name.Digest
	for range 8 {
		warm = append(warm, fresh())
	}
	for range 8 {
		cold = append(cold, fresh())
	}
	abody := podReview(warm)
	if err := w.post("/v1/admission", abody); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	t0 := time.Now()
	if err := w.post("/v1/admission", podReview(cold)); err != nil {
		b.Fatal(err)
	}
	b.Logf("cold admission of 8 images: %s", time.Since(t0))

	_, _ = closed(b, w, 16, time.Second, "/v1/verify", vbody) // warm the connections
	profiled(b, "verify-closed", func() {
		lat, rps := closed(b, w, 16, 4*time.Second, "/v1/verify", vbody)
		b.Logf("warm verify, 16 conns closed loop: %.0f req/s, %s", rps, pct(lat))
	})
	m0 := serverBuckets(b, w, s.AdminToken, "/v1/verify")
	lat, rps := paced(b, w, 16, 5000, 3*time.Second, "/v1/verify", vbody)
	b.Logf("warm verify, 16 conns paced at 5000/s: %.0f req/s, %s; %s", rps, pct(lat), serverShare(m0, serverBuckets(b, w, s.AdminToken, "/v1/verify")))
	lat, rps = paced(b, w, 16, 1500, 3*time.Second, "/v1/verify", vbody)
	b.Logf("warm verify, 16 conns paced at 1500/s: %.0f req/s, %s", rps, pct(lat))

	profiled(b, "admission", func() {
		m0 := serverBuckets(b, w, s.AdminToken, "/v1/admission")
		lat, rps := paced(b, w, 1, 160, 4*time.Second, "/v1/admission", abody)
		b.Logf("warm admission 8 containers, 1 conn paced at 160/s: %.0f rev/s, %s; %s", rps, pct(lat), serverShare(m0, serverBuckets(b, w, s.AdminToken, "/v1/admission")))
	})
	lat, rps = closed(b, w, 1, 3*time.Second, "/v1/admission", abody)
	b.Logf("warm admission 8 containers, 1 conn closed loop: %.0f rev/s, %s", rps, pct(lat))
}
