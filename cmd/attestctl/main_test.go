package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/internal/testenv"
)

func run(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("ATTESTD_TOKEN", token)
	var out bytes.Buffer
	c := root()
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestAttestctl(t *testing.T) {
	s := testenv.Start(t, nil)
	srv := "--server=" + s.URL

	out, err := run(t, s.AdminToken, srv, "tokens", "create", "--name", "ci", "--role", "signer", "-o", "json")
	if err != nil {
		t.Fatalf("tokens create: %v\n%s", err, out)
	}
	var tok struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || !strings.HasPrefix(tok.Secret, "atd_") {
		t.Fatalf("tokens create -o json: %q (%v)", out, err)
	}

	tag, d, _ := testenv.PushRandom(t, s.RegistryHost, "ctl/app", &authn.Basic{Username: "ci", Password: tok.Secret})
	out, err = run(t, tok.Secret, srv, "sign", tag.String())
	if err != nil {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Signed "+d.String()) || !strings.Contains(out, "legacy-tag") || !strings.Contains(out, "referrer") {
		t.Errorf("sign output:\n%s", out)
	}

	out, err = run(t, "", srv, "keys", "--pem")
	if err != nil || !strings.HasPrefix(out, "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("keys --pem: %v\n%s", err, out)
	}

	out, err = run(t, s.AdminToken, srv, "tokens", "list")
	if err != nil || !strings.Contains(out, tok.ID) || strings.Contains(out, tok.Secret) {
		t.Errorf("tokens list: %v\n%s", err, out)
	}

	t.Run("failures are clear and non-zero", func(t *testing.T) {
		_, err := run(t, tok.Secret, srv, "tokens", "list")
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "request id") {
			t.Errorf("signer listing tokens: %v", err)
		}
		_, err = run(t, "", srv, "sign", tag.String())
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("sign without token: %v", err)
		}
		_, err = run(t, tok.Secret, "--server=http://127.0.0.1:1", "sign", tag.String())
		if err == nil {
			t.Error("unreachable server: no error")
		}
		_, err = run(t, tok.Secret, srv, "sign", tag.String(), "-o", "yaml")
		if err == nil || !strings.Contains(err.Error(), "output") {
			t.Errorf("bad output format: %v", err)
		}
	})

	out, err = run(t, s.AdminToken, srv, "tokens", "revoke", tok.ID)
	if err != nil || !strings.Contains(out, "Revoked") {
		t.Errorf("revoke: %v\n%s", err, out)
	}
	if _, err := run(t, tok.Secret, srv, "sign", tag.String()); err == nil {
		t.Error("revoked token still signs")
	}
}
