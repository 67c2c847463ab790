package service

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/storage/index"
)

// logged is a recorder over a real SQLite index and a real POSIX audit log.
func logged(t testing.TB) (*index.DB, *auditlog.Log, *Recorder) {
	t.Helper()
	dir := t.TempDir()
	db, err := index.OpenSQLite(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	auditlog.RouteLogs(slog.New(slog.DiscardHandler))
	skey, _, _ := note.GenerateKey(rand.Reader, "attestd/service.test")
	s, _ := note.NewSigner(skey)
	l, err := auditlog.OpenPOSIX(context.Background(), filepath.Join(dir, "log"), auditlog.Options{Signer: s, CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(db, slog.New(slog.DiscardHandler), WithAuditLog(l))
	t.Cleanup(func() {
		_ = rec.Close(context.Background())
		_ = l.Close(context.Background())
		_ = db.Close()
	})
	return db, l, rec
}

// TestRecordAppendsToLog: every record is answered with its events' log
// indices, the index holds them by the time of the answer, and the log's
// entry at each is the event's canonical entry as the index holds it.
func TestRecordAppendsToLog(t *testing.T) {
	ctx := context.Background()
	db, l, rec := logged(t)
	var wg sync.WaitGroup
	got := make([]Recorded, 40)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := []Event{{Kind: EventSignatureCreated, Actor: Principal{TokenID: "t1", Name: "ci"}, Repository: "r/app", Digest: fmt.Sprintf("sha256:%02d", i),
				KeyID: "k", Detail: map[string]any{"n": i}}}
			if i%4 == 0 { // a provenance about two subjects: two events, one record
				evs = append(evs, Event{Kind: EventProvenanceCreated, Actor: Principal{Name: "attestd"}, Repository: "r/lib", Digest: "sha256:ff"})
			}
			r, err := rec.Record(WithRequestID(ctx, fmt.Sprint("req-", i)), evs...)
			if err != nil || len(r.LogIndex) != len(evs) {
				t.Errorf("record %d: %+v, %v", i, r, err)
			}
			got[i] = r
		}()
	}
	wg.Wait()
	all, err := db.Events(ctx, index.EventFilter{Limit: 1000})
	if err != nil || len(all) != 50 {
		t.Fatalf("events: %d, %v", len(all), err)
	}
	byID := map[string]index.Event{}
	for _, e := range all {
		byID[e.ID] = e
	}
	size, _ := l.Size(ctx)
	entries, err := l.Entries(ctx, 0, size, size)
	if err != nil || size != 50 {
		t.Fatalf("log of %d entries: %v", size, err)
	}
	for _, r := range got {
		for j, id := range r.IDs {
			e := byID[id]
			if e.LogIndex == nil || uint64(*e.LogIndex) != r.LogIndex[j] {
				t.Errorf("event %s answered with log index %d, the index holds %v", id, r.LogIndex[j], e.LogIndex)
				continue
			}
			want, err := LogEntry(e)
			if err != nil || string(entries[r.LogIndex[j]]) != string(want) {
				t.Errorf("log entry %d:\n%s\nthe event as the index holds it:\n%s", r.LogIndex[j], entries[r.LogIndex[j]], want)
			}
		}
	}
}

// TestOutboxFindsSequencedEvents: attestd stopped after the index commit
// (events without a log index), one of them after it was sequenced too
// (its entry in the log, its index not noted). The outbox notes the
// sequenced one where it is and appends only the others, once each.
func TestOutboxFindsSequencedEvents(t *testing.T) {
	ctx := context.Background()
	db, l, rec := logged(t)
	if _, err := rec.Record(ctx, Event{Kind: EventPolicyPut, Actor: Principal{Name: "admin", TokenID: "a"}}); err != nil {
		t.Fatal(err)
	}
	var evs []index.Event
	for i := range 3 {
		e, err := rec.Prepare(ctx, Event{Kind: EventSignatureCreated, Actor: Principal{Name: "ci", TokenID: "t"}, Digest: fmt.Sprint("sha256:", i)})
		if err != nil {
			t.Fatal(err)
		}
		e.At = e.At.Add(-time.Minute)
		evs = append(evs, e)
	}
	if _, err := db.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	entry, _ := LogEntry(evs[1])
	seq, err := l.Append(ctx, [][]byte{entry})
	if err != nil {
		t.Fatal(err)
	}
	o := NewLogOutbox(db, l, rec, time.Second, time.Hour, slog.New(slog.DiscardHandler))
	n, err := o.Once(ctx)
	if err != nil || n != 3 {
		t.Fatalf("outbox: %d, %v", n, err)
	}
	if n, err := o.Once(ctx); err != nil || n != 0 {
		t.Errorf("a second round found %d, %v", n, err)
	}
	size, _ := l.Size(ctx)
	if size != 4 {
		t.Errorf("log size %d, want 4: the sequenced event was appended again", size)
	}
	all, _ := db.Events(ctx, index.EventFilter{Limit: 10})
	for _, e := range all {
		if e.LogIndex == nil {
			t.Errorf("event %s still without a log index", e.ID)
		}
		if e.ID == evs[1].ID && uint64(*e.LogIndex) != seq[0] {
			t.Errorf("the sequenced event noted at %d, it is at %d", *e.LogIndex, seq[0])
		}
	}
	// Events younger than the grace period are left to the recorder.
	young, _ := rec.Prepare(ctx, Event{Kind: EventSignatureCreated, Actor: Principal{Name: "ci", TokenID: "t"}})
	if _, err := db.AppendEvents(ctx, []index.Event{young}); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Once(ctx); err != nil || n != 0 {
		t.Errorf("the outbox took an event younger than its grace: %d, %v", n, err)
	}
}

// BenchmarkDurableAppends: events recorded per second on one process, each
// durable in the SQLite index and sequenced in the POSIX log before its
// record returns, from 64 concurrent callers (a record is one event, as
// a signature's is). The log's cost is measured against the index alone in
// the same run.
func BenchmarkDurableAppends(b *testing.B) {
	const callers, perCaller = 64, 16
	run := func(b *testing.B, rec *Recorder) time.Duration {
		var total time.Duration
		for range b.N {
			t0 := time.Now()
			var wg sync.WaitGroup
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perCaller {
						if _, err := rec.Record(context.Background(), Event{Kind: EventSignatureCreated, Actor: Principal{Name: "ci", TokenID: "t"},
							Repository: "r/app", Digest: fmt.Sprintf("sha256:%d-%d", c, i), KeyID: "k"}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			total += time.Since(t0)
		}
		return total
	}
	_, _, withLog := logged(b)
	db, err := index.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	indexOnly := NewRecorder(db, slog.New(slog.DiscardHandler))
	defer indexOnly.Close(context.Background())
	b.ResetTimer()
	on := run(b, withLog)
	off := run(b, indexOnly)
	events := float64(b.N * callers * perCaller)
	b.ReportMetric(events/on.Seconds(), "appends/s")
	b.ReportMetric(events/off.Seconds(), "index-only-appends/s")
	b.ReportMetric(0, "ns/op")
}
