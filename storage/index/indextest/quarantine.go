package indextest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/attestd/attestd/storage/index"
)

func quarantines(t *testing.T, open Opener) {
	db, reopen := open(t)
	at := time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)
	q := index.Quarantine{ID: "q1", Kind: index.QuarantineDigest, Subject: "sha256:aa", Reason: "CVE-1", Actor: "admin", CreatedAt: at}
	rev0, _ := db.Revision(ctx, index.RevisionQuarantines)
	rev, err := db.AddQuarantine(ctx, q, event("e-q1", "quarantine.added", "sha256:aa", "admin", at))
	if err != nil || rev != rev0+1 {
		t.Fatalf("AddQuarantine = %d, %v; want revision %d", rev, err, rev0+1)
	}
	again := q
	again.ID = "q2"
	if _, err := db.AddQuarantine(ctx, again, event("e-q2", "quarantine.added", "sha256:aa", "admin", at)); !errors.Is(err, index.ErrQuarantined) {
		t.Errorf("a second active quarantine of one digest: %v", err)
	}
	if evs, _ := db.Events(ctx, index.EventFilter{Kind: "quarantine.added"}); len(evs) != 1 {
		t.Errorf("a refused quarantine wrote its event: %+v", evs)
	}
	key := index.Quarantine{ID: "q3", Kind: index.QuarantineKey, Subject: "sha256:k", KeyName: "release", Reason: "leaked", Actor: "admin", CreatedAt: at.Add(time.Second)}
	_, err = db.AddQuarantine(ctx, key)
	must(t, err)
	db = reopen()
	active, err := db.Quarantines(ctx, index.QuarantineFilter{Active: true})
	if err != nil || len(active) != 2 || active[0] != q || active[1].KeyName != "release" {
		t.Fatalf("active quarantines = %+v, %v", active, err)
	}
	if page, _ := db.Quarantines(ctx, index.QuarantineFilter{AfterAt: q.CreatedAt, AfterID: q.ID, Limit: 1}); len(page) != 1 || page[0].ID != "q3" {
		t.Errorf("cursor: %+v", page)
	}
	lifted, rev2, err := db.LiftQuarantine(ctx, "q1", "admin2", "patched", at.Add(time.Hour), event("e-l1", "quarantine.lifted", "sha256:aa", "admin2", at))
	if err != nil || rev2 <= rev || lifted.LiftedAt == nil || !lifted.LiftedAt.Equal(at.Add(time.Hour)) || lifted.LiftedBy != "admin2" || lifted.LiftReason != "patched" {
		t.Fatalf("LiftQuarantine = %+v, %d, %v", lifted, rev2, err)
	}
	if _, _, err := db.LiftQuarantine(ctx, "q1", "admin2", "again", at); !errors.Is(err, index.ErrLifted) {
		t.Errorf("lifting twice: %v", err)
	}
	if _, _, err := db.LiftQuarantine(ctx, "none", "admin2", "x", at); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("lifting an unknown quarantine: %v", err)
	}
	if evs, _ := db.Events(ctx, index.EventFilter{Kind: "quarantine.lifted"}); len(evs) != 1 {
		t.Errorf("lift events: %+v", evs)
	}
	if active, _ := db.Quarantines(ctx, index.QuarantineFilter{Active: true}); len(active) != 1 || active[0].ID != "q3" {
		t.Errorf("after the lift: %+v", active)
	}
	// Lifted, the digest may be quarantined again.
	again.ID = "q4"
	if _, err := db.AddQuarantine(ctx, again); err != nil {
		t.Errorf("quarantine again after a lift: %v", err)
	}
	if all, _ := db.Quarantines(ctx, index.QuarantineFilter{Kind: index.QuarantineDigest, Subject: "sha256:aa"}); len(all) != 2 {
		t.Errorf("history of a digest: %+v", all)
	}
}

