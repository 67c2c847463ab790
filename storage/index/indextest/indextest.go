// Package indextest is the conformance suite of the index: every engine
// the index runs on (SQLite, PostgreSQL) MUST pass it, so that attestd
// behaves the same on both.
package indextest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/attestd/attestd/storage/index"
)

// Opener opens a fresh, empty index for one test; reopen opens the same
// database again (to check that data and migrations survive a restart).
type Opener func(t *testing.T) (db *index.DB, reopen func() *index.DB)

// Run runs the suite on the index open returns.
func Run(t *testing.T, open Opener) {
	for name, f := range map[string]func(*testing.T, Opener){
		"tokens":             tokens,
		"keys and revisions": keys,
		"policies":           policies,
		"events":             events,
		"log indexes":        logIndexes,
		"evidence":           evidence,
		"decisions":          decisions,
		"sboms":              sboms,
		"atomic batches":     atomic,
		"concurrent writers": concurrent,
		"artifacts":          artifacts,
		"packages":           packages,
		"decision search":    decisionSearch,
		"quarantines":        quarantines,
		"revalidations":      revalidations,
	} {
		t.Run(name, func(t *testing.T) { f(t, open) })
	}
}

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func tokens(t *testing.T, open Opener) {
	db, reopen := open(t)
	now := time.Now().UTC().Truncate(time.Second)
	must(t, db.InsertToken(ctx, index.Token{ID: "a", Name: "ci", Roles: []string{"signer", "verifier"}, Repositories: []string{"r/a/**"}, Hash: "h1", CreatedAt: now}))
	if err := db.InsertToken(ctx, index.Token{ID: "b", Name: "ci2", Roles: []string{"admin"}, Hash: "h1", CreatedAt: now}); err == nil {
		t.Error("duplicate hash accepted")
	}
	got, err := db.TokenByHash(ctx, "h1")
	if err != nil || got.ID != "a" || len(got.Roles) != 2 || !got.CreatedAt.Equal(now) || len(got.Repositories) != 1 || got.Repositories[0] != "r/a/**" {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	if n, err := db.CountTokens(ctx); err != nil || n != 1 {
		t.Errorf("CountTokens = %d, %v", n, err)
	}
	before, err := db.Revision(ctx, index.RevisionTokens)
	must(t, err)
	must(t, db.RevokeToken(ctx, "a", now))
	if _, err := db.TokenByHash(ctx, "h1"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("revoked token still found: %v", err)
	}
	// Replicas that cache verified tokens flush them when this moves.
	if after, err := db.Revision(ctx, index.RevisionTokens); err != nil || after != before+1 {
		t.Errorf("tokens revision after a revocation = %d, %v; want %d", after, err, before+1)
	}
	if err := db.RevokeToken(ctx, "a", now); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("second revoke = %v", err)
	}
	if after, _ := db.Revision(ctx, index.RevisionTokens); after != before+1 {
		t.Errorf("a revocation that revoked nothing moved the tokens revision to %d", after)
	}
	db = reopen()
	ts, err := db.ListTokens(ctx, 10)
	if err != nil || len(ts) != 1 || ts[0].RevokedAt == nil || !ts[0].RevokedAt.Equal(now) {
		t.Errorf("after reopen: %+v %v", ts, err)
	}
}

func keys(t *testing.T, open Opener) {
	db, reopen := open(t)
	nb := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	na := nb.Add(time.Hour)
	r1, err := db.SaveKeys(ctx, []index.KeyRecord{
		{Name: "a", KeyID: "sha256:a", PublicPEM: "pem-a", State: "active", Default: true, NotBefore: nb},
		{Name: "b", KeyID: "sha256:b", PublicPEM: "pem-b", State: "retired", NotBefore: nb, NotAfter: &na, Reason: "rotated"},
	})
	must(t, err)
	r2, err := db.SaveKeys(ctx, []index.KeyRecord{{Name: "a", KeyID: "sha256:a", PublicPEM: "pem-a", State: "revoked", NotBefore: nb, RevokedAt: &na, Reason: "leak"}})
	must(t, err)
	if r2 != r1+1 {
		t.Errorf("revisions %d then %d: each save bumps by one", r1, r2)
	}
	db = reopen()
	ks, err := db.Keys(ctx)
	if err != nil || len(ks) != 2 {
		t.Fatalf("Keys = %+v, %v", ks, err)
	}
	if a := ks[0]; a.Name != "a" || a.State != "revoked" || a.Default || a.RevokedAt == nil || !a.RevokedAt.Equal(na) || a.Reason != "leak" || !a.NotBefore.Equal(nb) {
		t.Errorf("key a = %+v", a)
	}
	if b := ks[1]; b.NotAfter == nil || !b.NotAfter.Equal(na) || b.RevokedAt != nil {
		t.Errorf("key b = %+v", b)
	}
	revs, err := db.Revisions(ctx)
	if err != nil || revs[index.RevisionKeys] != r2 {
		t.Errorf("Revisions = %v, %v; want keys %d", revs, err, r2)
	}
	if v, err := db.Revision(ctx, "never"); err != nil || v != 0 {
		t.Errorf("an unknown revision = %d, %v", v, err)
	}
}

