package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
)

// TestReplayBounds: a replay over a window with more decisions, or more
// images the candidate covers, than its bounds is a 400 that says to
// narrow the window, before any evidence is read (the registry client
// panics if it is asked).
func TestReplayBounds(t *testing.T) {
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
	ps, _ := policy.NewSet()
	log := slog.New(slog.DiscardHandler)
	rec := NewRecorder(db, log)
	defer rec.Close(ctx)
	g := NewGate(panicking{}, nil, set, ps, rec, time.Second, time.Minute, log)

	start := time.Now().UTC().Add(-time.Minute)
	for i := range 3 {
		d := fmt.Sprintf("sha256:%064x", i+1)
		dec := &index.Decision{ID: fmt.Sprintf("dec-%d", i), Image: "registry.example/app@" + d, Digest: d, Repository: "registry.example/app",
			Policy: "p", Mode: "enforce", Allowed: true, At: time.Now().UTC()}
		if _, err := rec.Record(ctx, Event{Kind: EventDecisionMade, Actor: Principal{Name: "t"}, Repository: dec.Repository, Digest: d, Decision: dec}); err != nil {
			t.Fatal(err)
		}
	}
	candidate := []byte("name: strict\nmatch: {images: [\"registry.example/**\"]}\nsignatures: {keys: [default]}\n")
	auditor := Principal{Name: "a", Roles: []string{RoleAuditor}}
	for _, tc := range []struct {
		name                  string
		maxDecisions, maxSubj int
		want                  string
	}{
		{"decisions", 2, 100, "more than 2 decisions in the window"},
		{"images", 100, 2, "3 images the candidate covers, more than 2"},
	} {
		r := NewReplay(g, db, time.Second)
		r.maxDecisions, r.maxSubjects = tc.maxDecisions, tc.maxSubj
		_, err := r.Replay(ctx, auditor, ReplayRequest{Policy: candidate, Since: start})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "narrow it") {
			t.Errorf("%s over the bound: %v, want ErrInvalid saying %q", tc.name, err, tc.want)
		}
	}
	// A signer may not replay: replay reads every decision.
	if _, err := NewReplay(g, db, time.Second).Replay(ctx, Principal{Name: "s", Roles: []string{RoleSigner}}, ReplayRequest{Policy: candidate, Since: start}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a signer replayed: %v", err)
	}
}
