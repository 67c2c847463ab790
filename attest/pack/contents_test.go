package pack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/attestd/attestd/attest"
)

// contents builds the members of a consistent pack about one digest,
// signed by sv (evidence) and a fresh log key; edit may change them before
// the pack is signed. It returns the pack and the pinned log key.
func contents(t *testing.T, sv signature.SignerVerifier, edit func(m map[string][]byte)) (*Pack, Manifest, string) {
	t.Helper()
	ctx := context.Background()
	man := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	sum := sha256.Sum256(man)
	d, _ := name.NewDigest("r.example/app@sha256:" + hex.EncodeToString(sum[:]))
	signMsg := func(b []byte) []byte {
		s, err := sv.SignMessage(bytes.NewReader(b), options.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pub, _ := sv.PublicKey()
	pemKey, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
	keys, _ := json.Marshal([]Key{{ID: "sha256:k", Name: "default", State: "active", NotBefore: time.Unix(0, 0), PublicKey: string(pemKey)}})
	payload, _ := attest.SimpleSigning(d, attest.SignMeta{})
	st, _ := attest.NewStatement([]attest.Subject{{Name: "r.example/app", Digest: d.DigestStr()}}, "https://example.com/test/v1", []byte(`{"x":1}`), attest.SignMeta{})
	env, _ := attest.Envelope(attest.InTotoPayloadType, st, signMsg(attest.PAE(attest.InTotoPayloadType, st)))
	items, _ := json.Marshal([]Item{
		{Kind: "signature", Format: "legacy-tag", Ref: "r.example/app@sha256:1", Payload: "signatures/0.payload", Signature: "signatures/0.sig"},
		{Kind: "attestation", Format: "legacy-tag", Ref: "r.example/app@sha256:2", PredicateType: "https://example.com/test/v1", Envelope: "attestations/0.json"},
	})
	// A log of two entries about the digest: a signature and a decision.
	e0 := []byte(fmt.Sprintf(`{"kind":"signature.created","digest":%q}`, d.DigestStr()))
	e1 := []byte(fmt.Sprintf(`{"kind":"decision.made","digest":%q,"detail":{"decision_id":"dec1"}}`, d.DigestStr()))
	h := rfc6962.DefaultHasher
	l0, l1 := h.HashLeaf(e0), h.HashLeaf(e1)
	root := h.HashChildren(l0, l1)
	skey, vkey, _ := note.GenerateKey(rand.Reader, "test-log")
	ns, _ := note.NewSigner(skey)
	cp, _ := note.Sign(&note.Note{Text: string(flog.Checkpoint{Origin: "test-log", Size: 2, Hash: root}.Marshal())}, ns)
	entries, _ := json.Marshal([]LogEntry{{Index: 0, Kind: "signature.created", Entry: e0, Proof: [][]byte{l1}}, {Index: 1, Kind: "decision.made", Entry: e1, Proof: [][]byte{l0}}})
	decs, _ := json.Marshal([]Decision{{ID: "dec1", At: time.Unix(1700000000, 0), Policy: "p", Revision: "r", Allowed: true}})
	m := map[string][]byte{
		ImageManifest: man, KeysFile: keys, EvidenceFile: items, DecisionsFile: decs,
		"signatures/0.payload": payload, "signatures/0.sig": signMsg(payload), "attestations/0.json": env,
		LogCheckpoint: cp, LogKey: []byte(vkey), LogEntries: entries,
	}
	if edit != nil {
		edit(m)
	}
	var files []File
	for _, n := range []string{ImageManifest, KeysFile, EvidenceFile, DecisionsFile, "signatures/0.payload", "signatures/0.sig", "attestations/0.json", LogCheckpoint, LogKey, LogEntries} {
		if b, ok := m[n]; ok {
			files = append(files, File{Name: n, Data: b})
		}
	}
	var buf bytes.Buffer
	if err := Write(&buf, Manifest{Subject: d.String(), Created: time.Unix(1700000000, 0)}, files, func(pae []byte) ([]byte, error) { return signMsg(pae), nil }); err != nil {
		t.Fatal(err)
	}
	p, err := Read(&buf, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := p.Verify(sv)
	if err != nil {
		t.Fatal(err)
	}
	return p, mf, vkey
}

// TestCheckCatchesLiesInASignedPack: Check proves the contents, not only
// the pack signature; each inconsistency is named even in a pack whose
// signature and members hold.
func TestCheckCatchesLiesInASignedPack(t *testing.T) {
	sv := signer(t)
	p, m, vkey := contents(t, sv, nil)
	proven, err := Check(p, m, vkey)
	if err != nil {
		t.Fatalf("a consistent pack: %v", err)
	}
	var all []string
	for _, pr := range proven {
		all = append(all, pr.What+": "+pr.Detail)
	}
	for _, want := range []string{"image manifest: ", "signature (legacy-tag): verifies with key default", "attestation https://example.com/test/v1 (legacy-tag): verifies",
		"log checkpoint: test-log size 2 is signed by the pinned log key", "log inclusion: decision.made event at index 1", "recorded in the log at index 1"} {
		if !strings.Contains(strings.Join(all, "\n"), want) {
			t.Errorf("Check did not prove %q:\n%s", want, strings.Join(all, "\n"))
		}
	}
	other := signer(t)
	otherPEM := func() []byte {
		pub, _ := other.PublicKey()
		b, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
		k, _ := json.Marshal([]Key{{ID: "sha256:o", Name: "other", PublicKey: string(b)}})
		return k
	}()
	_, _, otherLog, _ := func() (note.Signer, note.Verifier, string, error) {
		_, v, err := note.GenerateKey(rand.Reader, "test-log")
		return nil, nil, v, err
	}()
	for _, tc := range []struct {
		name string
		edit func(m map[string][]byte)
		pin  string
		says string
	}{
		{"log entry edited", func(m map[string][]byte) {
			m[LogEntries] = bytes.Replace(m[LogEntries], []byte(`"index":1`), []byte(`"index":0`), 1)
		}, "", "not included"},
		{"image manifest of another digest", func(m map[string][]byte) { m[ImageManifest] = []byte(`{}`) }, "", "not the subject's"},
		{"evidence about another digest", func(m map[string][]byte) {
			d2, _ := name.NewDigest("r.example/app@sha256:" + strings.Repeat("f", 64))
			m["signatures/0.payload"], _ = attest.SimpleSigning(d2, attest.SignMeta{})
		}, "", "no key in keys.json verifies it"},
		{"a key not in the pack", func(m map[string][]byte) { m[KeysFile] = otherPEM }, "", "no key in keys.json verifies it"},
		{"another log's key pinned", nil, otherLog, "log/checkpoint"},
		{"no keys", func(m map[string][]byte) { delete(m, KeysFile) }, "", "keys.json: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, m, vkey := contents(t, sv, tc.edit)
			if tc.pin != "" {
				vkey = tc.pin
			}
			if _, err := Check(p, m, vkey); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%v, want a failure naming %q", err, tc.says)
			}
		})
	}
}
