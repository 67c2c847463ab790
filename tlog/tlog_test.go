package tlog

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

func newKey(t testing.TB, origin string) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, vkey
}

func sign(t testing.TB, s note.Signer, size uint64, root []byte) []byte {
	t.Helper()
	raw, err := note.Sign(&note.Note{Text: string(flog.Checkpoint{Origin: s.Name(), Size: size, Hash: root}.Marshal())}, s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestCanonicalEntry: the server (from the index) and an auditor (from GET
// /v1/events) build the same bytes for one event, whatever the JSON
// spelling of its empty parts, its key order or its time's precision.
func TestCanonicalEntry(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	server := Entry{ID: "e1", Kind: "signature.created", At: at, Repository: "r", Digest: "sha256:ab",
		Actor: Actor{Kind: "token", ID: "t1", Name: "ci"}, Key: &Key{ID: "k"}, Locations: json.RawMessage(`[{"kind":"referrer","ref":"x"}]`),
		Detail: json.RawMessage(`{"b":1,"a":"z"}`), Tags: []string{}}
	auditor := server
	auditor.At = at.UTC().Truncate(time.Microsecond)
	auditor.Detail = json.RawMessage(`{ "a": "z", "b": 1.0 }`)
	auditor.Tags = nil
	a, err := server.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	b, err := auditor.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatalf("one event, two entries:\n%s\n%s", a, b)
	}
	want := `{"actor":{"id":"t1","kind":"token","name":"ci"},"at":"2026-11-27T09:00:00.123456Z","detail":{"a":"z","b":1},"digest":"sha256:ab","id":"e1","key":{"id":"k"},"kind":"signature.created","locations":[{"kind":"referrer","ref":"x"}],"repository":"r"}`
	if string(a) != want {
		t.Errorf("entry:\n got %s\nwant %s", a, want)
	}
	empty := Entry{ID: "e2", Kind: "policy.deleted", At: at, Locations: json.RawMessage("[]"), Detail: json.RawMessage("{}")}
	bare := Entry{ID: "e2", Kind: "policy.deleted", At: at}
	x, _ := empty.Canonical()
	y, _ := bare.Canonical()
	if string(x) != string(y) || strings.Contains(string(x), "locations") {
		t.Errorf("empty locations and detail change the entry: %s vs %s", x, y)
	}
	if id, err := EntryID(a); err != nil || id != "e1" {
		t.Errorf("EntryID = %q, %v", id, err)
	}
	if _, err := (Entry{Kind: "x"}).Canonical(); !errors.Is(err, ErrMalformed) {
		t.Errorf("an entry without an id: %v", err)
	}
	big := Entry{ID: "e3", Kind: "x", Detail: json.RawMessage(`{"a":"` + strings.Repeat("x", MaxEntryBytes) + `"}`)}
	if _, err := big.Canonical(); !errors.Is(err, ErrMalformed) {
		t.Errorf("an entry over 64 KiB: %v", err)
	}
}

func TestOpenCheckpoint(t *testing.T) {
	s, v, _ := newKey(t, "attestd/test")
	root := rfc6962.DefaultHasher.EmptyRoot()
	raw := sign(t, s, 0, root)
	cp, err := OpenCheckpoint(raw, v)
	if err != nil || cp.Size != 0 || cp.Origin != "attestd/test" {
		t.Fatalf("OpenCheckpoint = %+v, %v", cp, err)
	}
	other, _, _ := newKey(t, "attestd/test")
	if _, err := OpenCheckpoint(sign(t, other, 0, root), v); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "another key") {
		t.Errorf("a checkpoint signed by another key: %v", err)
	}
	edited := []byte(strings.Replace(string(raw), "\n0\n", "\n7\n", 1))
	if _, err := OpenCheckpoint(edited, v); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "invalid") {
		t.Errorf("a checkpoint edited after signing: %v", err)
	}
	for _, bad := range []string{"", "garbage", "attestd/test\n1\n\n\n— x\n"} {
		if _, err := OpenCheckpoint([]byte(bad), v); err == nil {
			t.Errorf("%q opened", bad)
		}
	}
	if _, err := NewVerifier("not a key"); !errors.Is(err, ErrMalformed) {
		t.Errorf("a malformed log key: %v", err)
	}
}

func TestConsistencyAndInclusion(t *testing.T) {
	s, v, _ := newKey(t, "attestd/test")
	tree := testonly.New(rfc6962.DefaultHasher)
	var entries [][]byte
	for i := range 20 {
		e := []byte(fmt.Sprintf(`{"id":"e%d"}`, i))
		entries = append(entries, e)
		tree.AppendData(e)
	}
	at := func(size uint64) Checkpoint {
		cp, err := OpenCheckpoint(sign(t, s, size, tree.HashAt(size)), v)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	c7, c20 := at(7), at(20)
	p, _ := tree.ConsistencyProof(7, 20)
	if err := CheckConsistency(c7, c20, p); err != nil {
		t.Errorf("a consistent extension: %v", err)
	}
	if err := CheckConsistency(c20, c20, nil); err != nil {
		t.Errorf("the same checkpoint twice: %v", err)
	}
	if err := CheckConsistency(c20, c7, nil); !errors.Is(err, ErrRollback) {
		t.Errorf("a smaller checkpoint after a larger one: %v", err)
	}
	// A fork: another tree of the same size, signed by the same key.
	forked := testonly.New(rfc6962.DefaultHasher)
	for i, e := range entries {
		if i == 3 {
			e = []byte(`{"id":"rewritten"}`)
		}
		forked.AppendData(e)
	}
	f20, err := OpenCheckpoint(sign(t, s, 20, forked.HashAt(20)), v)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConsistency(c20, f20, nil); !errors.Is(err, ErrFork) {
		t.Errorf("two roots for size 20: %v", err)
	}
	fp, _ := forked.ConsistencyProof(7, 20)
	if err := CheckConsistency(c7, f20, fp); !errors.Is(err, ErrInconsistent) {
		t.Errorf("history rewritten below an earlier checkpoint: %v", err)
	}
	for i, e := range entries {
		ip, _ := tree.InclusionProof(uint64(i), 20)
		if err := CheckInclusion(c20, uint64(i), e, ip); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}
	ip, _ := tree.InclusionProof(3, 20)
	if err := CheckInclusion(c20, 3, []byte(`{"id":"rewritten"}`), ip); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("an edited entry: %v", err)
	}
	if err := CheckInclusion(c7, 9, entries[9], ip); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("an entry past the checkpoint: %v", err)
	}
}