func policies(t *testing.T, open Opener) {
	db, _ := open(t)
	must(t, db.PutPolicy(ctx, "p", []byte("name: p\n")))
	r1, _ := db.Revision(ctx, index.RevisionPolicies)
	must(t, db.PutPolicy(ctx, "p", []byte("name: p\nmode: audit\n")))
	ps, err := db.Policies(ctx)
	if err != nil || string(ps["p"]) != "name: p\nmode: audit\n" || len(ps) != 1 {
		t.Errorf("Policies = %q, %v", ps, err)
	}
	must(t, db.DeletePolicy(ctx, "p"))
	if err := db.DeletePolicy(ctx, "p"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("deleting a deleted policy: %v", err)
	}
	r3, _ := db.Revision(ctx, index.RevisionPolicies)
	if r3 != r1+2 {
		t.Errorf("policy revision %d after put and delete, want %d", r3, r1+2)
	}
}

func event(id, kind, digest, actor string, at time.Time) index.Event {
	return index.Event{ID: id, Kind: kind, At: at, Repository: "reg/app", Digest: digest, Tags: []string{"v1"}, ActorID: "tok-" + actor, ActorName: actor, ActorKind: "token",
		KeyID: "sha256:k", KeyName: "default", KeyVersion: "3", PredicateType: "https://slsa.dev/provenance/v1", RequestID: "req-" + id,
		Locations: json.RawMessage(`[{"kind":"referrer","ref":"reg/app@sha256:r"}]`), Detail: json.RawMessage(`{"n":1}`)}
}

func events(t *testing.T, open Opener) {
	db, reopen := open(t)
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	var evs []index.Event
	for i := range 25 {
		kind, digest, actor := "signature.created", "sha256:aa", "ci"
		if i%5 == 0 {
			kind, digest, actor = "attestation.created", "sha256:bb", "release"
		}
		evs = append(evs, event(fmt.Sprintf("e%02d", i), kind, digest, actor, t0.Add(time.Duration(i)*time.Minute)))
	}
	n, err := db.AppendEvents(ctx, evs)
	if err != nil || n.Events != 25 || n.Evidence != 0 {
		t.Fatalf("AppendEvents = %+v, %v", n, err)
	}
	db = reopen()
	all, err := db.Events(ctx, index.EventFilter{Limit: 1000})
	if err != nil || len(all) != 25 {
		t.Fatalf("all events: %d, %v", len(all), err)
	}
	first := all[0]
	if first.ID != "e00" || !first.At.Equal(t0) || first.KeyVersion != "3" || first.RequestID != "req-e00" || len(first.Tags) != 1 ||
		string(first.Detail) != `{"n":1}` || first.ActorID != "tok-release" {
		t.Errorf("first event read back: %+v", first)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("events not in append order at %d", i)
		}
	}
	// Pages: a cursor resumes exactly after the last event seen.
	var paged []string
	after := int64(0)
	for {
		page, err := db.Events(ctx, index.EventFilter{After: after, Limit: 7})
		must(t, err)
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			paged = append(paged, e.ID)
		}
		after = page[len(page)-1].Seq
	}
	if len(paged) != 25 || paged[24] != "e24" {
		t.Errorf("paging saw %d events: %v", len(paged), paged)
	}
	for name, tc := range map[string]struct {
		f    index.EventFilter
		want int
	}{
		"by digest":       {index.EventFilter{Digest: "sha256:bb"}, 5},
		"by kind":         {index.EventFilter{Kind: "signature.created"}, 20},
		"by kind prefix":  {index.EventFilter{Kind: "attestation.*"}, 5},
		"by actor name":   {index.EventFilter{Actor: "release"}, 5},
		"by actor id":     {index.EventFilter{Actor: "tok-ci"}, 20},
		"since":           {index.EventFilter{Since: t0.Add(20 * time.Minute)}, 5},
		"until":           {index.EventFilter{Until: t0.Add(10 * time.Minute)}, 10},
		"since and until": {index.EventFilter{Since: t0.Add(5 * time.Minute), Until: t0.Add(10 * time.Minute), Digest: "sha256:aa"}, 4},
		"nothing":         {index.EventFilter{Digest: "sha256:none"}, 0},
	} {
		tc.f.Limit = 1000
		got, err := db.Events(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("%s: %d events, %v; want %d", name, len(got), err, tc.want)
		}
	}
}

