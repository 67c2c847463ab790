package identity

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"

	"github.com/attestd/attestd/internal/repomatch"
)

// Rule grants an identity roles on repository scopes and keys, when its
// issuer is Issuer and When (a CEL expression over `claims`, `issuer` and
// `subject`) holds. Rules are tried in order; the first that matches
// decides; none matching grants nothing.
type Rule struct {
	Name   string `yaml:"name"`
	Issuer string `yaml:"issuer"`
	// When is a CEL condition, e.g.
	// claims.repository == "acme/app" && claims.ref == "refs/heads/main".
	When         string   `yaml:"when"`
	Roles        []string `yaml:"roles"`
	Repositories []string `yaml:"repositories"`
	// Keys are the key names it may sign with (required with signer).
	Keys []string `yaml:"keys,omitempty"`
}

// Roles a rule may grant: a workload identity never administers.
var grantable = []string{"signer", "verifier", "auditor"}

// maxRuleCost bounds the estimated and the runtime cost of a rule.
const maxRuleCost = 100_000

var ruleEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("issuer", cel.StringType),
		cel.Variable("subject", cel.StringType),
	)
})

type rule struct {
	issuer string
	prg    cel.Program
	grant  Grant
}

type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: 1000}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

func compileRule(r Rule, issuers map[string]bool) (*rule, error) {
	var errs []error
	if !issuers[r.Issuer] {
		errs = append(errs, fmt.Errorf("issuer %q is not configured", r.Issuer))
	}
	if r.When == "" {
		errs = append(errs, errors.New("when: a condition over the claims is required (say \"true\" to grant every token of the issuer)"))
	}
	if len(r.Roles) == 0 {
		errs = append(errs, errors.New("roles: at least one"))
	}
	for _, role := range r.Roles {
		if !contains(grantable, role) {
			errs = append(errs, fmt.Errorf("role %q: a rule grants signer, verifier or auditor", role))
		}
	}
	if contains(r.Roles, "signer") && len(r.Repositories) == 0 {
		errs = append(errs, errors.New("repositories: a rule granting signer names the repositories it may write to"))
	}
	if contains(r.Roles, "signer") && len(r.Keys) == 0 {
		errs = append(errs, errors.New("keys: a rule granting signer names the keys it may sign with"))
	}
	for _, p := range r.Repositories {
		if !repomatch.Valid(p) {
			errs = append(errs, fmt.Errorf("repository pattern %q", p))
		}
	}
	env, err := ruleEnv()
	if err != nil {
		return nil, err
	}
	var prg cel.Program
	if r.When != "" {
		ast, iss := env.Compile(r.When)
		switch {
		case iss != nil && iss.Err() != nil:
			errs = append(errs, fmt.Errorf("when: %w", iss.Err()))
		case ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType:
			errs = append(errs, fmt.Errorf("when: must be a boolean, not %s", ast.OutputType()))
		default:
			est, err := env.EstimateCost(ast, sizeEstimator{})
			if err == nil && est.Max > maxRuleCost {
				err = fmt.Errorf("estimated cost %d is over the limit %d", est.Max, maxRuleCost)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("when: %w", err))
			} else if prg, err = env.Program(ast, cel.CostLimit(maxRuleCost)); err != nil {
				errs = append(errs, fmt.Errorf("when: %w", err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &rule{issuer: r.Issuer, prg: prg, grant: Grant{Rule: r.Name, Roles: r.Roles, Repositories: r.Repositories, Keys: r.Keys}}, nil
}

// match reports whether the rule applies to id. An evaluation error is an
// error, never a match.
func (r *rule) match(id Identity) (bool, error) {
	if id.IssuerName != r.issuer {
		return false, nil
	}
	out, _, err := r.prg.Eval(map[string]any{"claims": id.Claims, "issuer": id.Issuer, "subject": id.Subject})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
