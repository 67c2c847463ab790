package pack

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

func signer(t testing.TB) signature.SignerVerifier {
	t.Helper()
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func write(t testing.TB, sv signature.Signer, files []File) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := Write(&buf, Manifest{Subject: "r.example/app@sha256:" + strings.Repeat("a", 64), Created: time.Unix(1700000000, 0).UTC()}, files,
		func(pae []byte) ([]byte, error) {
			return sv.SignMessage(bytes.NewReader(pae), options.WithContext(context.Background()))
		})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rewrite rebuilds a tar, letting edit change, drop (nil) or add members.
func rewrite(t *testing.T, b []byte, edit func(name string, data []byte) []byte, add ...File) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if data = edit(h.Name, data); data == nil {
			continue
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(data)
	}
	for _, f := range add {
		_ = tw.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(f.Data)
	}
	_ = tw.Close()
	return out.Bytes()
}

func TestPackVerifiesAndEveryTamperingFails(t *testing.T) {
	sv := signer(t)
	files := []File{{Name: "image/manifest.json", Data: []byte(`{"schemaVersion":2}`)}, {Name: "keys.json", Data: []byte(`[]`)}, {Name: "SUMMARY.md", Data: []byte("# x\n")}}
	good := write(t, sv, files)
	p, err := Read(bytes.NewReader(good), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Verify(sv)
	if err != nil || len(m.Members) != 3 || m.Version != 1 {
		t.Fatalf("a good pack: %+v %v", m, err)
	}
	other := write(t, signer(t), files)
	var otherEnv []byte
	_ = rewrite(t, other, func(n string, d []byte) []byte {
		if n == ManifestName {
			otherEnv = d
		}
		return d
	})
	for _, tc := range []struct {
		name string
		pack []byte
		want error
		says string
	}{
		{"member edited", rewrite(t, good, func(n string, d []byte) []byte {
			if n == "keys.json" {
				return []byte(`[{}]`)
			}
			return d
		}), ErrMember, "keys.json was altered"},
		{"member removed", rewrite(t, good, func(n string, d []byte) []byte {
			if n == "SUMMARY.md" {
				return nil
			}
			return d
		}), ErrMember, "SUMMARY.md is missing"},
		{"member added", rewrite(t, good, func(_ string, d []byte) []byte { return d }, File{Name: "extra.json", Data: []byte("{}")}), ErrMember, "extra.json was added"},
		{"manifest edited", rewrite(t, good, func(n string, d []byte) []byte {
			if n != ManifestName {
				return d
			}
			var env map[string]any
			_ = json.Unmarshal(d, &env)
			payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
			env["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"created":"2023`), []byte(`"created":"2024`), 1))
			out, _ := json.Marshal(env)
			return out
		}), ErrSignature, ManifestName},
		{"signature swapped", rewrite(t, good, func(n string, d []byte) []byte {
			if n == ManifestName {
				return otherEnv
			}
			return d
		}), ErrSignature, "not signed by the given key"},
		{"one byte flipped", rewrite(t, good, func(n string, d []byte) []byte {
			if n == "image/manifest.json" {
				d = bytes.Clone(d)
				d[0] ^= 1
			}
			return d
		}), ErrMember, "image/manifest.json was altered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Read(bytes.NewReader(tc.pack), DefaultLimits)
			if err == nil {
				_, err = p.Verify(sv)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%v, want %v naming %q", err, tc.want, tc.says)
			}
		})
	}
}

func TestReadBounds(t *testing.T) {
	sv := signer(t)
	good := write(t, sv, []File{{Name: "a.json", Data: bytes.Repeat([]byte("x"), 1000)}, {Name: "b.json", Data: []byte("{}")}})
	for name, lim := range map[string]Limits{
		"members":     {MaxMembers: 1, MaxMemberSize: 1 << 20, MaxTotal: 1 << 20},
		"member size": {MaxMembers: 10, MaxMemberSize: 999, MaxTotal: 1 << 20},
		"total":       {MaxMembers: 10, MaxMemberSize: 1 << 20, MaxTotal: 1200},
	} {
		if _, err := Read(bytes.NewReader(good), lim); !errors.Is(err, ErrFormat) {
			t.Errorf("over the %s bound: %v", name, err)
		}
	}
	for name, f := range map[string]tar.Header{
		"a path escaping":  {Name: "../x", Typeflag: tar.TypeReg},
		"an absolute path": {Name: "/etc/x", Typeflag: tar.TypeReg},
		"a symlink":        {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		"a directory":      {Name: "d/", Typeflag: tar.TypeDir},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&f)
		_ = tw.Close()
		if _, err := Read(bytes.NewReader(buf.Bytes()), DefaultLimits); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	dup := rewrite(t, good, func(_ string, d []byte) []byte { return d }, File{Name: "a.json", Data: []byte("y")})
	if _, err := Read(bytes.NewReader(dup), DefaultLimits); !errors.Is(err, ErrFormat) {
		t.Errorf("a duplicate member: %v", err)
	}
}

// TestWriteRefusesWhatReadWouldNot: a pack over the bounds a verifier
// reads is never written.
func TestWriteRefusesWhatReadWouldNot(t *testing.T) {
	sv := signer(t)
	sign := func(pae []byte) ([]byte, error) { return sv.SignMessage(bytes.NewReader(pae)) }
	big := File{Name: "big.bin", Data: make([]byte, DefaultLimits.MaxMemberSize+1)}
	if err := Write(io.Discard, Manifest{}, []File{big}, sign); !errors.Is(err, ErrFormat) {
		t.Errorf("a member over %d bytes: %v", DefaultLimits.MaxMemberSize, err)
	}
	many := make([]File, DefaultLimits.MaxMembers+1)
	for i := range many {
		many[i] = File{Name: fmt.Sprintf("m%05d", i)}
	}
	if err := Write(io.Discard, Manifest{}, many, sign); !errors.Is(err, ErrFormat) {
		t.Errorf("%d members: %v", len(many), err)
	}
	if err := Write(io.Discard, Manifest{}, []File{{Name: "../x"}}, sign); !errors.Is(err, ErrFormat) {
		t.Errorf("a name escaping the pack: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	sv := signer(f)
	good := write(f, sv, []File{{Name: "image/manifest.json", Data: []byte("{}")}, {Name: "evidence.json", Data: []byte("[]")}, {Name: "keys.json", Data: []byte("[]")}})
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Read(bytes.NewReader(b), Limits{MaxMembers: 64, MaxMemberSize: 1 << 20, MaxTotal: 4 << 20})
		if err != nil {
			return
		}
		if len(p.Members) > 64 || p.Envelope == nil {
			t.Fatalf("accepted %d members, envelope %v", len(p.Members), p.Envelope != nil)
		}
		m, err := p.Verify(sv)
		if err != nil {
			return
		}
		// What verifies is listed exactly; Check must not panic on it.
		if len(m.Members) != len(p.Members) {
			t.Fatalf("verified %d members, read %d", len(m.Members), len(p.Members))
		}
		_, _ = Check(p, m, "")
	})
}