// logIndexes: events are written without an audit log index, get one once,
// and the ones still without are found, oldest first.
func logIndexes(t *testing.T, open Opener) {
	db, reopen := open(t)
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	var evs []index.Event
	for i := range 5 {
		evs = append(evs, event(fmt.Sprintf("l%d", i), "signature.created", "sha256:aa", "ci", t0.Add(time.Duration(i)*time.Second)))
	}
	n, err := db.AppendEvents(ctx, evs)
	if err != nil || len(n.IDs) != 5 || n.IDs[4] != "l4" {
		t.Fatalf("AppendEvents ids = %v, %v", n.IDs, err)
	}
	if max, err := db.MaxLogIndex(ctx); err != nil || max != -1 {
		t.Errorf("MaxLogIndex of a log-less index = %d, %v", max, err)
	}
	must(t, db.SetLogIndexes(ctx, []string{"l0", "l2"}, []int64{10, 11}))
	// An event keeps the index it has: the later of two appends does not move it.
	must(t, db.SetLogIndexes(ctx, []string{"l0"}, []int64{12}))
	if err := db.SetLogIndexes(ctx, []string{"l1"}, []int64{10}); err == nil {
		t.Error("two events given one log index")
	}
	db = reopen()
	all, err := db.Events(ctx, index.EventFilter{Limit: 10})
	must(t, err)
	if all[0].LogIndex == nil || *all[0].LogIndex != 10 || all[1].LogIndex != nil || all[2].LogIndex == nil || *all[2].LogIndex != 11 {
		t.Errorf("log indexes read back: %v %v %v", all[0].LogIndex, all[1].LogIndex, all[2].LogIndex)
	}
	un, err := db.Events(ctx, index.EventFilter{Unlogged: true, Until: t0.Add(4 * time.Second), Limit: 10})
	must(t, err)
	if len(un) != 2 || un[0].ID != "l1" || un[1].ID != "l3" {
		t.Errorf("unlogged events before l4: %+v", un)
	}
	if max, err := db.MaxLogIndex(ctx); err != nil || max != 11 {
		t.Errorf("MaxLogIndex = %d, %v", max, err)
	}
}

func evidence(t *testing.T, open Opener) {
	db, _ := open(t)
	at := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	signed := at.Add(-time.Minute)
	row := func(content string) index.Evidence {
		return index.Evidence{Repository: "reg/app", Digest: "sha256:aa", Format: "referrer", Content: content, Kind: "signature", Ref: "reg/app@" + content, KeyID: "sha256:k", SignedAt: &signed}
	}
	e := event("s1", "signature.created", "sha256:aa", "ci", at)
	e.Evidence = []index.Evidence{row("sha256:r1"), row("sha256:r2")}
	if _, err := db.AppendEvents(ctx, []index.Event{e}); err != nil {
		t.Fatal(err)
	}
	// Reindex finds r1 again and r3 for the first time: only r3 makes an event.
	again := event("x1", "evidence.reindexed", "sha256:aa", "reindex", at)
	again.Evidence, again.OnlyIfNew = []index.Evidence{row("sha256:r1")}, true
	found := event("x2", "evidence.reindexed", "sha256:aa", "reindex", at)
	found.Evidence, found.OnlyIfNew = []index.Evidence{row("sha256:r1"), row("sha256:r3")}, true
	n, err := db.AppendEvents(ctx, []index.Event{again, found})
	if err != nil || n.Events != 1 || n.Evidence != 1 {
		t.Errorf("reindex events and new rows written: %+v, %v; want 1 and 1", n, err)
	}
	rows, err := db.EvidenceRows(ctx, index.EvidenceFilter{Digest: "sha256:aa"})
	if err != nil || len(rows) != 3 {
		t.Fatalf("evidence rows: %+v %v", rows, err)
	}
	if rows[0].EventID != "s1" || rows[2].EventID != "x2" || rows[0].SignedAt == nil || !rows[0].SignedAt.Equal(signed) {
		t.Errorf("evidence rows keep the event that first recorded them: %+v", rows)
	}
	if got, _ := db.EvidenceRows(ctx, index.EvidenceFilter{Repository: "reg/other"}); len(got) != 0 {
		t.Errorf("another repository's evidence: %+v", got)
	}
	evs, _ := db.Events(ctx, index.EventFilter{Kind: "evidence.reindexed"})
	if len(evs) != 1 || evs[0].ID != "x2" {
		t.Errorf("reindex events: %+v", evs)
	}
}

