package ui

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/tlog"
)

// maxFormBytes caps a sign-in or sign-out form.
const maxFormBytes = 16 << 10

// signInTTL bounds the sign-in form's CSRF cookie.
const signInTTL = 30 * time.Minute

type page struct {
	Title   string
	Session *session
	Error   string
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "ui: render", "page", name, "err", err.Error())
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders a service error on the page it happened on, with the status
// the error's meaning calls for.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, name string, p page, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, service.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, service.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, service.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, service.ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	p.Error = err.Error()
	if status == http.StatusInternalServerError {
		c.cfg.Log.ErrorContext(r.Context(), "ui", "page", name, "err", err.Error())
		p.Error = "the request failed; the server log has the details"
	}
	c.render(w, r, status, name, p)
}

// signedIn runs h with the caller's session, or sends the caller to sign in.
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var s *session
		if ck, err := r.Cookie(sessionCookie); err == nil {
			s = c.sessions.get(ck.Value)
		}
		if s == nil {
			if r.Method != http.MethodGet {
				http.Error(w, "not signed in", http.StatusForbidden)
				return
			}
			http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

func (c *Console) signInForm(w http.ResponseWriter, r *http.Request) {
	c.signInPage(w, r, http.StatusOK, "")
}

// signInPage renders the sign-in form with a fresh double-submit token, in
// a cookie and in the form.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	setCookie(w, r, signInCookie, tok, c.cfg.Now().Add(signInTTL), signInTTL)
	c.render(w, r, status, "signin", page{Title: "Sign in", Error: msg, Data: tok})
}

// signIn exchanges an auditor's or admin's token for a session. The form
// MUST carry the token of the sign-in cookie (double submit): another
// site cannot read the cookie, so it cannot sign a browser in as someone else.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	ck, err := r.Cookie(signInCookie)
	if err != nil || !sameToken(ck.Value, r.PostFormValue("csrf")) {
		c.signInPage(w, r, http.StatusForbidden, "The form expired or did not come from this console; try again.")
		return
	}
	if !c.limiter.allow(clientAddr(r)) {
		c.signInPage(w, r, http.StatusTooManyRequests, "Too many sign-in attempts; wait a minute.")
		return
	}
	p, err := c.cfg.Tokens.Authenticate(r.Context(), strings.TrimSpace(r.PostFormValue("token")))
	if err != nil {
		c.signInPage(w, r, http.StatusUnauthorized, "That token is not valid.")
		return
	}
	if err := service.Authorize(p, service.ActionAudit); err != nil {
		c.signInPage(w, r, http.StatusForbidden, "The console is for auditor and admin tokens.")
		return
	}
	s, err := c.sessions.create(p)
	if err != nil {
		c.signInPage(w, r, http.StatusServiceUnavailable, "The console holds too many sessions; try later.")
		return
	}
	c.cfg.Log.InfoContext(r.Context(), "ui: signed in", "token_id", p.TokenID, "name", p.Name)
	setCookie(w, r, signInCookie, "", time.Time{}, 0)
	setCookie(w, r, sessionCookie, s.id, s.expires, c.cfg.SessionTTL)
	http.Redirect(w, r, "/ui/search", http.StatusSeeOther)
}

// signOut ends the session server-side. The form MUST carry the session's
// CSRF token (synchronizer token).
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || !sameToken(s.csrf, r.PostFormValue("csrf")) {
		http.Error(w, "the form did not come from this console", http.StatusForbidden)
		return
	}
	c.sessions.delete(s.id)
	setCookie(w, r, sessionCookie, "", time.Time{}, 0)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

type searchData struct {
	Q       url.Values
	Asked   bool
	Results service.ArtifactPage
	// PackagesAsked and Packages answer the package form.
	PackagesAsked bool
	Packages      service.PackagePage
}

// packageQuery reads the package form: a purl or a name (with its type), a
// version range, a license.
func packageQuery(q url.Values) service.PackageQuery {
	return service.PackageQuery{PURL: q.Get("purl"), Name: q.Get("name"), Type: q.Get("type"), Range: q.Get("range"), License: q.Get("license"),
		Cursor: q.Get("pcursor")}
}

