package ui

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
)

const (
	auditorToken = "auditor-secret"
	adminToken   = "admin-secret"
	signerToken  = "signer-secret"
	planted      = `<script>alert(1)</script>"><img src=x onerror=alert(1)>`
	digest       = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
)

type fakeTokens map[string]service.Principal

func (f fakeTokens) Authenticate(_ context.Context, secret string) (service.Principal, error) {
	p, ok := f[secret]
	if !ok {
		return service.Principal{}, service.ErrUnauthenticated
	}
	return p, nil
}

// fakeReports answers every digest with a report whose repository, tag,
// provenance and predicate carry planted markup.
type fakeReports struct{}

func (fakeReports) Artifact(_ context.Context, p service.Principal, q service.ReportQuery) (service.ArtifactReport, error) {
	if err := service.Authorize(p, service.ActionAudit); err != nil {
		return service.ArtifactReport{}, err
	}
	ev := service.EvidenceOf{Valid: true, KeyName: "default", Origin: "attestd", Locations: []string{"reg/" + planted}}
	return service.ArtifactReport{
		Digest:       q.Digest,
		Repositories: []service.RepositorySeen{{Repository: "reg/app" + planted, Tags: []string{"v1" + planted}}},
		Provenance:   []service.ReportProvenance{{Provenance: attest.Provenance{SourceRepo: "https://git.example/" + planted, Commit: "abc123", Builder: "builder" + planted}, EvidenceOf: ev}},
		Signatures:   []service.ReportSignature{{SignatureCheck: service.SignatureCheck{Format: "referrer", KeyName: "default", KeyID: "sha256:k", Valid: true}, Signer: "ci"}},
		Attestations: []service.ReportAttestation{{PredicateType: "https://example.com/custom/" + planted, Valid: false, Reason: "because " + planted}},
		SBOMs:        []service.ReportSBOM{{Format: "spdx", Packages: 3, EvidenceOf: ev}},
	}, nil
}

type fakeSearch struct{}

func (fakeSearch) Artifacts(context.Context, service.Principal, service.ArtifactSearch) (service.ArtifactPage, error) {
	return service.ArtifactPage{}, nil
}

func (fakeSearch) Decisions(context.Context, service.Principal, service.DecisionSearch) (service.DecisionPage, error) {
	return service.DecisionPage{}, nil
}

type fakePackages struct{}

func (fakePackages) Find(_ context.Context, _ service.Principal, q service.PackageQuery) (service.PackagePage, error) {
	return service.PackagePage{Matches: []service.PackageMatch{{Repository: "reg/app", Digest: digest,
		Packages: []index.Package{{Name: "pkg" + planted, Version: "1", Licenses: []string{q.License}}}}}}, nil
}

type fakeKeys struct{}

func (fakeKeys) List() service.KeySet { return service.KeySet{Revision: 1} }

func newConsole(t *testing.T) *httptest.Server {
	t.Helper()
	c, err := New(Config{
		Tokens: fakeTokens{
			auditorToken: {TokenID: "a", Name: "alice", Roles: []string{service.RoleAuditor}},
			signerToken:  {TokenID: "s", Name: "ci", Roles: []string{service.RoleSigner}},
			adminToken:   {TokenID: "r", Name: "root", Roles: []string{service.RoleAdmin}},
		},
		Reports: fakeReports{}, Search: fakeSearch{}, Packages: fakePackages{}, Keys: fakeKeys{},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv
}

// browser is a client with a cookie jar that does not follow redirects.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func get(t *testing.T, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(body)
}

func post(t *testing.T, b *http.Client, u string, form url.Values) *http.Response {
	t.Helper()
	resp, err := b.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// formToken reads the CSRF token of the first form on the page at u.
func formToken(t *testing.T, b *http.Client, u string) string {
	t.Helper()
	_, body := get(t, b, u)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on %s:\n%s", u, body)
	}
	return m[1]
}

func signIn(t *testing.T, srv *httptest.Server, b *http.Client, token string) *http.Response {
	t.Helper()
	return post(t, b, srv.URL+"/ui/signin", url.Values{"csrf": {formToken(t, b, srv.URL+"/ui/signin")}, "token": {token}})
}

func TestSignIn(t *testing.T) {
	srv := newConsole(t)
	t.Run("auditor", func(t *testing.T) {
		b := browser(t)
		resp := signIn(t, srv, b, auditorToken)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/search" {
			t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		var sc *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie {
				sc = c
			}
			if strings.Contains(c.Value, auditorToken) {
				t.Errorf("cookie %s holds the token", c.Name)
			}
		}
		if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/ui/" || sc.MaxAge <= 0 || sc.Expires.IsZero() {
			t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, an expiry", sc)
		}
		if sc.Secure {
			t.Errorf("Secure over plain HTTP: the browser would drop it")
		}
		if resp, body := get(t, b, srv.URL+"/ui/search"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in as alice") {
			t.Errorf("search after sign-in: %d\n%s", resp.StatusCode, body)
		}
	})
	t.Run("admin", func(t *testing.T) {
		if resp := signIn(t, srv, browser(t), adminToken); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("an admin's token: %d, want 303", resp.StatusCode)
		}
	})
	t.Run("signer refused", func(t *testing.T) {
		b := browser(t)
		if resp := signIn(t, srv, b, signerToken); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a signer's token: %d, want 403", resp.StatusCode)
		}
		if resp, _ := get(t, b, srv.URL+"/ui/search"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("a refused signer reached search: %d", resp.StatusCode)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		if resp := signIn(t, srv, browser(t), "nope"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a bad token: %d, want 401", resp.StatusCode)
		}
	})
}

