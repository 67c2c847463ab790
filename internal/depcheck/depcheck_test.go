// Package depcheck keeps the import arrows pointing one way:
// api → service → attest, keys, storage.
package depcheck

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/attestd/attestd/"

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "github.com/attestd/attestd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 8 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func under(path, prefix string) bool {
	return path == mod+prefix || strings.HasPrefix(path, mod+prefix+"/")
}

// rule says: packages under from MUST NOT import anything matching bad.
type rule struct {
	from   string
	why    string
	forbid func(imp string) bool
}

var rules = []rule{
	{"attest", "attest is pure formats: no I/O", func(i string) bool {
		return i == "net/http" || i == "net" || i == "os" || i == "os/exec" || strings.HasPrefix(i, mod+"storage") || i == mod+"keys"
	}},
	{"service", "service knows nothing of HTTP", func(i string) bool {
		return i == "net/http" || strings.HasPrefix(i, "github.com/labstack/echo")
	}},
	{"storage", "storage sits below service and api", func(i string) bool {
		return under(i, "service") || under(i, "api") || i == mod+"internal/app"
	}},
	{"keys", "keys sits below service and api", func(i string) bool {
		return under(i, "service") || under(i, "api") || under(i, "storage")
	}},
	{"service", "service does not call up into api", func(i string) bool { return under(i, "api") }},
	{"api/client", "the client shares only wire types with the server", func(i string) bool {
		return i == mod+"api" || under(i, "service") || under(i, "storage")
	}},
	{"cmd/attestctl", "attestctl talks to attestd only through api/client (service/policy, pure, lints offline)", func(i string) bool {
		return i == mod+"api" || (under(i, "service") && i != mod+"service/policy") || under(i, "storage") || under(i, "keys")
	}},
	{"service/policy", "policy is pure: it fetches nothing", func(i string) bool {
		return i == "net/http" || i == "net" || i == "os" || under(i, "storage") || i == mod+"service"
	}},
	{"service/workload", "workload decodes admission reviews: pure, light (it is fuzzed)", func(i string) bool {
		return i == "net/http" || i == "net" || i == "os" || strings.HasPrefix(i, mod) && !under(i, "internal/repomatch")
	}},
	{"internal/repomatch", "repomatch is a leaf", func(i string) bool { return strings.HasPrefix(i, mod) }},
	{"internal/notify", "notify delivers webhooks: a leaf that knows nothing of attestd", func(i string) bool { return strings.HasPrefix(i, mod) }},
	{"service/identity", "identity verifies tokens and applies rules; it knows nothing of services, storage or HTTP handlers", func(i string) bool {
		return strings.HasPrefix(i, mod) && !under(i, "internal/repomatch")
	}},
	{"internal/testenv/oidcprovider", "the test OpenID provider is a leaf", func(i string) bool { return strings.HasPrefix(i, mod) }},
	{"internal/testenv/hostile", "the hostile registry is a leaf: storage tests use it without linking attestd", func(i string) bool { return strings.HasPrefix(i, mod) }},
	{"sbom", "sbom catalogs and encodes; it sits below service and talks to no attestd storage", func(i string) bool {
		return strings.HasPrefix(i, mod) && !under(i, "attest")
	}},
	{"storage/index", "the index knows nothing of registries, keys or services", func(i string) bool {
		return strings.HasPrefix(i, mod) && !under(i, "storage/index")
	}},
	{"storage/auditlog", "the audit log appends bytes: it knows nothing of events, the index or services", func(i string) bool {
		return strings.HasPrefix(i, mod)
	}},
	{"tlog", "tlog is the log's pure formats, shared by server and auditors: no I/O, light (it is fuzzed)", func(i string) bool {
		return i == "net/http" || i == "net" || i == "os" || i == "os/exec" || strings.HasPrefix(i, mod) ||
			strings.HasPrefix(i, "github.com/transparency-dev/tessera")
	}},
	{"sbom/vers", "vers is pure and light (it is fuzzed): the standard library and osv-scalibr's semantic ordering only", func(i string) bool {
		return strings.Contains(strings.Split(i, "/")[0], ".") && i != "github.com/google/osv-scalibr/semantic" || i == "net/http" || i == "net" || i == "os"
	}},
	{"attest/pack", "the evidence pack format is pure and light (it is fuzzed, and attestctl verifies offline with it): attest and tlog only", func(i string) bool {
		return i == "net/http" || i == "net" || i == "os" || i == "os/exec" || strings.HasPrefix(i, mod) && !under(i, "attest") && !under(i, "tlog")
	}},
	{"api/ui", "the console is a client of the read services: no storage, keys or evidence of its own, and not the JSON API", func(i string) bool {
		return i == mod+"api" || under(i, "storage") || under(i, "keys")
	}},
	{"sbom/inventory", "inventory reads SBOM bytes: no I/O, no cataloging (syft), nothing of attestd", func(i string) bool {
		return i == "net/http" || i == "net" || i == "os" || strings.HasPrefix(i, "github.com/anchore/") || strings.HasPrefix(i, mod)
	}},
}

// exempt lists the packages a rule does not apply to, and why.
var exempt = map[string]string{
	mod + "service/identity|service knows nothing of HTTP": "an OIDC client: it fetches issuers' discovery documents and JWKS (net/http as a client only; still no echo)",
}

func TestImportDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, r := range rules {
			if !under(p.ImportPath, r.from) {
				continue
			}
			if _, ok := exempt[p.ImportPath+"|"+r.why]; ok {
				for _, imp := range p.Imports {
					if strings.HasPrefix(imp, "github.com/labstack/echo") {
						t.Errorf("%s imports %s", p.ImportPath, imp)
					}
				}
				continue
			}
			for _, imp := range p.Imports {
				if r.forbid(imp) {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.why)
				}
			}
		}
		// Nothing but the wiring imports package api.
		if p.ImportPath != mod+"internal/app" {
			for _, imp := range p.Imports {
				if imp == mod+"api" {
					t.Errorf("%s imports package api; only internal/app may", p.ImportPath)
				}
			}
		}
	}
}

// TestRulesCatchViolations proves the rules can fail.
func TestRulesCatchViolations(t *testing.T) {
	if !rules[0].forbid("net/http") || !rules[1].forbid("github.com/labstack/echo/v4") || !rules[2].forbid(mod+"service") ||
		!ruleFor("sbom/vers").forbid("github.com/anchore/syft/syft") || ruleFor("sbom/vers").forbid("github.com/google/osv-scalibr/semantic") ||
		!ruleFor("sbom/inventory").forbid("github.com/anchore/syft/syft") {
		t.Fatal("a rule does not catch its own violation")
	}
}

func ruleFor(from string) rule {
	for _, r := range rules {
		if r.from == from {
			return r
		}
	}
	panic("no rule for " + from)
}
