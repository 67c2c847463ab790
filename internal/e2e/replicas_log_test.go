package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// TestReplicasShareOneLog runs two attestd replicas on one PostgreSQL index
// and one MariaDB audit log (tessera's MySQL driver), signing at once on
// both: every event of both gets its own log index, with no gap, and one
// verify-log run proves the events of both replicas under one checkpoint.
func TestReplicasShareOneLog(t *testing.T) {
	ctx := context.Background()
	host := need(t, "ATTESTD_TEST_DOCKER_REGISTRY", "host:port of Debian's docker-registry, started by scripts/with-services")
	url := freshDatabase(t)
	log := sharedLog(t)
	kms := testenv.StartLocalKMS(t)
	key := kms.CreateKey(t, "replicas-log")
	cfg := func(c *app.Config) {
		log(c)
		c.DatabaseURL, c.EmbeddedRegistry.Enabled = url, false
		c.Registries = []app.Registry{{Host: host}}
		c.Keys = []app.KeyConfig{{Name: "shared", URI: key}}
	}
	A := testenv.Start(t, cfg)
	B := testenv.StartReplica(t, A, cfg)
	signer := A.ScopedToken(t, []string{host + "/replicas-log/**"}, "signer")
	auditor := A.Token(t, "auditor")
	_, d, _ := testenv.PushRandom(t, host, "replicas-log/app", authn.Anonymous)

	// Ten signatures on each replica at once, of one digest.
	byReplica := map[string][]uint64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, s := range map[string]*testenv.Server{"A": A, "B": B} {
		c := s.Client(t, signer)
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.Sign(ctx, d.String())
				if err != nil || res.LogIndex == nil {
					t.Errorf("sign on %s: %+v, %v", name, res, err)
					return
				}
				mu.Lock()
				byReplica[name] = append(byReplica[name], *res.LogIndex)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every event of both replicas, in the shared index, has a log index of
	// its own, and together they fill the log from 0 without a gap.
	page, err := A.Client(t, auditor).Events(ctx, client.EventQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]string{}
	for _, e := range page.Events {
		if e.LogIndex == nil {
			t.Errorf("event %s (%s) has no log index", e.ID, e.Kind)
			continue
		}
		if other, dup := seen[*e.LogIndex]; dup {
			t.Errorf("log index %d given to %s and %s", *e.LogIndex, other, e.ID)
		}
		seen[*e.LogIndex] = e.ID
	}
	for i := range uint64(len(seen)) {
		if _, ok := seen[i]; !ok {
			t.Errorf("log index %d is missing: the replicas' entries leave a gap", i)
		}
	}

	// One verify-log run, against B, proves A's and B's signatures.
	out, err := verifyLog(t, B, auditor, "--digest", d.DigestStr(), "-o", "json")
	if err != nil {
		t.Fatalf("verify-log: %v\n%s", err, out)
	}
	var res struct {
		Size     uint64
		Included []struct {
			Index uint64 `json:"log_index"`
			Kind  string
		}
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
		t.Fatalf("verify-log -o json: %v\n%s", err, out)
	}
	proved := map[uint64]bool{}
	for _, it := range res.Included {
		proved[it.Index] = true
	}
	for name, idx := range byReplica {
		for _, i := range idx {
			if !proved[i] {
				t.Errorf("replica %s's signature at log index %d is not among those verify-log proved (%v)", name, i, res.Included)
			}
		}
	}
	if len(byReplica["A"]) != 10 || len(byReplica["B"]) != 10 {
		t.Errorf("signatures per replica: %v", byReplica)
	}
}
