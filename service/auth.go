package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/attestd/attestd/internal/repomatch"
	"github.com/attestd/attestd/service/identity"
	"github.com/attestd/attestd/storage/index"
)

// Role names. A token has one or more.
const (
	RoleAdmin    = "admin"
	RoleSigner   = "signer"
	RoleVerifier = "verifier"
	RoleAuditor  = "auditor"
)

// Roles lists every valid role.
var Roles = []string{RoleAdmin, RoleSigner, RoleVerifier, RoleAuditor}

// Action is something a caller may be allowed to do.
type Action string

// Actions and the roles that allow them. Admin allows everything.
const (
	ActionSign           Action = "sign"
	ActionPush           Action = "registry.push"
	ActionManageTokens   Action = "tokens.manage"
	ActionMetrics        Action = "metrics.read"
	ActionVerify         Action = "verify"
	ActionManageKeys     Action = "keys.manage"
	ActionManagePolicies Action = "policies.manage"
	// ActionRegistryDelete deletes manifests and tags in the embedded registry.
	ActionRegistryDelete Action = "registry.delete"
	// ActionAudit reads the record: events, decisions, evidence.
	ActionAudit Action = "audit.read"
	// ActionQuarantine adds and lifts quarantines: a deny everywhere, at
	// once, like a key revocation, so admin only.
	ActionQuarantine Action = "quarantine.manage"
)

var allowed = map[Action][]string{
	ActionSign:           {RoleSigner},
	ActionPush:           {RoleSigner},
	ActionManageTokens:   {},
	ActionMetrics:        {RoleAuditor},
	ActionVerify:         {RoleVerifier, RoleAuditor, RoleSigner},
	ActionManageKeys:     {},
	ActionManagePolicies: {},
	ActionRegistryDelete: {},
	ActionAudit:          {RoleAuditor},
	ActionQuarantine:     {},
}

// Principal is an authenticated caller.
type Principal struct {
	TokenID string
	Name    string
	Roles   []string
	// Repositories are the repository patterns ("host/path" globs, "**" for
	// all) the caller may write to: sign, attest, upload, push. An admin
	// may write anywhere.
	Repositories []string
	// Keys, where set, are the only key names the caller may sign with
	// (a workload identity's rule names them); nil means any key.
	Keys []string
	// Identity is the verified CI workload identity, for a caller who
	// presented an OIDC ID token; nil for an attestd token.
	Identity *identity.Identity
}

// Authorize returns nil if p may do a, and an error wrapping ErrForbidden otherwise.
func Authorize(p Principal, a Action) error {
	if slices.Contains(p.Roles, RoleAdmin) {
		return nil
	}
	for _, r := range allowed[a] {
		if slices.Contains(p.Roles, r) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s needs one of the roles %s", ErrForbidden, a, strings.Join(append([]string{RoleAdmin}, allowed[a]...), ", "))
}

// AuthorizeRepository returns nil if p may do a, a write, in repository
// repo ("host/path"), and an error wrapping ErrForbidden otherwise. Every
// write route MUST call it with the repository it writes to, after the
// reference is parsed (and so in canonical form) and before any registry call.
func AuthorizeRepository(p Principal, a Action, repo string) error {
	if err := Authorize(p, a); err != nil {
		return err
	}
	if slices.Contains(p.Roles, RoleAdmin) || repomatch.Any(p.Repositories, repo) {
		return nil
	}
	scopes := strings.Join(p.Repositories, ", ")
	if scopes == "" {
		scopes = "none"
	}
	return fmt.Errorf("%w: token %s may not write to %s (its repositories: %s)", ErrForbidden, p.Name, repo, scopes)
}

type tokenStore interface {
	InsertToken(ctx context.Context, t index.Token, evs ...index.Event) error
	TokenByHash(ctx context.Context, hash string) (index.Token, error)
	ListTokens(ctx context.Context, limit int) ([]index.Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time, evs ...index.Event) error
	CountTokens(ctx context.Context) (int, error)
}

// Tokens issues, lists, revokes and checks API tokens. Token secrets are
// returned once, at creation, and stored only as SHA-256 hashes.
//
// A token found valid in the index is trusted again without reading the
// index for at most tokenCacheTTL, keyed by its hash (never its secret).
// Revoke MUST flush that cache before it returns, so a token revoked here
// is refused from the next request; Reload flushes it for revocations made
// by another replica (the tokens revision, through Sync). Failures are
// never cached: an unknown or revoked token, or an index that cannot be
// read, is looked up (and refused) every time.
type Tokens struct {
	store    tokenStore
	rec      preparer
	ids      *identity.Verifier
	internal string
	now      func() time.Time

	mu sync.RWMutex
	// gen counts flushes: an entry read from the index before a flush is
	// never stored after it.
	gen      uint64
	verified map[[sha256.Size]byte]verifiedToken
}

// tokenCacheTTL bounds how long a verified token is trusted without
// reading the index: the longest a revocation made on another replica can
// go unseen if the revision poll (Sync) fails. It is the revision poll's
// interval on PostgreSQL.
const tokenCacheTTL = 250 * time.Millisecond

// maxVerifiedTokens caps the cache; past it, it starts over.
const maxVerifiedTokens = 10_000

type verifiedToken struct {
	p   Principal
	gen uint64
	at  time.Time
}

// WithIdentities accepts OIDC ID tokens of CI workload identities, as
// verified and granted by ids, alongside attestd tokens.
func (t *Tokens) WithIdentities(ids *identity.Verifier) *Tokens {
	t.ids = ids
	return t
}

// tokenPrefix marks attestd tokens, so that secret scanners can find leaked ones.
const tokenPrefix = "atd_"

// NewTokens returns the token service. It also makes an in-memory credential
// that attestd uses to push to its own embedded registry; it is never stored.
// Creations and revocations are recorded as events in the same transaction
// (rec prepares them); the secret never is.
func NewTokens(store tokenStore, rec preparer) (*Tokens, error) {
	s, err := newSecret()
	if err != nil {
		return nil, err
	}
	return &Tokens{store: store, rec: rec, internal: s, now: time.Now, verified: map[[sha256.Size]byte]verifiedToken{}}, nil
}

// Reload forgets every verified token, so each is read from the index
// again: revocations made by another replica apply from the next request.
// Sync calls it when the tokens revision moves.
func (t *Tokens) Reload(context.Context) error {
	t.flush()
	return nil
}

func (t *Tokens) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	clear(t.verified)
}

