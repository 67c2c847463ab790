package service

import (
	"context"
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

// pinnedOnly resolves references by digest without a registry.
type pinnedOnly struct{}

func (pinnedOnly) Parse(s string) (name.Reference, error) { return name.ParseReference(s) }
func (pinnedOnly) Resolve(_ context.Context, r name.Reference) (oci.Resolved, error) {
	return oci.Resolved{Digest: r.(name.Digest)}, nil
}

// noEvidence is a registry that holds no signature or attestation.
type noEvidence struct{}

func (noEvidence) LegacySignatures(context.Context, name.Digest, int) (string, []oci.StoredSignature, error) {
	return "", nil, nil
}
func (noEvidence) LegacyAttestations(context.Context, name.Digest, string, int) ([]oci.StoredEnvelope, error) {
	return nil, nil
}
func (noEvidence) Bundles(context.Context, name.Digest, string, string, int) ([]oci.StoredBundle, error) {
	return nil, nil
}

func openIndex(t *testing.T) *index.DB {
	t.Helper()
	db, err := index.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestQuarantineFailsClosed: a quarantine list that cannot be read denies
// every digest at the gate and makes every key's evidence invalid, until
// a reload succeeds; requests with bad input are refused before anything
// is stored.
func TestQuarantineFailsClosed(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	db, qdb := openIndex(t), openIndex(t)
	rec := NewRecorder(db, log)
	defer rec.Close(ctx)
	sv, _, _ := signature.NewDefaultECDSASignerVerifier()
	k, _ := keys.New("default", sv)
	set, err := keys.NewSet("default", k)
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewQuarantines(ctx, qdb, rec, set, log)
	if err != nil {
		t.Fatal(err)
	}
	admin := Principal{Name: "root", TokenID: "t1", Roles: []string{RoleAdmin}}
	dg := "sha256:" + strings.Repeat("a", 64)
	for _, bad := range []QuarantineRequest{
		{Digest: dg}, // no reason
		{Digest: dg, Reason: strings.Repeat("x", 1001)}, // reason over the cap
		{Digest: "sha256:abc", Reason: "r"},             // not a digest
		{Digest: dg, Key: "default", Reason: "r"},       // both
		{Reason: "r"},              // neither
		{Key: "nope", Reason: "r"}, // unknown key
	} {
		if _, err := q.Add(ctx, admin, bad); err == nil || !strings.Contains(err.Error(), ErrInvalid.Error()) {
			t.Errorf("Add(%+v) = %v, want invalid", bad, err)
		}
	}
	if _, err := q.Add(ctx, Principal{Name: "v", Roles: []string{RoleVerifier, RoleAuditor, RoleSigner}}, QuarantineRequest{Digest: dg, Reason: "r"}); err == nil {
		t.Error("a non-admin quarantined a digest")
	}
	if list, _ := qdb.Quarantines(ctx, index.QuarantineFilter{}); len(list) != 0 {
		t.Fatalf("refused requests stored quarantines: %+v", list)
	}

	// A policy in audit mode allows what it would deny: a quarantine
	// denies whatever the mode.
	p, err := policy.Parse([]byte("name: p\nmatch: {images: [\"registry.example/**\"]}\nsignatures: {keys: [default]}\nmode: audit\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := policy.NewSet(p)
	g := NewGate(pinnedOnly{}, NewEvidence(noEvidence{}, set), set, ps, rec, time.Second, time.Minute, log, WithQuarantine(q))
	verifier := Principal{Name: "gate", Roles: []string{RoleVerifier}}
	d, err := g.Verify(ctx, verifier, VerifyRequest{Image: "registry.example/app@" + dg, Policy: "p"})
	if err != nil || !d.Allow {
		t.Fatalf("a policy in audit mode, nothing quarantined: %+v %v", d, err)
	}

	x, err := q.Add(ctx, admin, QuarantineRequest{Digest: dg, Reason: "CVE-2026-1"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = g.Verify(ctx, verifier, VerifyRequest{Image: "registry.example/app@" + dg, Policy: "p"})
	if d.Allow || d.Cached || !strings.Contains(d.Reason, x.ID) || !strings.Contains(d.Reason, "CVE-2026-1") || !strings.Contains(d.Reason, "root") {
		t.Errorf("quarantined, allowed by a policy in audit mode, or the reason does not name the quarantine: %+v", d)
	}

	// A VSA asked for by the allow above is not signed once the digest is
	// quarantined (the VSAs have no signer here: reaching it would panic).
	vsas := &VSAs{gate: g, policies: ps, keys: set, log: log, now: time.Now}
	if res, err := vsas.Issue(ctx, VSAArgs{Image: "registry.example/app@" + dg, Policy: "p", Revision: p.Revision(), KeySetRevision: set.Revision()}); res != nil || err != nil {
		t.Errorf("a VSA for a quarantined digest: %+v %v", res, err)
	}

	// The quarantine store becomes unreadable: a reload fails, and every
	// digest is denied and every key's evidence invalid until it succeeds.
	_ = qdb.Close()
	if err := q.Reload(ctx); err == nil {
		t.Fatal("a reload from a closed store succeeded")
	}
	other := "sha256:" + strings.Repeat("b", 64)
	d, err = g.Verify(ctx, verifier, VerifyRequest{Image: "registry.example/app@" + other, Policy: "p"})
	if err != nil || d.Allow || !strings.Contains(d.Reason, "quarantine list could not be read") {
		t.Errorf("quarantine list unreadable: %+v %v, want a deny", d, err)
	}
	od, _ := name.NewDigest("registry.example/app@" + other)
	if ok, reason := g.rejudge(ctx, "", od); ok || !strings.Contains(reason, "quarantine list") {
		t.Errorf("re-validation with the quarantine list unreadable: %v %s", ok, reason)
	}
	if _, err := (SignersNotQuarantined{Set: set, Quarantines: q}).Signer("default"); err == nil {
		t.Error("a key signs while the quarantine list is not known")
	}
	ev := NewEvidence(nil, set, WithKeyQuarantine(q))
	if reason, bad := ev.keyQuarantined(k.ID()); !bad || !strings.Contains(reason, "could not be read") {
		t.Errorf("evidence with the quarantine list unreadable: %v %q", bad, reason)
	}
}

// TestQuarantineCaps: the quarantines in force and a listing's page are
// bounded; a bad kind or cursor is refused.
func TestQuarantineCaps(t *testing.T) {
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
	q.maxActive = 1
	admin := Principal{Name: "root", Roles: []string{RoleAdmin}}
	if _, err := q.Add(ctx, admin, QuarantineRequest{Key: "default", Reason: "leaked"}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, admin, QuarantineRequest{Digest: "sha256:" + strings.Repeat("c", 64), Reason: "r"}); err == nil || !strings.Contains(err.Error(), "lift some first") {
		t.Errorf("a quarantine over the cap: %v", err)
	}
	if _, err := (SignersNotQuarantined{Set: set, Quarantines: q}).Signer("default"); err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Errorf("a quarantined key signs: %v", err)
	}
	auditor := Principal{Name: "a", Roles: []string{RoleAuditor}}
	for _, f := range []QuarantineFilter{{Limit: 1001}, {Limit: -1}, {Kind: "image"}, {Cursor: "!!"}} {
		if _, err := q.List(ctx, auditor, f); err == nil || !strings.Contains(err.Error(), ErrInvalid.Error()) {
			t.Errorf("List(%+v) = %v, want invalid", f, err)
		}
	}
	if page, err := q.List(ctx, auditor, QuarantineFilter{Limit: 1}); err != nil || len(page.Quarantines) != 1 || page.NextCursor == "" {
		t.Errorf("a full page has a cursor: %+v %v", page, err)
	}
}