func TestSecureCookieOverTLS(t *testing.T) {
	c, err := New(Config{Tokens: fakeTokens{auditorToken: {Name: "a", Roles: []string{service.RoleAuditor}}}, Reports: fakeReports{}, Search: fakeSearch{}, Keys: fakeKeys{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(c)
	defer srv.Close()
	b := srv.Client()
	b.Jar, _ = cookiejar.New(nil)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp := signIn(t, srv, b, auditorToken)
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie && !ck.Secure {
			t.Errorf("session cookie over TLS is not Secure")
		}
	}
}

func TestSignOutEndsSessionServerSide(t *testing.T) {
	srv := newConsole(t)
	b := browser(t)
	signIn(t, srv, b, auditorToken)
	u, _ := url.Parse(srv.URL + "/ui/")
	old := b.Jar.Cookies(u)
	tok := formToken(t, b, srv.URL+"/ui/search")
	if resp := post(t, b, srv.URL+"/ui/signout", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/signin" {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Replay the old cookie: the server no longer knows the session.
	replay := browser(t)
	replay.Jar.SetCookies(u, old)
	for _, p := range []string{"/ui/search", "/ui/artifact?digest=" + digest, "/ui/decisions", "/ui/keys", "/ui/log"} {
		if resp, _ := get(t, replay, srv.URL+p); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/signin" {
			t.Errorf("%s with the old cookie: %d %s, want a redirect to sign-in", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func TestCSRF(t *testing.T) {
	srv := newConsole(t)
	t.Run("sign-in without the token", func(t *testing.T) {
		b := browser(t)
		formToken(t, b, srv.URL+"/ui/signin") // the cookie is set
		if resp := post(t, b, srv.URL+"/ui/signin", url.Values{"token": {auditorToken}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%d, want 403", resp.StatusCode)
		}
	})
	t.Run("sign-in with a wrong token", func(t *testing.T) {
		b := browser(t)
		formToken(t, b, srv.URL+"/ui/signin")
		if resp := post(t, b, srv.URL+"/ui/signin", url.Values{"token": {auditorToken}, "csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%d, want 403", resp.StatusCode)
		}
	})
	t.Run("sign-in without the cookie", func(t *testing.T) {
		b := browser(t)
		tok := formToken(t, browser(t), srv.URL+"/ui/signin") // another browser's form
		if resp := post(t, b, srv.URL+"/ui/signin", url.Values{"token": {auditorToken}, "csrf": {tok}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%d, want 403", resp.StatusCode)
		}
	})
	for name, form := range map[string]url.Values{"without": {}, "with a wrong": {"csrf": {"forged"}}} {
		t.Run("sign-out "+name+" token", func(t *testing.T) {
			b := browser(t)
			signIn(t, srv, b, auditorToken)
			if resp := post(t, b, srv.URL+"/ui/signout", form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%d, want 403", resp.StatusCode)
			}
			if resp, _ := get(t, b, srv.URL+"/ui/search"); resp.StatusCode != http.StatusOK {
				t.Errorf("the session ended on a forged sign-out: %d", resp.StatusCode)
			}
		})
	}
}

func TestSignInAttemptsBounded(t *testing.T) {
	srv := newConsole(t)
	b := browser(t)
	var last int
	for range signInBurst + 1 {
		last = signIn(t, srv, b, "wrong").StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("attempt %d: %d, want 429", signInBurst+1, last)
	}
	if resp := signIn(t, srv, b, auditorToken); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a right token past the bound: %d, want 429", resp.StatusCode)
	}
}

func TestEscapesPlantedMarkup(t *testing.T) {
	srv := newConsole(t)
	b := browser(t)
	signIn(t, srv, b, auditorToken)
	pages := map[string]string{
		"artifact": "/ui/artifact?digest=" + digest,
		"search":   "/ui/search?repository=" + url.QueryEscape(planted),
		"packages": "/ui/search?license=" + url.QueryEscape(planted),
		"sbom":     "/ui/artifact?digest=" + digest + "&license=" + url.QueryEscape(planted),
	}
	for name, p := range pages {
		resp, body := get(t, b, srv.URL+p)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d\n%s", name, resp.StatusCode, body)
		}
		for _, raw := range []string{"<script>alert(1)", "<img src=x", `"><img`} {
			if strings.Contains(body, raw) {
				t.Errorf("%s page holds %q unescaped", name, raw)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s page does not show the planted markup escaped", name)
		}
	}
	// The artifact page shows each planted field (repository, tag, source
	// repository, builder, predicate), escaped.
	_, body := get(t, b, srv.URL+pages["artifact"])
	for _, want := range []string{"reg/app" + planted, "v1" + planted, "https://git.example/" + planted, "builder" + planted, "https://example.com/custom/" + planted} {
		if !strings.Contains(body, html.EscapeString(want)) {
			t.Errorf("the artifact page does not show %q escaped", want)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv := newConsole(t)
	b := browser(t)
	for _, p := range []string{"/ui/signin", "/ui/search", "/ui/static/style.css"} {
		resp, _ := get(t, b, srv.URL+p)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline: %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	var skew atomic.Int64
	c, err := New(Config{Tokens: fakeTokens{auditorToken: {Name: "a", Roles: []string{service.RoleAuditor}}}, Reports: fakeReports{}, Search: fakeSearch{}, Packages: fakePackages{}, Keys: fakeKeys{},
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }, SessionTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	b := browser(t)
	signIn(t, srv, b, auditorToken)
	skew.Store(int64(time.Hour))
	if resp, _ := get(t, b, srv.URL+"/ui/search"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("an expired session: %d, want a redirect to sign-in", resp.StatusCode)
	}
}
