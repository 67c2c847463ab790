package service

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

// panicking is a registry client that panics, as a bug deep in a library
// might: a fault no real registry can be made to cause.
type panicking struct{}

func (panicking) Parse(s string) (name.Reference, error) { return name.ParseReference(s) }
func (panicking) Resolve(context.Context, name.Reference) (oci.Resolved, error) {
	panic("boom")
}

func TestGatePanicIsADeny(t *testing.T) {
	ctx := context.Background()
	db, err := index.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := keys.New("default", sv)
	set, err := keys.NewSet("default", k)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte("name: p\nmatch: {images: [\"registry.example/**\"]}\nsignatures: {keys: [default]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := policy.NewSet(p)
	log := slog.New(slog.DiscardHandler)
	rec := NewRecorder(db, log)
	defer rec.Close(ctx)
	g := NewGate(panicking{}, nil, set, ps, rec, time.Second, time.Minute, log)
	d, err := g.Verify(ctx, Principal{Name: "t", Roles: []string{RoleVerifier}}, VerifyRequest{Image: "registry.example/app:v1", Policy: "p"})
	if err != nil {
		t.Fatalf("a panic became an error, not a decision: %v", err)
	}
	if d.Allow || !strings.Contains(d.Reason, "internal error") || d.ID == "" {
		t.Errorf("a panic while deciding: %+v, want a deny", d)
	}
	dec, err := db.DecisionByID(ctx, d.ID)
	if err != nil || dec.Allowed {
		t.Errorf("the deny was not recorded: %+v %v", dec, err)
	}
}

// countingParser counts Parse calls; it refuses "bad" references.
type countingParser struct {
	panicking
	calls int
}

func (c *countingParser) Parse(s string) (name.Reference, error) {
	c.calls++
	if strings.Contains(s, "bad") {
		return nil, oci.ErrBadReference
	}
	return name.ParseReference(s)
}

// TestGateParseMemo: a reference that parsed is parsed once; one that
// did not is refused every time, and the memo is capped.
func TestGateParseMemo(t *testing.T) {
	cp := &countingParser{}
	g := NewGate(cp, nil, nil, nil, nil, time.Second, time.Minute, slog.New(slog.DiscardHandler))
	for range 3 {
		ref, err := g.parse("registry.example/app@sha256:" + strings.Repeat("a", 64))
		if err != nil || ref.Context().Name() != "registry.example/app" {
			t.Fatalf("parse: %v %v", ref, err)
		}
	}
	if cp.calls != 1 {
		t.Errorf("a good reference parsed %d times, want 1", cp.calls)
	}
	for range 2 {
		if _, err := g.parse("registry.example/bad:v1"); err == nil {
			t.Fatal("a refused reference was accepted")
		}
	}
	if cp.calls != 3 {
		t.Errorf("a refused reference was memoized (%d parses)", cp.calls)
	}
	for i := range maxMemoRefs + 1 {
		_, _ = g.parse(fmt.Sprintf("registry.example/app:v%d", i))
	}
	if n := len(g.refs); n > maxMemoRefs {
		t.Errorf("memo holds %d references, cap %d", n, maxMemoRefs)
	}
}

// TestGateRefreshAhead: in the last tenth of a cached allow's TTL, one
// request at a time is chosen to check it afresh; before that window, or
// while another checks it, the cached allow is served.
func TestGateRefreshAhead(t *testing.T) {
	g := NewGate(&countingParser{}, nil, nil, nil, nil, time.Second, time.Minute, slog.New(slog.DiscardHandler))
	now := time.Now()
	c := cached{expires: now.Add(time.Minute)}
	if g.claimRefresh("k", c, now.Add(50*time.Second)) {
		t.Error("refresh claimed 10 s before expiry (window: the last 6 s)")
	}
	at := now.Add(55 * time.Second)
	if !g.claimRefresh("k", c, at) {
		t.Fatal("no refresh claimed 5 s before expiry")
	}
	if g.claimRefresh("k", c, at) {
		t.Error("a second refresh claimed while the first runs")
	}
	if !g.claimRefresh("other", c, at) {
		t.Error("a refresh of another key was refused")
	}
	g.releaseRefresh("k")
	if !g.claimRefresh("k", c, at) {
		t.Error("no refresh claimed after the first ended (it may have failed)")
	}
}
