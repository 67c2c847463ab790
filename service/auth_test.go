package service

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attestd/attestd/storage/index"
)

func newTokens(t *testing.T) *Tokens {
	t.Helper()
	db, err := index.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	rec := NewRecorder(db, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = rec.Close(context.Background()) })
	tk, err := NewTokens(db, rec)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestBootstrapOnceAndAuthenticate(t *testing.T) {
	ctx := context.Background()
	tk := newTokens(t)
	path := filepath.Join(t.TempDir(), "admin.token")
	created, err := tk.Bootstrap(ctx, path)
	if err != nil || !created {
		t.Fatalf("bootstrap: %v %v", created, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v", fi.Mode().Perm())
	}
	secret, _ := os.ReadFile(path)
	p, err := tk.Authenticate(ctx, strings.TrimSpace(string(secret)))
	if err != nil || Authorize(p, ActionManageTokens) != nil {
		t.Fatalf("bootstrap token: %+v %v", p, err)
	}
	evs, err := tk.store.(*index.DB).Events(ctx, index.EventFilter{Kind: EventTokenCreated})
	if err != nil || len(evs) != 1 || evs[0].ActorName != "attestd" || strings.Contains(string(evs[0].Detail), strings.TrimSpace(string(secret))) {
		t.Errorf("the bootstrap token's creation is not recorded, or the record holds its secret: %+v %v", evs, err)
	}
	if again, err := tk.Bootstrap(ctx, path); err != nil || again {
		t.Errorf("second bootstrap created a token: %v %v", again, err)
	}
	for _, bad := range []string{"", "atd_x", strings.Repeat("a", 300), strings.TrimSpace(string(secret)) + "x"} {
		if _, err := tk.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q…) = %v", bad[:min(len(bad), 8)], err)
		}
	}
}

func TestRolesAllowOnlyTheirActions(t *testing.T) {
	for _, tc := range []struct {
		roles []string
		a     Action
		ok    bool
	}{
		{[]string{RoleAdmin}, ActionManageKeys, true},
		{[]string{RoleSigner}, ActionSign, true},
		{[]string{RoleSigner}, ActionManageTokens, false},
		{[]string{RoleVerifier}, ActionSign, false},
		{[]string{RoleVerifier}, ActionVerify, true},
		{[]string{RoleAuditor}, ActionMetrics, true},
		{[]string{RoleAuditor}, ActionPush, false},
		{nil, ActionVerify, false},
	} {
		err := Authorize(Principal{Roles: tc.roles}, tc.a)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("roles %v, action %s: %v", tc.roles, tc.a, err)
		}
	}
}

func TestInternalCredentialIsOnlySigner(t *testing.T) {
	tk := newTokens(t)
	p, err := tk.Authenticate(context.Background(), tk.InternalCredential())
	if err != nil || Authorize(p, ActionPush) != nil || Authorize(p, ActionManageTokens) == nil {
		t.Errorf("internal credential: %+v %v", p, err)
	}
	other := newTokens(t)
	if _, err := other.Authenticate(context.Background(), tk.InternalCredential()); err == nil {
		t.Error("one instance's internal credential works on another")
	}
}

// countingTokens counts index lookups and can fail them.
type countingTokens struct {
	tokenStore
	lookups int
	fail    error
}

func (c *countingTokens) TokenByHash(ctx context.Context, hash string) (index.Token, error) {
	c.lookups++
	if c.fail != nil {
		return index.Token{}, c.fail
	}
	return c.tokenStore.TokenByHash(ctx, hash)
}

// TestVerifiedTokenCacheFailsClosed: a verified token is trusted again
// without an index read only briefly, and never after its revocation
// here, after another replica's revocation reaches Sync, or past the TTL
// when the index cannot be read.
func TestVerifiedTokenCacheFailsClosed(t *testing.T) {
	ctx := context.Background()
	admin := Principal{Name: "test", Roles: []string{RoleAdmin}}
	tk := newTokens(t)
	db := tk.store.(*index.DB)
	store := &countingTokens{tokenStore: db}
	tk.store = store
	clock := time.Now()
	tk.now = func() time.Time { return clock }

	secret, _, err := tk.Create(ctx, admin, "gate", []string{RoleVerifier}, nil)
	if err != nil {
		t.Fatal(err)
	}
	auth := func() error { _, err := tk.Authenticate(ctx, secret); return err }
	for range 3 {
		if err := auth(); err != nil {
			t.Fatal(err)
		}
	}
	if store.lookups != 1 {
		t.Errorf("3 requests within the TTL read the index %d times, want 1", store.lookups)
	}
	for range 2 {
		if _, err := tk.Authenticate(ctx, "atd_unknown"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("unknown token: %v", err)
		}
	}
	if store.lookups != 3 {
		t.Errorf("an unknown token was not looked up each time (%d lookups)", store.lookups)
	}

	t.Run("revoked here: refused from the next request", func(t *testing.T) {
		secret, info, _ := tk.Create(ctx, admin, "revoked-here", []string{RoleVerifier}, nil)
		if _, err := tk.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := tk.Revoke(ctx, admin, info.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := tk.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("revoked token, cached before its revocation: %v", err)
		}
	})

	t.Run("revoked by another replica: refused after the revision poll", func(t *testing.T) {
		other, err := NewTokens(db, tk.rec)
		if err != nil {
			t.Fatal(err)
		}
		sync := NewSync(db, time.Hour, slog.New(slog.DiscardHandler))
		sync.Watch(index.RevisionTokens, tk.Reload)
		if err := sync.Check(ctx); err != nil {
			t.Fatal(err)
		}
		secret, info, _ := tk.Create(ctx, admin, "revoked-there", []string{RoleVerifier}, nil)
		if _, err := tk.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := other.Revoke(ctx, admin, info.ID); err != nil {
			t.Fatal(err)
		}
		if err := sync.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := tk.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("token revoked by another replica, after the revision poll: %v", err)
		}
	})

	t.Run("revoked by another replica, no poll: refused past the TTL", func(t *testing.T) {
		other, _ := NewTokens(db, tk.rec)
		secret, info, _ := tk.Create(ctx, admin, "revoked-unpolled", []string{RoleVerifier}, nil)
		if _, err := tk.Authenticate(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := other.Revoke(ctx, admin, info.ID); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(tokenCacheTTL)
		if _, err := tk.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("token revoked elsewhere, past the TTL: %v", err)
		}
	})

	t.Run("index unreadable past the TTL: unavailable, not cached", func(t *testing.T) {
		if err := auth(); err != nil {
			t.Fatal(err)
		}
		store.fail = errors.New("database is locked")
		defer func() { store.fail = nil }()
		clock = clock.Add(tokenCacheTTL)
		if err := auth(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("index down past the TTL: %v, want ErrUnavailable", err)
		}
		clock = clock.Add(-time.Minute) // a clock stepped back trusts nothing
		if err := auth(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("clock stepped back: %v, want ErrUnavailable", err)
		}
	})
}
