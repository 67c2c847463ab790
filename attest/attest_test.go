package attest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

const hexd = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestSignStatementBindsDigest(t *testing.T) {
	d, err := name.NewDigest("registry.example/team/app@sha256:" + hexd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SignStatement(d, SignMeta{})
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != CosignSignPredicateType {
		t.Errorf("statement %s", b)
	}
	if len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] != hexd {
		t.Errorf("subject %+v, want the one digest", st.Subject)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	b, err := Bundle(InTotoPayloadType, []byte(`{"a":1}`), []byte("sig"), []byte("aGludA=="))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), BundleMediaType) {
		t.Errorf("bundle has no v0.3 media type: %s", b)
	}
	env, err := ParseBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if env.Hint != "aGludA==" || string(env.Payload) != `{"a":1}` || string(env.Signatures[0]) != "sig" || env.PayloadType != InTotoPayloadType {
		t.Errorf("round trip lost data: %+v", env)
	}
}

func TestBundleRefusesEmpty(t *testing.T) {
	if _, err := Bundle(InTotoPayloadType, []byte("{}"), nil, []byte("h")); err == nil {
		t.Error("bundle without signature accepted")
	}
	for _, in := range []string{`{}`, `{"mediaType":"application/json"}`, `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`, `not json`} {
		if _, err := ParseBundle([]byte(in)); err == nil {
			t.Errorf("ParseBundle(%s) accepted", in)
		}
	}
}

func TestSimpleSigningIsDeterministic(t *testing.T) {
	d, _ := name.NewDigest("registry.example/team/app@sha256:" + hexd)
	a, err := SimpleSigning(d, SignMeta{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SimpleSigning(d, SignMeta{})
	if string(a) != string(b) {
		t.Error("payload differs between calls")
	}
	if !strings.Contains(string(a), `"docker-manifest-digest":"sha256:`+hexd+`"`) || !strings.Contains(string(a), `"docker-reference":"registry.example/team/app"`) {
		t.Errorf("payload %s", a)
	}
}

func TestSignedMetaRoundTrip(t *testing.T) {
	d, _ := name.NewDigest("registry.example/team/app@sha256:" + hexd)
	at := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	meta := SignMeta{SignedAt: at, KeyID: "sha256:abc"}
	p, err := SimpleSigning(d, meta)
	if err != nil {
		t.Fatal(err)
	}
	dg, got, err := ParseSimpleSigning(p)
	if err != nil || dg != "sha256:"+hexd || !got.SignedAt.Equal(at) || got.KeyID != "sha256:abc" {
		t.Errorf("simple signing round trip: %s %+v %v", dg, got, err)
	}
	b, err := SignStatement(d, meta)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStatement(b)
	if err != nil || len(st.Subjects) != 1 || st.Subjects[0] != "sha256:"+hexd || !st.Meta.SignedAt.Equal(at) || st.PredicateType != CosignSignPredicateType {
		t.Errorf("statement round trip: %+v %v", st, err)
	}
	for _, bad := range []string{`{}`, `{"critical":{"type":"other"}}`, `{"critical":{"type":"cosign container image signature","image":{}}}`} {
		if _, _, err := ParseSimpleSigning([]byte(bad)); err == nil {
			t.Errorf("ParseSimpleSigning(%s) accepted", bad)
		}
	}
	if _, err := ParseStatement([]byte(`{"_type":"https://in-toto.io/Statement/v1"}`)); err == nil {
		t.Error("statement without subject accepted")
	}
}
