package attest

import (
	"bytes"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func FuzzParseBundle(f *testing.F) {
	d, _ := name.NewDigest("example.com/a@sha256:" + string(bytes.Repeat([]byte("a"), 64)))
	st, _ := SignStatement(d, SignMeta{})
	good, _ := Bundle(InTotoPayloadType, st, []byte("sig"), []byte("hint"))
	f.Add(good)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseBundle(b)
		if err != nil {
			return
		}
		if len(env.Signatures) == 0 {
			t.Fatal("accepted a bundle without signatures")
		}
	})
}

func FuzzParsePayloads(f *testing.F) {
	d, _ := name.NewDigest("example.com/a@sha256:" + string(bytes.Repeat([]byte("b"), 64)))
	st, _ := SignStatement(d, SignMeta{KeyID: "k"})
	ss, _ := SimpleSigning(d, SignMeta{KeyID: "k"})
	f.Add(st)
	f.Add(ss)
	f.Add([]byte(`{"critical":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if dg, _, err := ParseSimpleSigning(b); err == nil && dg == "" {
			t.Fatal("accepted a simple-signing payload without a digest")
		}
		if s, err := ParseStatement(b); err == nil && len(s.Subjects) == 0 {
			t.Fatal("accepted a statement without subjects")
		}
	})
}
