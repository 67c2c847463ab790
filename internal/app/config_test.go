package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:9000\ndata_dir: /from/file\nregistries:\n  - host: reg.example\n    insecure: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ATTESTD_DATA_DIR": "/from/env", "ATTESTD_REGISTRIES": "other.example, reg.example", "ATTESTD_SHUTDOWN_TIMEOUT": "3s"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("listen", "127.0.0.1:9100"); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" || c.DataDir != "/from/env" || c.ShutdownTimeout != 3*time.Second {
		t.Errorf("precedence wrong: %+v", c)
	}
	if len(c.Registries) != 2 || !c.Registries[0].Insecure || c.Registries[1].Host != "other.example" {
		t.Errorf("registries %+v", c.Registries)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	for name, yaml := range map[string]string{
		"unknown key":  "listne: x\n",
		"bad duration": "shutdown_timeout: soon\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		_ = os.WriteFile(p, []byte(yaml), 0o600)
		c := Defaults()
		if err := c.LoadFile(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, mod := range map[string]func(*Config){
		"bad listen":      func(c *Config) { c.Listen = "nope" },
		"no registry":     func(c *Config) { c.EmbeddedRegistry.Enabled = false },
		"bad level":       func(c *Config) { c.LogLevel = "loud" },
		"zero body limit": func(c *Config) { c.MaxBodyBytes = 0 },
		"host with path":  func(c *Config) { c.Registries = []Registry{{Host: "a/b"}} },
		"two secrets":     func(c *Config) { c.Registries = []Registry{{Host: "a", PasswordEnv: "X", TokenEnv: "Y"}} },
		// Replicas on one index MUST share one audit log and its key.
		"replicas, each its own log": func(c *Config) {
			c.DatabaseURL, c.EmbeddedRegistry.Enabled, c.Registries = "postgres://db/x", false, []Registry{{Host: "r"}}
		},
		"shared log without a shared key": func(c *Config) { c.LogDatabaseURL = "mysql://u@db:3306/log" },
		"log url not mysql":               func(c *Config) { c.LogDatabaseURL, c.LogKeyFile = "postgres://db/log", "/k" },
		"two logs":                        func(c *Config) { c.LogDatabaseURL, c.LogKeyFile, c.LogDir = "mysql://u@db/log", "/k", "/var/log" },
		"origin with a space":             func(c *Config) { c.LogOrigin = "attestd log" },
		"origin with a plus":              func(c *Config) { c.LogOrigin = "attestd+x" },
		"webhook off the allowlist": func(c *Config) {
			c.RevalidateWebhookURL, c.RevalidateWebhookAllow = "https://evil.example/hook", []string{"hooks.example"}
		},
		"webhook without an allowlist": func(c *Config) { c.RevalidateWebhookURL = "https://hooks.example/hook" },
		"webhook not http":             func(c *Config) { c.RevalidateWebhookURL, c.RevalidateWebhookAllow = "file:///etc/passwd", []string{""} },
		"revalidate interval zero":     func(c *Config) { c.RevalidateInterval = 0 },
	} {
		c := Defaults()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := Defaults()
	if err := c.Set("max-body-bytes", "lots"); err == nil {
		t.Error("non-numeric limit accepted")
	}
	if err := c.Set("log-public", "maybe"); err == nil {
		t.Error("log-public maybe accepted")
	}
	// What replicas set is accepted.
	c = Defaults()
	c.DatabaseURL, c.EmbeddedRegistry.Enabled, c.Registries = "postgres://db/x", false, []Registry{{Host: "r"}}
	c.LogDatabaseURL, c.LogKeyFile, c.LogOrigin = "mysql://attestd:pw@db:3306/log", "/etc/attestd/log.key", "attestd/registry.example.com"
	if err := c.Validate(); err != nil {
		t.Errorf("a replica's log settings refused: %v", err)
	}
}

func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:1\n"))
	f.Add([]byte("registries:\n - host: a\n"))
	f.Add([]byte("{{{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c := Defaults()
		if err := c.LoadFile(p); err != nil {
			return
		}
		_ = c.Validate() // must not panic
	})
}