func (c *Console) search(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := searchData{Q: q}
	p := page{Title: "Search", Session: s, Data: &d}
	as := service.ArtifactSearch{Repository: q.Get("repository"), SourceRepo: q.Get("source_repo"), Commit: q.Get("commit"),
		SignedBy: q.Get("signer"), Key: q.Get("key"), Cursor: q.Get("cursor")}
	if as != (service.ArtifactSearch{Cursor: as.Cursor}) {
		d.Asked = true
		res, err := c.cfg.Search.Artifacts(r.Context(), s.principal, as)
		if err != nil {
			c.fail(w, r, "search", p, err)
			return
		}
		d.Results = res
	}
	if pq := packageQuery(q); pq != (service.PackageQuery{Cursor: pq.Cursor}) {
		d.PackagesAsked = true
		res, err := c.cfg.Packages.Find(r.Context(), s.principal, pq)
		if err != nil {
			c.fail(w, r, "search", p, err)
			return
		}
		d.Packages = res
	}
	c.render(w, r, http.StatusOK, "search", p)
}

func (c *Console) artifact(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	p := page{Title: "Artifact", Session: s}
	rep, err := c.cfg.Reports.Artifact(r.Context(), s.principal, service.ReportQuery{Digest: q.Get("digest"), Repository: q.Get("repository")})
	if err != nil {
		c.fail(w, r, "artifact", p, err)
		return
	}
	v := newArtifactView(rep)
	v.Q = q
	p.Data = &v
	// The SBOM filter: the package index's answer, this digest's matches only.
	if pq := packageQuery(q); pq != (service.PackageQuery{Cursor: pq.Cursor}) {
		v.PackagesAsked = true
		res, err := c.cfg.Packages.Find(r.Context(), s.principal, pq)
		if err != nil {
			c.fail(w, r, "artifact", p, err)
			return
		}
		for _, m := range res.Matches {
			if m.Digest == rep.Digest {
				v.Packages = append(v.Packages, m)
			}
		}
	}
	c.render(w, r, http.StatusOK, "artifact", p)
}

type decisionsData struct {
	Q       url.Values
	Results service.DecisionPage
}

func boolParam(v string) (*bool, error) {
	switch v {
	case "":
		return nil, nil
	case "true":
		t := true
		return &t, nil
	case "false":
		f := false
		return &f, nil
	}
	return nil, errors.New("want true or false")
}

func (c *Console) decisions(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := decisionsData{Q: q}
	p := page{Title: "Decisions", Session: s, Data: &d}
	allowed, err1 := boolParam(q.Get("allowed"))
	bg, err2 := boolParam(q.Get("breakglass"))
	if err := errors.Join(err1, err2); err != nil {
		c.fail(w, r, "decisions", p, errors.Join(service.ErrInvalid, err))
		return
	}
	res, err := c.cfg.Search.Decisions(r.Context(), s.principal, service.DecisionSearch{Digest: q.Get("digest"), Policy: q.Get("policy"),
		Namespace: q.Get("namespace"), Allowed: allowed, Breakglass: bg, Cursor: q.Get("cursor")})
	if err != nil {
		c.fail(w, r, "decisions", p, err)
		return
	}
	d.Results = res
	c.render(w, r, http.StatusOK, "decisions", p)
}

func (c *Console) keys(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusOK, "keys", page{Title: "Keys", Session: s, Data: c.cfg.Keys.List()})
}

type logData struct {
	Enabled    bool
	Key        string
	Checkpoint tlog.Checkpoint
	Raw        string
	Verified   bool
	Problem    string
}

// auditLog shows the latest checkpoint and checks its signature against
// the log key this attestd holds.
func (c *Console) auditLog(w http.ResponseWriter, r *http.Request, s *session) {
	d := logData{}
	p := page{Title: "Audit log", Session: s, Data: &d}
	if c.cfg.AuditLog == nil {
		c.render(w, r, http.StatusOK, "log", p)
		return
	}
	d.Enabled, d.Key = true, c.cfg.AuditLog.VerifierKey()
	raw, _, err := c.cfg.AuditLog.Resource(r.Context(), s.principal, "checkpoint")
	if err != nil {
		c.fail(w, r, "log", p, err)
		return
	}
	d.Raw = string(raw)
	v, err := tlog.NewVerifier(d.Key)
	if err == nil {
		d.Checkpoint, err = tlog.OpenCheckpoint(raw, v)
	}
	if err != nil {
		d.Problem = err.Error()
	} else {
		d.Verified = true
	}
	c.render(w, r, http.StatusOK, "log", p)
}
