package tlog

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// FuzzCheckpoint: any bytes given as a checkpoint either fail to open or
// are a checkpoint signed by the pinned key, for its origin, with a 32-byte
// root; and no proof makes a fuzzed checkpoint consistent with, or include
// an entry under, a tree it does not commit to.
func FuzzCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "attestd/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := NewVerifier(vkey)
	tree := testonly.New(rfc6962.DefaultHasher)
	for i := range 9 {
		tree.AppendData([]byte{byte(i)})
	}
	good, _ := note.Sign(&note.Note{Text: "attestd/fuzz\n9\n" + base64.StdEncoding.EncodeToString(tree.Hash()) + "\n"}, s)
	f.Add(good, []byte{3}, uint64(3))
	f.Add([]byte("attestd/fuzz\n1\nAAAA\n\n— attestd/fuzz abcd\n"), []byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, raw, entry []byte, index uint64) {
		cp, err := OpenCheckpoint(raw, v)
		if err != nil {
			return
		}
		if cp.Origin != "attestd/fuzz" || len(cp.Root) != 32 || !bytes.Equal(cp.Raw, raw) {
			t.Fatalf("opened a checkpoint that is not the pinned log's: %+v", cp)
		}
		// Only the seed is signed: whatever else opened must be it.
		if !bytes.Equal(raw, good) {
			t.Fatalf("a checkpoint that was never signed opened: %q", raw)
		}
		p, _ := tree.InclusionProof(index%9, 9)
		err = CheckInclusion(cp, index, entry, p)
		if err == nil && (index >= 9 || !bytes.Equal(entry, []byte{byte(index)})) {
			t.Fatalf("entry %x proven at %d", entry, index)
		}
	})
}
