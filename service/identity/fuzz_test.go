package identity

import (
	"encoding/json"
	"testing"
)

// FuzzClaims evaluates rules and derives build facts over hostile claim
// sets, as a token's verified but attacker-shaped claims would be: no
// panic, and the rule for acme/app on main never matches other claims.
func FuzzClaims(f *testing.F) {
	r, err := compileRule(Rule{Name: "r", Issuer: "gh", When: `claims.repository == "acme/app" && claims.ref == "refs/heads/main"`,
		Roles: []string{"signer"}, Repositories: []string{"r/**"}, Keys: []string{"k"}}, map[string]bool{"gh": true})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{}`, `{"repository":"acme/app","ref":"refs/heads/main"}`, `{"repository":["acme/app"]}`,
		`{"repository":"acme/app","ref":1}`, `{"project_path":"g/p","ref_type":"tag","ref":"v1","job_id":7}`, `{"repository":null}`} {
		f.Add([]byte(s))
	}
	kinds := []string{KindGitHubActions, KindGitLabCI, KindBuildkite, KindCircleCI, KindKubernetes, KindGeneric}
	f.Fuzz(func(t *testing.T, b []byte) {
		var claims map[string]any
		if json.Unmarshal(b, &claims) != nil || claims == nil {
			return
		}
		for _, k := range kinds {
			id := Identity{Issuer: "https://issuer.example", IssuerName: "gh", Kind: k, Subject: "s", Claims: claims}
			_ = id.Build()
			ok, err := r.match(id)
			if ok && err == nil && (claims["repository"] != "acme/app" || claims["ref"] != "refs/heads/main") {
				t.Fatalf("the rule matched %s", b)
			}
		}
	})
}
