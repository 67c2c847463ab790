package service

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
)

// TestRevalidation judges admissions again without the cache or a record:
// what would be denied is stored with the reason, a quarantine is named,
// a run judges at most its cap, and only deployments that turned
// non-compliant are notified.
func TestRevalidation(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	db := openIndex(t)
	rec := NewRecorder(db, log)
	defer rec.Close(ctx)
	sv, _, _ := signature.NewDefaultECDSASignerVerifier()
	k, _ := keys.New("default", sv)
	set, _ := keys.NewSet("default", k)
	q, err := NewQuarantines(ctx, db, rec, set, log)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte("name: prod\nmatch: {images: [\"registry.example/**\"], namespaces: [prod]}\nsignatures: {keys: [default]}\nmode: audit\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := policy.NewSet(pol)
	g := NewGate(pinnedOnly{}, NewEvidence(noEvidence{}, set), set, ps, rec, time.Second, time.Minute, log, WithQuarantine(q))
	now := time.Now().UTC()
	dg := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	var evs []Event
	for i, d := range []string{dg("a"), dg("b")} {
		evs = append(evs, Event{Kind: EventDecisionMade, Repository: "registry.example/app", Digest: d, Decision: &index.Decision{
			ID: "d" + string(rune('0'+i)), At: now.Add(-time.Hour), Image: "registry.example/app@" + d, Digest: d, Policy: "prod", Revision: "r", Mode: "audit",
			Allowed: true, Caller: "gate", Detail: "{}", Repository: "registry.example/app", Namespace: "prod"}})
	}
	evs = append(evs, Event{Kind: EventDecisionMade, Repository: "registry.example/app", Digest: dg("c"), Decision: &index.Decision{
		ID: "old", At: now.Add(-30 * 24 * time.Hour), Image: "registry.example/app@" + dg("c"), Digest: dg("c"), Policy: "prod", Revision: "r", Mode: "audit",
		Allowed: true, Caller: "gate", Detail: "{}", Repository: "registry.example/app", Namespace: "prod"}})
	if _, err := rec.Record(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	var notified [][]index.Revalidation
	r := NewRevalidator(g, db, 168*time.Hour, time.Second, log, WithNonCompliantNotify(func(_ context.Context, rs []index.Revalidation) { notified = append(notified, rs) }))

	// Audit mode allows: compliant, though the signature is missing.
	sum, err := r.Run(ctx)
	if err != nil || sum.Checked != 2 || sum.NonCompliant != 0 || sum.Truncated {
		t.Fatalf("first run: %+v %v; want 2 judged (the old admission is outside the window), none non-compliant", sum, err)
	}
	decisions, _ := db.SearchDecisions(ctx, index.DecisionFilter{})
	if len(decisions) != 3 {
		t.Errorf("a re-validation recorded decisions: %d", len(decisions))
	}

	if _, err := q.Add(ctx, Principal{Name: "root", Roles: []string{RoleAdmin}}, QuarantineRequest{Digest: dg("a"), Reason: "CVE-2026-7"}); err != nil {
		t.Fatal(err)
	}
	if sum, err = r.Run(ctx); err != nil || sum.NonCompliant != 1 {
		t.Fatalf("after the quarantine: %+v %v", sum, err)
	}
	no := false
	bad, _ := db.Revalidations(ctx, index.RevalidationFilter{Compliant: &no})
	if len(bad) != 1 || bad[0].Digest != dg("a") || !strings.Contains(bad[0].Reason, "CVE-2026-7") || !strings.Contains(bad[0].Reason, "quarantine") {
		t.Errorf("non-compliant results: %+v", bad)
	}
	if _, err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(notified) != 1 || len(notified[0]) != 1 || notified[0][0].Digest != dg("a") {
		t.Errorf("notified: %+v; want the quarantined digest once, when it turned", notified)
	}

	r.max = 1
	if sum, err = r.Run(ctx); err != nil || sum.Checked != 1 || !sum.Truncated {
		t.Errorf("a run over its cap: %+v %v; want 1 judged, truncated", sum, err)
	}
	if _, err := r.RunNow(ctx, Principal{Name: "v", Roles: []string{RoleVerifier, RoleAuditor}}); err == nil {
		t.Error("a non-admin ran the re-validation")
	}

	deps := NewDeployments(db, set, q)
	auditor := Principal{Name: "a", Roles: []string{RoleAuditor}}
	for _, bad := range []DeploymentQuery{{}, {Namespace: "prod"}, {Key: "nope"}, {Digest: "sha256:zz"}, {Digest: dg("a"), Limit: 1001}, {Digest: dg("a"), Limit: -1}} {
		if _, err := deps.List(ctx, auditor, bad); err == nil || !strings.Contains(err.Error(), ErrInvalid.Error()) {
			t.Errorf("deployments %+v: %v, want invalid", bad, err)
		}
	}
	if _, err := deps.List(ctx, Principal{Name: "v", Roles: []string{RoleVerifier, RoleSigner}}, DeploymentQuery{Digest: dg("a")}); err == nil {
		t.Error("a verifier listed deployments")
	}

	// A key's blast radius: the digests only it signed, at most the cap.
	sig := func(d, content string) index.Evidence {
		return index.Evidence{Repository: "registry.example/app", Digest: d, Format: "referrer", Content: content, Kind: "signature", Ref: "x", KeyID: k.ID()}
	}
	if _, err := rec.Record(ctx, Event{Kind: EventSignatureCreated, Repository: "registry.example/app", Digest: dg("a"),
		Evidence: []index.Evidence{sig(dg("a"), "c1"), sig(dg("b"), "c2")}}); err != nil {
		t.Fatal(err)
	}
	if got, err := deps.List(ctx, auditor, DeploymentQuery{Key: "default"}); err != nil || len(got.Deployments) != 2 || got.Truncated {
		t.Errorf("blast radius: %+v %v", got, err)
	}
	deps.maxDigests = 1
	if got, err := deps.List(ctx, auditor, DeploymentQuery{Key: "default"}); err != nil || len(got.Deployments) != 1 || !got.Truncated {
		t.Errorf("blast radius over the cap: %+v %v; want 1, truncated", got, err)
	}
	if got, err := deps.List(ctx, auditor, DeploymentQuery{Key: k.ID(), Limit: 1}); err != nil || len(got.Deployments) != 1 || !got.Truncated {
		t.Errorf("by key id, over the page: %+v %v", got, err)
	}
}
