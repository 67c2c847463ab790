// Package ui is the auditor's web console under /ui/: server-rendered pages
// (html/template, assets embedded, no JavaScript) over the read services —
// reports, search, the key set and the audit log.
//
// It is a client of those services through the small interfaces below. It
// MUST NOT hold queries of its own or read evidence itself, and it MUST NOT
// render untrusted data as template.HTML: every value goes through
// html/template's contextual escaping.
//
// Sessions live in this process's memory: they do not survive a restart and
// are per replica. The token an auditor signs in with is exchanged for a
// random session id and is never stored in the browser.
package ui

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/attestd/attestd/service"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Authenticator turns a token into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (service.Principal, error)
}

// Reports reads everything known about a digest.
type Reports interface {
	Artifact(ctx context.Context, p service.Principal, q service.ReportQuery) (service.ArtifactReport, error)
}

// Search finds artifacts and decisions.
type Search interface {
	Artifacts(ctx context.Context, p service.Principal, q service.ArtifactSearch) (service.ArtifactPage, error)
	Decisions(ctx context.Context, p service.Principal, q service.DecisionSearch) (service.DecisionPage, error)
}

// Packages finds the artifacts holding a package (purl, range, license).
type Packages interface {
	Find(ctx context.Context, p service.Principal, q service.PackageQuery) (service.PackagePage, error)
}

// Keys lists the key set with today's states.
type Keys interface {
	List() service.KeySet
}

// AuditLog serves the log's checkpoint and the key it is signed with.
type AuditLog interface {
	Resource(ctx context.Context, p service.Principal, path string) ([]byte, service.ResourceKind, error)
	VerifierKey() string
}

// Config lists what the console needs. AuditLog may be nil (no log).
type Config struct {
	Log      *slog.Logger
	Tokens   Authenticator
	Reports  Reports
	Search   Search
	Packages Packages
	Keys     Keys
	AuditLog AuditLog
	// Now is the clock; nil for time.Now.
	Now func() time.Time
	// SessionTTL bounds a session; zero for 8 hours.
	SessionTTL time.Duration
}

// Console is the /ui/ handler.
type Console struct {
	cfg      Config
	pages    map[string]*template.Template
	sessions *sessions
	limiter  *attempts
	mux      *http.ServeMux
}

// New returns the console; mount it at /ui/.
func New(cfg Config) (*Console, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, pages: pages, sessions: newSessions(cfg.Now, cfg.SessionTTL, maxSessions), limiter: newAttempts(cfg.Now, signInBurst, time.Minute)}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/signin", c.signInForm)
	m.HandleFunc("POST /ui/signin", c.signIn)
	m.HandleFunc("POST /ui/signout", c.signedIn(c.signOut))
	m.HandleFunc("GET /ui/{$}", c.signedIn(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, "/ui/search", http.StatusSeeOther)
	}))
	m.HandleFunc("GET /ui/search", c.signedIn(c.search))
	m.HandleFunc("GET /ui/artifact", c.signedIn(c.artifact))
	m.HandleFunc("GET /ui/decisions", c.signedIn(c.decisions))
	m.HandleFunc("GET /ui/keys", c.signedIn(c.keys))
	m.HandleFunc("GET /ui/log", c.signedIn(c.auditLog))
	c.mux = m
	return c, nil
}

// ServeHTTP sets the security headers on every answer, then routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// ContentSecurityPolicy is sent with every /ui/ answer: nothing but this
// origin's own stylesheet and images, no script at all, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