func revalidations(t *testing.T, open Opener) {
	db, _ := open(t)
	at := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	dec := func(id, digest, ns string, allowed bool, when time.Time) index.Event {
		e := event("ev-"+id, "decision.made", digest, "gate", when)
		e.Decision = &index.Decision{ID: id, At: when, Image: "reg/app@" + digest, Digest: digest, Policy: "p", Revision: "r", Mode: "enforce",
			Allowed: allowed, Caller: "gate", Detail: "{}", Repository: "reg/app", Namespace: ns}
		return e
	}
	_, err := db.AppendEvents(ctx, []index.Event{
		dec("d1", "sha256:aa", "prod", true, at),
		dec("d2", "sha256:bb", "prod", false, at),                  // a deny: not admitted
		dec("d3", "sha256:cc", "", true, at),                       // no namespace: not an admission
		dec("d4", "sha256:dd", "dev", true, at.Add(-48*time.Hour)), // before the window, but reused in it
		dec("d5", "sha256:ee", "dev", true, at.Add(-48*time.Hour)), // before the window
	})
	must(t, err)
	must(t, db.AddReuse(ctx, []index.Reuse{{DecisionID: "d4", Namespace: "stage", Count: 1, First: at, Last: at}}))
	got, err := db.AdmittedSince(ctx, at.Add(-time.Hour), 10)
	if err != nil || len(got) != 2 || got[0].Digest != "sha256:aa" || got[0].Namespace != "prod" || got[1].Digest != "sha256:dd" || got[1].Namespace != "stage" || got[0].Repository != "reg/app" {
		t.Errorf("AdmittedSince = %+v, %v", got, err)
	}
	if got, _ := db.AdmittedSince(ctx, at.Add(-time.Hour), 1); len(got) != 1 {
		t.Errorf("limit: %+v", got)
	}

	r := func(dg, ns string, ok bool, when time.Time) index.Revalidation {
		return index.Revalidation{Repository: "reg/app", Digest: dg, Namespace: ns, Compliant: ok, Reason: "why " + dg, CheckedAt: when}
	}
	must(t, db.PutRevalidations(ctx, []index.Revalidation{r("sha256:aa", "prod", true, at), r("sha256:dd", "stage", false, at)}, at))
	must(t, db.PutRevalidations(ctx, []index.Revalidation{r("sha256:aa", "prod", false, at.Add(time.Hour))}, at.Add(time.Hour)))
	all, err := db.Revalidations(ctx, index.RevalidationFilter{})
	if err != nil || len(all) != 1 || all[0].Compliant || !all[0].CheckedAt.Equal(at.Add(time.Hour)) {
		t.Errorf("a run replaces results and drops what it did not check: %+v, %v", all, err)
	}
	no := false
	if got, _ := db.Revalidations(ctx, index.RevalidationFilter{Compliant: &no, Namespace: "prod", Digests: []string{"sha256:aa"}}); len(got) != 1 {
		t.Errorf("filter: %+v", got)
	}
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("sha256:%064d", i)
	}
	many[999] = "sha256:aa"
	if got, err := db.Revalidations(ctx, index.RevalidationFilter{Digests: many}); err != nil || len(got) != 1 {
		t.Errorf("a thousand digests: %+v %v", got, err)
	}
	if got, _ := db.Revalidations(ctx, index.RevalidationFilter{Namespace: "dev"}); len(got) != 0 {
		t.Errorf("filter by namespace: %+v", got)
	}
	if n, err := db.NonCompliantByNamespace(ctx); err != nil || n["prod"] != 1 || len(n) != 1 {
		t.Errorf("NonCompliantByNamespace = %v, %v", n, err)
	}

	sig := func(repo, dg, key, content string) index.Evidence {
		return index.Evidence{Repository: repo, Digest: dg, Format: "referrer", Content: content, Kind: "signature", Ref: repo + "@" + content, KeyID: key}
	}
	e := event("s1", "signature.created", "sha256:aa", "ci", at)
	e.Evidence = []index.Evidence{sig("reg/app", "sha256:aa", "sha256:k1", "c1"), sig("reg/app", "sha256:bb", "sha256:k1", "c2"),
		sig("reg/app", "sha256:bb", "sha256:k2", "c3"), sig("reg/app", "sha256:cc", "sha256:k2", "c4")}
	e.Evidence = append(e.Evidence, index.Evidence{Repository: "reg/app", Digest: "sha256:cc", Format: "referrer", Content: "c5", Kind: "attestation", Ref: "x", KeyID: "sha256:k1"})
	_, err = db.AppendEvents(ctx, []index.Event{e})
	must(t, err)
	signed, err := db.SignedBy(ctx, "sha256:k1", 10)
	if err != nil || len(signed) != 2 || signed[0].Digest != "sha256:aa" || len(signed[0].KeyIDs) != 1 || len(signed[1].KeyIDs) != 2 {
		t.Errorf("SignedBy = %+v, %v", signed, err)
	}
	if got, _ := db.SignedBy(ctx, "sha256:k1", 1); len(got) != 1 {
		t.Errorf("SignedBy limit: %+v", got)
	}
}
