package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryReadBudgetSetting: the budget has a default, and is set from
// YAML, the environment and a flag like every other setting.
func TestRegistryReadBudgetSetting(t *testing.T) {
	c := Defaults()
	if c.RegistryReadBudget != 256<<20 {
		t.Errorf("default budget %d, want 256 MiB", c.RegistryReadBudget)
	}
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("registry_read_budget: 33554432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadFile(p); err != nil || c.RegistryReadBudget != 32<<20 {
		t.Fatalf("from YAML: %d, %v", c.RegistryReadBudget, err)
	}
	env := map[string]string{"ATTESTD_REGISTRY_READ_BUDGET": "67108864"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil || c.RegistryReadBudget != 64<<20 {
		t.Fatalf("from the environment: %d, %v", c.RegistryReadBudget, err)
	}
	if err := c.Set("registry-read-budget", "134217728"); err != nil || c.RegistryReadBudget != 128<<20 {
		t.Fatalf("from a flag: %d, %v", c.RegistryReadBudget, err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid budget refused: %v", err)
	}
	if err := c.Set("registry-read-budget", "lots"); err == nil {
		t.Error("non-numeric budget accepted")
	}
	for _, s := range Settings {
		if s.Flag == "registry-read-budget" && s.Env == "ATTESTD_REGISTRY_READ_BUDGET" && s.YAML == "registry_read_budget" {
			return
		}
	}
	t.Error("registry-read-budget is not in the Settings table")
}

func TestRegistryConfigRefusals(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"zero budget":             func(c *Config) { c.RegistryReadBudget = 0 },
		"budget under a manifest": func(c *Config) { c.RegistryReadBudget = c.MaxManifestBytes - 1 },
		"realm with a scheme":     func(c *Config) { c.Registries = []Registry{{Host: "a", TokenRealms: []string{"https://auth.a/token"}}} },
		"empty realm":             func(c *Config) { c.Registries = []Registry{{Host: "a", TokenRealms: []string{""}}} },
	} {
		c := Defaults()
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTokenRealmsFromYAML(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "registries:\n  - host: index.docker.io\n    token_realms: [auth.docker.io]\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if len(c.Registries) != 1 || strings.Join(c.Registries[0].TokenRealms, ",") != "auth.docker.io" {
		t.Fatalf("registries %+v", c.Registries)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid realm refused: %v", err)
	}
	a := &App{cfg: c}
	hosts, err := a.hosts("")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || strings.Join(hosts[0].TokenRealms, ",") != "auth.docker.io" {
		t.Errorf("token realms not passed to the registry set: %+v", hosts)
	}
}
