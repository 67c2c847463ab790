package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/service"
)

const principalKey = "attestd.principal"

// authenticate requires a valid bearer token and stores its principal.
func authenticate(t *service.Tokens) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			secret, ok := bearer(c.Request())
			if !ok {
				return service.ErrUnauthenticated
			}
			p, err := t.Authenticate(c.Request().Context(), secret)
			if err != nil {
				return err
			}
			c.Set(principalKey, p)
			return next(c)
		}
	}
}

// require refuses callers whose roles do not allow a.
func require(a service.Action) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := service.Authorize(principal(c), a); err != nil {
				return err
			}
			return next(c)
		}
	}
}

func principal(c echo.Context) service.Principal {
	p, _ := c.Get(principalKey).(service.Principal)
	return p
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// canonicalRegistryPath reports whether a /v2/ path has no "." or ".."
// segment and no empty one except a trailing slash (/v2/, blob uploads).
// A repository MUST NOT be reached under another name.
func canonicalRegistryPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return p == "/v2"
	}
	if rest == "" {
		return true
	}
	for _, seg := range strings.Split(strings.TrimSuffix(rest, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// registryAccess guards the embedded registry: pulls (GET, HEAD) are
// anonymous; everything else needs a token allowing registry.push, given as
// the basic-auth password (docker login) or as a bearer token. The version
// check GET /v2/ answers 401 with a Basic challenge to callers without
// credentials, so that clients know to send them on writes. A path with an
// empty, "." or ".." segment is refused (400) before anything else.
func registryAccess(t *service.Tokens, reg http.Handler) echo.HandlerFunc {
	challenge := func(c echo.Context) error {
		c.Response().Header().Set("WWW-Authenticate", `Basic realm="attestd"`)
		c.Response().Header().Set("Content-Type", "application/json")
		return c.String(http.StatusUnauthorized, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}
	return func(c echo.Context) error {
		r := c.Request()
		if !canonicalRegistryPath(r.URL.Path) {
			// distribution's router would answer with a redirect to the
			// cleaned path; refuse instead, before credentials are looked at.
			c.Response().Header().Set("Content-Type", "application/json")
			return c.String(http.StatusBadRequest, `{"errors":[{"code":"NAME_INVALID","message":"registry path with an empty, \".\" or \"..\" segment"}]}`)
		}
		secret, hasCred := "", false
		if _, pw, ok := r.BasicAuth(); ok {
			secret, hasCred = pw, true
		} else if b, ok := bearer(r); ok {
			secret, hasCred = b, true
		}
		var p service.Principal
		if hasCred {
			var err error
			if p, err = t.Authenticate(r.Context(), secret); err != nil {
				return challenge(c)
			}
		}
		isBase := r.URL.Path == "/v2" || r.URL.Path == "/v2/"
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		switch {
		case isBase && !hasCred:
			return challenge(c)
		case !read && !hasCred:
			return challenge(c)
		case !read:
			if err := service.Authorize(p, service.ActionPush); err != nil {
				c.Response().Header().Set("Content-Type", "application/json")
				return c.String(http.StatusForbidden, `{"errors":[{"code":"DENIED","message":"token lacks the signer role"}]}`)
			}
		}
		// The registry never sees attestd credentials.
		r.Header.Del("Authorization")
		reg.ServeHTTP(c.Response(), r)
		return nil
	}
}
