package service

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