func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// InternalCredential is the in-memory secret attestd presents to its own registry.
func (t *Tokens) InternalCredential() string { return t.internal }

// TokenInfo describes a token without its secret.
type TokenInfo struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Repositories are the patterns the token may write to; "**" is all.
	Repositories []string   `json:"repositories"`
	CreatedAt    time.Time  `json:"created_at"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	// LogIndex is the audit log index of the creation's event, in the
	// answer to a creation.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// maxTokenRepositories caps the patterns of one token.
const maxTokenRepositories = 64

// Create issues a token with the given roles and returns its secret once.
// A token that may write (the signer role) needs the repositories it may
// write to; every repository only when said explicitly ("**"). An admin
// token writes anywhere.
func (t *Tokens) Create(ctx context.Context, p Principal, name string, roles, repositories []string) (string, TokenInfo, error) {
	if err := Authorize(p, ActionManageTokens); err != nil {
		return "", TokenInfo{}, err
	}
	if !tokenName.MatchString(name) {
		return "", TokenInfo{}, fmt.Errorf("%w: token name must match %s", ErrInvalid, tokenName)
	}
	if len(roles) == 0 {
		return "", TokenInfo{}, fmt.Errorf("%w: a token needs at least one role (%s)", ErrInvalid, strings.Join(Roles, ", "))
	}
	var clean []string
	for _, r := range roles {
		if !slices.Contains(Roles, r) {
			return "", TokenInfo{}, fmt.Errorf("%w: unknown role %q (roles: %s)", ErrInvalid, r, strings.Join(Roles, ", "))
		}
		if !slices.Contains(clean, r) {
			clean = append(clean, r)
		}
	}
	if len(repositories) > maxTokenRepositories {
		return "", TokenInfo{}, fmt.Errorf("%w: at most %d repository patterns", ErrInvalid, maxTokenRepositories)
	}
	repos := []string{}
	for _, r := range repositories {
		if !repomatch.Valid(r) || len(r) > 512 {
			return "", TokenInfo{}, fmt.Errorf("%w: repository pattern %q: want host/path globs, host/team/** for a subtree, or ** for all", ErrInvalid, r)
		}
		if !slices.Contains(repos, r) {
			repos = append(repos, r)
		}
	}
	switch {
	case slices.Contains(clean, RoleAdmin):
		repos = []string{repomatch.All}
	case slices.Contains(clean, RoleSigner) && len(repos) == 0:
		return "", TokenInfo{}, fmt.Errorf("%w: a signer token needs the repositories it may write to (--repository host/team/**; ** for every repository)", ErrInvalid)
	}
	secret, err := newSecret()
	if err != nil {
		return "", TokenInfo{}, err
	}
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return "", TokenInfo{}, err
	}
	tok := index.Token{ID: hex.EncodeToString(idb), Name: name, Roles: clean, Repositories: repos, Hash: hashToken(secret), CreatedAt: t.now().UTC().Truncate(time.Second)}
	ev, err := t.rec.Prepare(ctx, Event{Kind: EventTokenCreated, Actor: p,
		Detail: map[string]any{"token_id": tok.ID, "name": tok.Name, "roles": tok.Roles, "repositories": tok.Repositories}})
	if err != nil {
		return "", TokenInfo{}, err
	}
	if err := t.store.InsertToken(ctx, tok, ev); err != nil {
		return "", TokenInfo{}, fmt.Errorf("%w: store the token: %w", ErrUnavailable, err)
	}
	// Stored, but unacknowledged until the event is in the audit log: on
	// failure the secret is never shown, and the token, usable by no one,
	// can be revoked from the listing.
	idx, err := t.rec.Sequence(ctx, ev)
	if err != nil {
		return "", TokenInfo{}, err
	}
	out := info(tok)
	if len(idx) == 1 {
		out.LogIndex = &idx[0]
	}
	return secret, out, nil
}

func info(t index.Token) TokenInfo {
	return TokenInfo{ID: t.ID, Name: t.Name, Roles: t.Roles, Repositories: t.Repositories, CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt}
}

// maxTokensListed caps a token listing.
const maxTokensListed = 1000

// List lists tokens, newest first.
func (t *Tokens) List(ctx context.Context, p Principal) ([]TokenInfo, error) {
	if err := Authorize(p, ActionManageTokens); err != nil {
		return nil, err
	}
	ts, err := t.store.ListTokens(ctx, maxTokensListed)
	if err != nil {
		return nil, err
	}
	out := make([]TokenInfo, 0, len(ts))
	for _, x := range ts {
		out = append(out, info(x))
	}
	return out, nil
}

// Revoke revokes the token with id. Revocation takes effect on this
// replica from the next request (the verified-token cache is flushed
// before Revoke returns), and on the others within tokenCacheTTL at most
// (sooner, at their next revision poll).
func (t *Tokens) Revoke(ctx context.Context, p Principal, id string) error {
	if err := Authorize(p, ActionManageTokens); err != nil {
		return err
	}
	ev, err := t.rec.Prepare(ctx, Event{Kind: EventTokenRevoked, Actor: p, Detail: map[string]any{"token_id": id}})
	if err != nil {
		return err
	}
	err = t.store.RevokeToken(ctx, id, t.now(), ev)
	// Flushed whatever the outcome: an error may hide a commit.
	t.flush()
	if err != nil {
		if errors.Is(err, index.ErrNotFound) {
			return fmt.Errorf("%w: no active token %q", ErrNotFound, id)
		}
		return fmt.Errorf("%w: revoke the token: %w", ErrUnavailable, err)
	}
	_, err = t.rec.Sequence(ctx, ev)
	return err
}

// Authenticate returns the principal of secret, or an error wrapping ErrUnauthenticated.
func (t *Tokens) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" || len(secret) > 16<<10 || len(secret) > 256 && !identity.LooksLikeJWT(secret) {
		return Principal{}, ErrUnauthenticated
	}
	if t.ids.Enabled() && identity.LooksLikeJWT(secret) {
		return t.identity(ctx, secret)
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(t.internal)) == 1 {
		return Principal{TokenID: "internal", Name: "attestd", Roles: []string{RoleSigner}, Repositories: []string{repomatch.All}}, nil
	}
	h := sha256.Sum256([]byte(secret))
	now := t.now()
	t.mu.RLock()
	v, ok := t.verified[h]
	gen := t.gen
	t.mu.RUnlock()
	if ok && v.gen == gen && now.Sub(v.at) < tokenCacheTTL && !now.Before(v.at) {
		return v.p, nil
	}
	tok, err := t.store.TokenByHash(ctx, hex.EncodeToString(h[:]))
	if errors.Is(err, index.ErrNotFound) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("%w: token lookup: %w", ErrUnavailable, err)
	}
	// Clipped: the cached principal is shared, and an append by a caller
	// must copy, not write into it.
	p := Principal{TokenID: tok.ID, Name: tok.Name, Roles: slices.Clip(tok.Roles), Repositories: slices.Clip(tok.Repositories)}
	t.mu.Lock()
	if t.gen == gen {
		if len(t.verified) >= maxVerifiedTokens {
			clear(t.verified)
		}
		t.verified[h] = verifiedToken{p: p, gen: gen, at: now}
	}
	t.mu.Unlock()
	return p, nil
}

// identity authenticates a CI workload by its OIDC ID token: verified
// against its pinned issuer, granted by the first rule that matches.
func (t *Tokens) identity(ctx context.Context, raw string) (Principal, error) {
	id, grant, err := t.ids.Verify(ctx, raw)
	switch {
	case errors.Is(err, identity.ErrNoGrant):
		return Principal{}, fmt.Errorf("%w: %w", ErrForbidden, err)
	case errors.Is(err, identity.ErrUnavailable):
		return Principal{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case err != nil:
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return Principal{TokenID: "oidc:" + id.String(), Name: id.Subject, Roles: grant.Roles, Repositories: grant.Repositories, Keys: grant.Keys, Identity: &id}, nil
}

// Bootstrap creates the first admin token and writes its secret to path with
// mode 0600, if no token exists yet. It reports whether it created one. The
// secret is never logged.
func (t *Tokens) Bootstrap(ctx context.Context, path string) (bool, error) {
	n, err := t.store.CountTokens(ctx)
	if err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	secret, _, err := t.Create(ctx, Principal{Name: "attestd", Roles: []string{RoleAdmin}}, "bootstrap-admin", []string{RoleAdmin}, nil)
	if err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("write admin token file: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		_ = f.Close()
		return false, fmt.Errorf("write admin token file: %w", err)
	}
	return true, f.Close()
}
