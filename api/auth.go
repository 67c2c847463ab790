package api

import (
	"encoding/json"
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
// anonymous; pushes need a token allowing registry.push whose repository
// scopes cover the repository, given as the basic-auth password (docker
// login) or as a bearer token; DELETE needs an admin. The version check
// GET /v2/ answers 401 with a Basic challenge to callers without
// credentials, so that clients know to send them on writes. host is the
// registry's name in image references, against which scopes are matched. A
// path with an empty, "." or ".." segment is refused (400) before anything
// else.
func registryAccess(t *service.Tokens, host string, reg http.Handler) echo.HandlerFunc {
	challenge := func(c echo.Context) error {
		c.Response().Header().Set("WWW-Authenticate", `Basic realm="attestd"`)
		c.Response().Header().Set("Content-Type", "application/json")
		return c.String(http.StatusUnauthorized, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}
	refuse := func(c echo.Context, status int, code, msg string) error {
		b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
		c.Response().Header().Set("Content-Type", "application/json")
		return c.Blob(status, "application/json", b)
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
		case r.Method == http.MethodDelete:
			if err := service.Authorize(p, service.ActionRegistryDelete); err != nil {
				return refuse(c, http.StatusForbidden, "DENIED", "deleting from the registry needs an admin token")
			}
		case !read:
			repo, ok := registryRepository(r.URL.Path)
			if !ok {
				return refuse(c, http.StatusBadRequest, "NAME_INVALID", "repository name is not in canonical form")
			}
			if err := service.AuthorizeRepository(p, service.ActionPush, host+"/"+repo); err != nil {
				return refuse(c, http.StatusForbidden, "DENIED", err.Error())
			}
		}
		// The registry never sees attestd credentials.
		r.Header.Del("Authorization")
		reg.ServeHTTP(c.Response(), r)
		return nil
	}
}

// registryRepository returns the repository name of a registry API path,
// /v2/<name>/{manifests,blobs,tags,referrers}/…: the name before the last
// route keyword. It refuses a name with an empty, "." or ".." segment.
func registryRepository(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", false
	}
	end := -1
	for _, kw := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, kw); i > end {
			end = i
		}
	}
	if end <= 0 {
		return "", false
	}
	name := rest[:end]
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return name, true
}
