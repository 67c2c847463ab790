package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

// Ack is a write attestd acknowledged (answered 2xx).
type Ack struct {
	Kind      string // "signature" or "attestation"
	Digest    name.Digest
	Locations []wire.Location
}

// Outcome is one request of a load: its route, status (0 for a transport
// error), Retry-After, duration and time.
type Outcome struct {
	Route      string
	Status     int
	RetryAfter string
	Took       time.Duration
	At         time.Time
	// Message is the error's message, if any.
	Message string
}

// Load drives sign, attest and verify requests at attestd and keeps what
// was acknowledged and how each request ended. Drills and `make load` use
// it.
type Load struct {
	// Signer and Verifier are the clients of the writes and the checks.
	Signer, Verifier *client.Client
	// Digests are the images written about, round robin.
	Digests []name.Digest
	// Policy names the policy verifies ask for ("" skips verifies).
	Policy string
	// Mix is the share of signs, attestations and verifies, e.g. {1, 2, 3}.
	Mix [3]int

	mu       sync.Mutex
	acks     []Ack
	outcomes []Outcome
}

func (l *Load) note(route string, start time.Time, err error) {
	o := Outcome{Route: route, Status: 200, Took: time.Since(start), At: start}
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		o.Status, o.RetryAfter, o.Message = ce.Status, ce.RetryAfter, ce.Message
	case err != nil:
		o.Status, o.Message = 0, err.Error()
	}
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	l.mu.Unlock()
	if o.Status == 0 {
		time.Sleep(10 * time.Millisecond) // attestd is down: do not spin
	}
}

// Run runs workers until stop is closed or ops requests are done (0: no
// count), and returns when they have.
func (l *Load) Run(ctx context.Context, workers, ops int, stop <-chan struct{}) {
	mix := l.Mix
	if mix == [3]int{} {
		mix = [3]int{1, 1, 1}
	}
	total := mix[0] + mix[1] + mix[2]
	var next int64
	var nmu sync.Mutex
	take := func() (int64, bool) {
		nmu.Lock()
		defer nmu.Unlock()
		if ops > 0 && next >= int64(ops) {
			return 0, false
		}
		next++
		return next - 1, true
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				i, ok := take()
				if !ok {
					return
				}
				d := l.Digests[int(i)%len(l.Digests)]
				start := time.Now()
				switch k := int(i) % total; {
				case k < mix[0]:
					res, err := l.Signer.Sign(ctx, d.String())
					l.note("sign", start, err)
					if err == nil {
						l.ack(Ack{Kind: "signature", Digest: d, Locations: res.Locations})
					}
				case k < mix[0]+mix[1]:
					pred := fmt.Sprintf(`{"load":%d,"worker":%d,"at":%q}`, i, w, start.Format(time.RFC3339Nano))
					res, err := l.Signer.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: "https://example.com/load/v1", Predicate: []byte(pred)})
					l.note("attest", start, err)
					if err == nil {
						l.ack(Ack{Kind: "attestation", Digest: d, Locations: res.Locations})
					}
				default:
					if l.Policy == "" {
						continue
					}
					_, err := l.Verifier.Verify(ctx, wire.VerifyRequest{Image: d.String(), Policy: l.Policy})
					l.note("verify", start, err)
				}
			}
		}()
	}
	wg.Wait()
}

func (l *Load) ack(a Ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

// Acks are the acknowledged writes so far.
func (l *Load) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Outcomes are the requests' ends so far.
func (l *Load) Outcomes() []Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Outcome(nil), l.outcomes...)
}

// RouteStats summarises the outcomes of one route.
type RouteStats struct {
	Route    string
	N        int
	P50, P99 time.Duration
	Statuses map[int]int
}

// Stats summarises outcomes by route, in route order.
func Stats(os []Outcome) []RouteStats {
	by := map[string][]Outcome{}
	for _, o := range os {
		by[o.Route] = append(by[o.Route], o)
	}
	var out []RouteStats
	for r, xs := range by {
		s := RouteStats{Route: r, N: len(xs), Statuses: map[int]int{}}
		ds := make([]time.Duration, 0, len(xs))
		for _, x := range xs {
			s.Statuses[x.Status]++
			ds = append(ds, x.Took)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		s.P50, s.P99 = ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)]
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out
}

// String prints route stats as a table row.
func (s RouteStats) String() string {
	var codes []string
	keys := make([]int, 0, len(s.Statuses))
	for k := range s.Statuses {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%d×%d", s.Statuses[k], k))
	}
	return fmt.Sprintf("%-7s n=%-6d p50=%-9s p99=%-9s %s", s.Route, s.N, s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), strings.Join(codes, " "))
}

// Agreement checks what a drill must end with: the registry's verified
// copies about digests and the index's evidence rows are the same set, and
// every acknowledged write is in both and has its event. It returns the
// number of copies checked.
func Agreement(t testing.TB, db *index.DB, regs *oci.Registries, ks *keys.Set, digests []name.Digest, acks []Ack) int {
	t.Helper()
	ctx := context.Background()
	ev := service.NewEvidence(regs, ks)
	type copyID struct{ repo, digest, format, content string }
	inRegistry := map[copyID]bool{}
	repos := map[string]bool{}
	for _, d := range digests {
		repos[d.Context().Name()] = true
		sigs, err := ev.Signatures(ctx, d)
		if err != nil {
			t.Fatalf("read signatures of %s: %v", d, err)
		}
		atts, err := ev.Attestations(ctx, d, "")
		if err != nil {
			t.Fatalf("read attestations of %s: %v", d, err)
		}
		for _, c := range sigs.Signatures {
			if !c.Valid {
				t.Errorf("an invalid signature in the registry: %+v", c)
			}
			inRegistry[copyID{d.Context().Name(), d.DigestStr(), c.Format, c.Content}] = true
		}
		for _, a := range atts.Attestations {
			if !a.Valid {
				t.Errorf("an invalid attestation in the registry: %+v", a)
			}
			inRegistry[copyID{d.Context().Name(), d.DigestStr(), a.Format, a.Content}] = true
		}
	}
	rows, err := db.EvidenceRows(ctx, index.EvidenceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	inIndex := map[copyID]bool{}
	for _, r := range rows {
		if repos[r.Repository] {
			inIndex[copyID{r.Repository, r.Digest, r.Format, r.Content}] = true
		}
	}
	for c := range inRegistry {
		if !inIndex[c] {
			t.Errorf("lost from the index: %+v is in the registry", c)
		}
	}
	for c := range inIndex {
		if !inRegistry[c] {
			t.Errorf("an evidence row with no copy in the registry: %+v", c)
		}
	}
	evs, err := db.Events(ctx, index.EventFilter{Kind: "", Limit: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, e := range evs {
		if e.Kind == service.EventSignatureCreated || e.Kind == service.EventAttestationCreated {
			var ls []wire.Location
			_ = json.Unmarshal(e.Locations, &ls)
			for _, l := range ls {
				recorded[l.Content] = true
			}
		}
	}
	for _, a := range acks {
		for _, l := range a.Locations {
			c := copyID{a.Digest.Context().Name(), a.Digest.DigestStr(), l.Kind, l.Content}
			if !inRegistry[c] || !inIndex[c] || !recorded[l.Content] {
				t.Errorf("acknowledged %s %+v: in registry %v, in index %v, has an event %v", a.Kind, l, inRegistry[c], inIndex[c], recorded[l.Content])
			}
		}
	}
	return len(inRegistry)
}
