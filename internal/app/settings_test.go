package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEverySettingIsWiredAndDocumented: each setting is declared once, in
// Settings; its flag sets and reads the Config, and the README documents it.
func TestEverySettingIsWiredAndDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range Settings {
		if s.Help == "" {
			t.Errorf("setting %q has no help", s.Flag)
		}
		if s.Flag == "" || s.Flag == "config" {
			continue
		}
		if seen[s.Flag] {
			t.Errorf("setting %s declared twice", s.Flag)
		}
		seen[s.Flag] = true
		if !strings.HasPrefix(s.Env, "ATTESTD_") {
			t.Errorf("setting %s: env %q", s.Flag, s.Env)
		}
		if !strings.Contains(string(readme), "--"+s.Flag+"`") {
			t.Errorf("the README's configuration table does not document --%s", s.Flag)
		}
		d, c := Defaults(), Defaults()
		if err := c.Set(s.Flag, d.Get(s.Flag)); err != nil {
			t.Errorf("setting %s does not take its own default %q: %v", s.Flag, d.Get(s.Flag), err)
		}
	}
	c := Defaults()
	if err := c.Set("sbom-workers", "7"); err != nil || c.SBOMWorkers != 7 || c.Get("sbom-workers") != "7" {
		t.Errorf("sbom-workers: %v %d", err, c.SBOMWorkers)
	}
	if err := c.Set("gate-timeout", "soon"); err == nil {
		t.Error("a duration that does not parse was accepted")
	}
	if err := c.Set("no-such-setting", "x"); err == nil {
		t.Error("an unknown setting was accepted")
	}
}