func decisions(t *testing.T, open Opener) {
	db, _ := open(t)
	at := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	dec := index.Decision{ID: "d1", At: at, Image: "reg/app@sha256:aa", Digest: "sha256:aa", Policy: "p", Revision: "r", Mode: "enforce",
		Allowed: true, Caller: "gate", Detail: `{"allow":true}`, Repository: "reg/app", Namespace: "prod", WorkloadKind: "Deployment", WorkloadName: "web", RequestID: "req"}
	e := event("ev-d1", "decision.made", "sha256:aa", "gate", at)
	e.Decision = &dec
	if _, err := db.AppendEvents(ctx, []index.Event{e}); err != nil {
		t.Fatal(err)
	}
	got, err := db.DecisionByID(ctx, "d1")
	if err != nil || got != dec {
		t.Errorf("DecisionByID = %+v, %v; want %+v", got, err, dec)
	}
	if _, err := db.DecisionByID(ctx, "none"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("unknown decision: %v", err)
	}
	if ds, err := db.DecisionsFor(ctx, "sha256:aa", 10); err != nil || len(ds) != 1 {
		t.Errorf("DecisionsFor = %+v, %v", ds, err)
	}
	must(t, db.AddReuse(ctx, []index.Reuse{
		{DecisionID: "d1", Namespace: "prod", WorkloadKind: "Pod", WorkloadName: "web-1", Count: 3, First: at, Last: at.Add(time.Second)},
		{DecisionID: "d1", Count: 1, First: at, Last: at},
	}))
	must(t, db.AddReuse(ctx, []index.Reuse{{DecisionID: "d1", Namespace: "prod", WorkloadKind: "Pod", WorkloadName: "web-1", Count: 2, First: at.Add(time.Hour), Last: at.Add(time.Minute)}}))
	rs, err := db.Reuses(ctx, "d1")
	if err != nil || len(rs) != 2 {
		t.Fatalf("Reuses = %+v, %v", rs, err)
	}
	if r := rs[1]; r.Count != 5 || !r.First.Equal(at) || !r.Last.Equal(at.Add(time.Minute)) {
		t.Errorf("reuse counts add up, the first time stays, the last advances: %+v", r)
	}
}

func sboms(t *testing.T, open Opener) {
	db, _ := open(t)
	must(t, db.PutSBOM(ctx, index.SBOMRecord{Digest: "sha256:aa", Format: "spdx-json", ToolVersion: "1", JobID: 7, Result: `{"a":1}`}))
	must(t, db.PutSBOM(ctx, index.SBOMRecord{Digest: "sha256:aa", Format: "spdx-json", ToolVersion: "1", JobID: 8, Result: `{"a":2}`}))
	r, err := db.SBOM(ctx, "sha256:aa", "spdx-json", "1")
	if err != nil || r.JobID != 8 || r.Result != `{"a":2}` {
		t.Errorf("SBOM = %+v, %v", r, err)
	}
	if _, err := db.SBOM(ctx, "sha256:aa", "cyclonedx-json", "1"); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("missing SBOM: %v", err)
	}
}

// atomic: a batch with one bad event writes nothing.
func atomic(t *testing.T, open Opener) {
	db, _ := open(t)
	at := time.Now().UTC()
	good := event("ok", "signature.created", "sha256:aa", "ci", at)
	good.Evidence = []index.Evidence{{Repository: "reg/app", Digest: "sha256:aa", Format: "referrer", Content: "c", Kind: "signature", Ref: "r"}}
	if _, err := db.AppendEvents(ctx, []index.Event{good}); err != nil {
		t.Fatal(err)
	}
	fresh := event("new", "signature.created", "sha256:bb", "ci", at)
	fresh.Evidence = []index.Evidence{{Repository: "reg/app", Digest: "sha256:bb", Format: "referrer", Content: "c2", Kind: "signature", Ref: "r2"}}
	dup := event("ok", "signature.created", "sha256:aa", "ci", at) // the same id again
	if _, err := db.AppendEvents(ctx, []index.Event{fresh, dup}); err == nil {
		t.Fatal("a batch with a duplicate event id was accepted")
	}
	evs, _ := db.Events(ctx, index.EventFilter{})
	rows, _ := db.EvidenceRows(ctx, index.EvidenceFilter{Digest: "sha256:bb"})
	if len(evs) != 1 || len(rows) != 0 {
		t.Errorf("a failed batch left %d events and %d evidence rows behind", len(evs)-1, len(rows))
	}
}

// concurrent: writers in parallel lose nothing.
func concurrent(t *testing.T, open Opener) {
	db, _ := open(t)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := event(fmt.Sprintf("w%d-%d", w, i), "signature.created", "sha256:cc", "ci", time.Now())
				if _, err := db.AppendEvents(ctx, []index.Event{e}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	evs, err := db.Events(ctx, index.EventFilter{Digest: "sha256:cc", Limit: 1000})
	if err != nil || len(evs) != writers*each {
		t.Errorf("%d events after %d concurrent appends: %v", len(evs), writers*each, err)
	}
}
