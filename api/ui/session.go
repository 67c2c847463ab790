package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/attestd/attestd/service"
)

const (
	// sessionCookie holds the session id; signInCookie the sign-in form's
	// double-submit CSRF token.
	sessionCookie = "attestd_ui_session"
	signInCookie  = "attestd_ui_signin"
	// maxSessions caps the sessions held in memory.
	maxSessions = 10_000
	// signInBurst is how many sign-in attempts a client address may make a minute.
	signInBurst = 10
	// maxTrackedClients caps the addresses the sign-in limiter remembers.
	maxTrackedClients = 10_000
)

// session is a signed-in auditor, held server-side only.
type session struct {
	id        string
	csrf      string
	principal service.Principal
	expires   time.Time
}

// sessions is the in-memory session store: lost on restart, per replica.
type sessions struct {
	mu  sync.Mutex
	now func() time.Time
	ttl time.Duration
	max int
	m   map[string]*session
}

func newSessions(now func() time.Time, ttl time.Duration, maxN int) *sessions {
	return &sessions{now: now, ttl: ttl, max: maxN, m: map[string]*session{}}
}

var errTooManySessions = errors.New("too many sessions")

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(p service.Principal) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		for id, x := range s.m {
			if !now.Before(x.expires) {
				delete(s.m, id)
			}
		}
		if len(s.m) >= s.max {
			return nil, errTooManySessions
		}
	}
	x := &session{id: randomToken(), csrf: randomToken(), principal: p, expires: now.Add(s.ttl)}
	s.m[x.id] = x
	return x, nil
}

func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return nil
	}
	if !s.now().Before(x.expires) {
		delete(s.m, id)
		return nil
	}
	return x
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// attempts bounds sign-in attempts per client address in a fixed window.
type attempts struct {
	mu     sync.Mutex
	now    func() time.Time
	burst  int
	window time.Duration
	start  time.Time
	n      map[string]int
}

func newAttempts(now func() time.Time, burst int, window time.Duration) *attempts {
	return &attempts{now: now, burst: burst, window: window, n: map[string]int{}}
}

// allow counts an attempt from addr and reports whether it is within bounds.
func (a *attempts) allow(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if now.Sub(a.start) >= a.window {
		a.start, a.n = now, map[string]int{}
	}
	if _, ok := a.n[addr]; !ok && len(a.n) >= maxTrackedClients {
		return false
	}
	a.n[addr]++
	return a.n[addr] <= a.burst
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// setCookie sets an HttpOnly, SameSite=Strict cookie on /ui/, Secure when
// the request came over TLS; an empty value deletes it.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time, ttl time.Duration) {
	// Secure follows the request: over plain HTTP (127.0.0.1, the zero-config
	// default) a Secure cookie would never come back.
	c := &http.Cookie{Name: name, Value: value, Path: "/ui/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode} //nolint:gosec // G124: Secure whenever the request came over TLS

	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires, c.MaxAge = expires, int(ttl.Seconds())
	}
	http.SetCookie(w, c)
}

// CSRF is the session's synchronizer token, for its forms.
func (s *session) CSRF() string { return s.csrf }

// Name is who signed in.
func (s *session) Name() string { return s.principal.Name }
