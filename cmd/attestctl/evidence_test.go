package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attestd/attestd/internal/testenv"
)

// retar rewrites the pack at path to a new file, letting edit change or
// drop (nil) members and appending add.
func retar(t *testing.T, path string, edit func(name string, data []byte) []byte, add map[string][]byte) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
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
		_ = tw.WriteHeader(h)
		_, _ = tw.Write(data)
	}
	for n, d := range add {
		_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(d)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(d)
	}
	_ = tw.Close()
	p := filepath.Join(t.TempDir(), "tampered.tar")
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func member(t *testing.T, path, name string) []byte {
	t.Helper()
	var got []byte
	retar(t, path, func(n string, d []byte) []byte {
		if n == name {
			got = d
		}
		return d
	}, nil)
	if got == nil {
		t.Fatalf("%s has no member %s", path, name)
	}
	return got
}

// TestWalkthroughEvidencePack is the done-when: after the walk-through,
// evidence export, then evidence verify with the server stopped, proves the
// image's signature, provenance, SBOM, decisions and log inclusion; each
// kind of tampering fails, naming what broke.
func TestWalkthroughEvidencePack(t *testing.T) {
	d := walkthrough(t)
	dir := t.TempDir()
	packFile, older := filepath.Join(dir, "pack.tar"), filepath.Join(dir, "older.tar")
	if out, err := run(t, d.auditor, d.srv, "evidence", "export", d.repository+"@"+d.digest, "-o", older); err != nil {
		t.Fatalf("evidence export: %v\n%s", err, out)
	}
	time.Sleep(1100 * time.Millisecond) // a later pack, with another signed time
	if out, err := run(t, d.auditor, d.srv, "evidence", "export", d.image, "-o", packFile); err != nil {
		t.Fatalf("evidence export: %v\n%s", err, out)
	}
	if _, err := run(t, d.verifier, d.srv, "evidence", "export", d.image, "-o", filepath.Join(dir, "x.tar")); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a verifier exported a pack: %v", err)
	}
	logKey := filepath.Join(dir, "log.pub")
	out, err := run(t, d.auditor, d.srv, "audit", "log-key")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(logKey, []byte(out), 0o600)
	pub := d.s.PublicKeyPEM(t)
	other := testenv.Start(t, nil)
	otherPub := other.PublicKeyPEM(t)
	otherLog, _ := run(t, other.AdminToken, "--server="+other.URL, "audit", "log-key")
	otherLogKey := filepath.Join(dir, "other-log.pub")
	_ = os.WriteFile(otherLogKey, []byte(otherLog), 0o600)
	other.Stop()
	d.s.Stop() // offline from here on

	start := time.Now()
	out, err = run(t, "", "evidence", "verify", packFile, "--key", pub, "--log-key", logKey)
	if err != nil {
		t.Fatalf("evidence verify: %v\n%s", err, out)
	}
	if fi, err := os.Stat(packFile); err == nil {
		t.Logf("pack of %d bytes verified offline in %s", fi.Size(), time.Since(start))
	}
	t.Logf("%s", out)
	for _, want := range []string{
		"PROVEN  pack signature",
		"PROVEN  image manifest: image/manifest.json is the manifest of " + d.digest,
		"PROVEN  signature (legacy-tag): verifies with key default",
		"PROVEN  image signature: signature https://sigstore.dev/cosign/sign/v1 (referrer)",
		"PROVEN  provenance: attestation https://slsa.dev/provenance/v1 (legacy-tag)",
		"PROVEN  provenance: attestation https://slsa.dev/provenance/v1 (referrer)",
		"PROVEN  SBOM: attestation https://spdx.dev/Document (legacy-tag)",
		"PROVEN  VSA: attestation https://slsa.dev/verification_summary/v1",
		"PROVEN  SBOM document: sboms/",
		"PROVEN  decision: " + d.decisionID + " allow by policy demo",
		", recorded in the log at index",
		"is signed by the pinned log key",
		"PROVEN  log inclusion: decision.made event",
		"PROVEN  log inclusion: signature.created event",
		"OK: every check passed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("evidence verify does not say %q", want)
		}
	}
	summary := string(member(t, packFile, "SUMMARY.md"))
	for _, want := range []string{"# Evidence pack: " + d.repository + "@" + d.digest, "https://slsa.dev/provenance/v1", "allow by policy demo", "index"} {
		if !strings.Contains(summary, want) {
			t.Errorf("SUMMARY.md lacks %q:\n%s", want, summary)
		}
	}

	var entries []json.RawMessage
	_ = json.Unmarshal(member(t, packFile, "log/entries.json"), &entries)
	if len(entries) < 6 {
		t.Errorf("%d log entries in the pack, want the upload, provenance, SBOM, signature, decision and VSA", len(entries))
	}
	olderEnv := member(t, older, "MANIFEST.dsse.json")
	same := func(_ string, b []byte) []byte { return b }
	for _, tc := range []struct {
		name, pack string
		args       []string
		says       string
	}{
		{"member edited", retar(t, packFile, func(n string, b []byte) []byte {
			if n == "keys.json" {
				return bytes.Replace(b, []byte(`"active"`), []byte(`"revoked"`), 1)
			}
			return b
		}, nil), nil, "keys.json was altered"},
		{"member removed", retar(t, packFile, func(n string, b []byte) []byte {
			if strings.HasPrefix(n, "signatures/") && strings.HasSuffix(n, ".sig") {
				return nil
			}
			return b
		}, nil), nil, ".sig is missing"},
		{"member added", retar(t, packFile, same, map[string][]byte{"attestations/999-legacy.dsse.json": []byte("{}")}), nil, "attestations/999-legacy.dsse.json was added"},
		{"manifest edited", retar(t, packFile, func(n string, b []byte) []byte {
			if n == "MANIFEST.dsse.json" {
				return bytes.Replace(b, []byte(`"sig":"`), []byte(`"sig":"AAAA`), 1)
			}
			return b
		}, nil), nil, "MANIFEST.dsse.json"},
		{"signature swapped", retar(t, packFile, func(n string, b []byte) []byte {
			if n == "MANIFEST.dsse.json" {
				var env, old map[string]any
				_ = json.Unmarshal(b, &env)
				_ = json.Unmarshal(olderEnv, &old)
				env["signatures"] = old["signatures"]
				b, _ = json.Marshal(env)
			}
			return b
		}, nil), nil, "not signed by the given key"},
		{"log entry edited", retar(t, packFile, func(n string, b []byte) []byte {
			if n == "log/entries.json" {
				return bytes.Replace(b, []byte(`"decision.made"`), []byte(`"policy.put"`), 1)
			}
			return b
		}, nil), nil, "log/entries.json was altered"},
		{"another attestd's key", packFile, []string{"--key", otherPub}, "not signed by the given key"},
		{"another log's key", packFile, []string{"--key", pub, "--log-key", otherLogKey}, "log/checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args == nil {
				args = []string{"--key", pub, "--log-key", logKey}
			}
			out, err := run(t, "", append([]string{"evidence", "verify", tc.pack}, args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.says) || strings.Contains(out, "OK: every check passed") {
				t.Errorf("%v, want a failure naming %q\n%s", err, tc.says, out)
			}
		})
	}
}
