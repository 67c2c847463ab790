// Package api is attestd's HTTP surface: echo routes, handlers, the error
// catalog and middleware (auth, limits, request ids, metrics).
//
// Handlers decode, make one service call, and encode. They MUST NOT hold
// business rules. Every route is registered in New, and every route except
// health, readiness, the public key set and registry pulls needs a token.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/attestd/attestd/service"
)

// Check is one readiness check.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Config lists what the HTTP API needs. Every field is a dependency the
// handlers use; nothing else is reachable from a handler.
type Config struct {
	Log       *slog.Logger
	Tokens    *service.Tokens
	Signing   *service.Signing
	Verify    *service.Verification
	Keys      *service.KeyLifecycle
	Attest    *service.Attestations
	Gate      *service.Gate
	Admission *service.Admission
	Policies  *service.Policies
	SBOMs     *service.SBOMs
	Artifacts *service.Artifacts
	Audit     *service.Audit
	// AuditLog serves the audit log (/log/, proofs, key); nil for none.
	AuditLog *service.AuditLog
	// Reports, Search, Packages and Replay serve auditors: everything about
	// a digest, search of artifacts and decisions, the package index, and
	// policy replay.
	Reports *service.Reports
	// Exports writes evidence packs.
	Exports  *service.Exports
	Search   *service.Search
	Packages *service.Packages
	Replay   *service.Replay
	// Quarantine, Deployments and Revalidate serve incident response:
	// quarantines, where digests run, and re-validation on demand.
	Quarantine  *service.Quarantines
	Deployments *service.Deployments
	Revalidate  *service.Revalidator
	// UI is the auditor's console, served under /ui/ (it checks its own
	// sessions); nil for none.
	UI http.Handler
	// Registry is the embedded registry handler, served under /v2/; nil for none.
	Registry http.Handler
	// RegistryHost is the embedded registry's name in image references:
	// token scopes are matched against RegistryHost/<repository>.
	RegistryHost string
	// Ready lists the readiness checks of /readyz.
	Ready []Check
	// Metrics is the registry /metrics serves and the HTTP metrics go to.
	Metrics *prometheus.Registry
	// MaxBodyBytes caps JSON request bodies.
	MaxBodyBytes int64
	// MaxPredicateBytes caps an attestation's predicate; its request may be
	// that plus a small envelope.
	MaxPredicateBytes int64
	// MaxUploadBytes caps an artifact upload.
	MaxUploadBytes int64
	// RequestTimeout bounds every /v1 request but uploads; UploadTimeout
	// bounds an upload. Past either the answer is 503.
	RequestTimeout, UploadTimeout time.Duration
}

// New returns the HTTP handler with every route registered.
func New(cfg Config) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(cfg.Log)

	m := newHTTPMetrics(cfg.Metrics)
	e.Use(middleware.RequestID())
	e.Use(requestIDContext)
	e.Use(m.middleware)
	e.Use(accessLog(cfg.Log))
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		cfg.Log.ErrorContext(c.Request().Context(), "panic", "err", err.Error(), "stack", string(stack))
		return err
	}}))

	auth := authenticate(cfg.Tokens)
	limit := middleware.BodyLimit(strconv.FormatInt(cfg.MaxBodyBytes, 10) + "B")

	e.GET("/healthz", health)
	e.GET("/readyz", ready(cfg.Ready))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{})), auth, require(service.ActionMetrics))

	// Request bodies are capped per route: small JSON everywhere, a
	// predicate's worth on attestations.
	admissionLimit := middleware.BodyLimit("3MB") // Kubernetes objects are at most 1.5 MiB
	bigLimit := middleware.BodyLimit(strconv.FormatInt(cfg.MaxPredicateBytes+64<<10, 10) + "B")

	v1 := e.Group("/v1", deadline(cfg.RequestTimeout, cfg.UploadTimeout))
	v1.GET("/keys", listKeys(cfg.Keys))
	v1.GET("/trusted-root", trustedRoot)
	v1.POST("/keys/:name/activate", activateKey(cfg.Keys), limit, auth)
	v1.POST("/keys/:name/revoke", revokeKey(cfg.Keys), limit, auth)
	v1.POST("/signatures", sign(cfg.Signing), limit, auth)
	v1.GET("/signatures", signatures(cfg.Verify), auth)
	v1.POST("/attestations", attestHandler(cfg.Attest), bigLimit, auth)
	v1.POST("/provenance", provenance(cfg.Attest), limit, auth)
	v1.POST("/artifacts", artifacts(cfg.Artifacts, limit, cfg.MaxUploadBytes), auth)
	v1.GET("/artifacts/:digest/attestations", listAttestations(cfg.Attest), auth)
	v1.POST("/sboms", requestSBOM(cfg.SBOMs), limit, auth)
	v1.GET("/jobs/:id", getJob(cfg.SBOMs), auth)
	v1.POST("/verify", verify(cfg.Gate), limit, auth)
	v1.POST("/admission", admission(cfg.Admission, false), admissionLimit, auth)
	v1.POST("/admission/mutate", admission(cfg.Admission, true), admissionLimit, auth)
	v1.GET("/policies", listPolicies(cfg.Policies), auth)
	v1.POST("/policies", putPolicy(cfg.Policies), limit, auth)
	v1.DELETE("/policies/:name", deletePolicy(cfg.Policies), auth)
	v1.GET("/events", listEvents(cfg.Audit), auth)
	if cfg.AuditLog != nil {
		// The log's key is public, like the signing keys. The log itself
		// and its proofs name repositories and tokens: an auditor reads
		// them, or anyone where the log is public.
		readLog := []echo.MiddlewareFunc{auth}
		if cfg.AuditLog.Public() {
			readLog = nil
		}
		v1.GET("/log/key", logKey(cfg.AuditLog))
		v1.GET("/log/proof/inclusion", inclusionProof(cfg.AuditLog), readLog...)
		v1.GET("/log/proof/consistency", consistencyProof(cfg.AuditLog), readLog...)
		e.GET("/log/*", logResource(cfg.AuditLog), append([]echo.MiddlewareFunc{deadline(cfg.RequestTimeout, cfg.UploadTimeout)}, readLog...)...)
	}
	v1.GET("/artifacts", searchArtifacts(cfg.Search), auth)
	v1.GET("/artifacts/:digest", artifactReport(cfg.Reports), auth)
	v1.GET("/artifacts/:digest/evidence", exportEvidence(cfg.Exports), auth)
	v1.GET("/decisions", searchDecisions(cfg.Search), auth)
	v1.GET("/packages", findPackages(cfg.Packages), auth)
	v1.POST("/policies/replay", replayPolicy(cfg.Replay), limit, auth)
	v1.POST("/quarantine", addQuarantine(cfg.Quarantine), limit, auth)
	v1.GET("/quarantine", listQuarantines(cfg.Quarantine), auth)
	v1.POST("/quarantine/:id/lift", liftQuarantine(cfg.Quarantine), limit, auth)
	v1.GET("/deployments", listDeployments(cfg.Deployments), auth)
	v1.POST("/deployments/revalidate", revalidate(cfg.Revalidate), limit, auth)
	v1.POST("/tokens", createToken(cfg.Tokens), limit, auth, require(service.ActionManageTokens))
	v1.GET("/tokens", listTokens(cfg.Tokens), auth, require(service.ActionManageTokens))
	v1.DELETE("/tokens/:id", revokeToken(cfg.Tokens), auth, require(service.ActionManageTokens))

	if cfg.UI != nil {
		ui := echo.WrapHandler(cfg.UI)
		e.Any("/ui/*", ui, deadline(cfg.RequestTimeout, cfg.UploadTimeout))
		e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/ui/") })
	}
	if cfg.Registry != nil {
		reg := registryAccess(cfg.Tokens, cfg.RegistryHost, cfg.Registry)
		e.Any("/v2", reg)
		e.Any("/v2/*", reg)
	}
	return e
}

// requestIDContext puts the request id into the request's context, where
// the service records it with every event.
func requestIDContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Response().Header().Get(echo.HeaderXRequestID)
		c.SetRequest(c.Request().WithContext(service.WithRequestID(c.Request().Context(), id)))
		return next(c)
	}
}

// deadline bounds each request: every registry, KMS and database call
// below it runs under the request's context. An upload (POST /v1/artifacts)
// gets the upload bound.
func deadline(request, upload time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			d := request
			if c.Request().Method == http.MethodPost && c.Path() == "/v1/artifacts" {
				d = upload
			}
			if d <= 0 {
				return next(c)
			}
			ctx, cancel := context.WithTimeout(c.Request().Context(), d)
			defer cancel()
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			req := c.Request()
			// The path is logged, never the query string or headers: tokens travel in headers.
			log.InfoContext(req.Context(), "request",
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
				"method", req.Method, "path", req.URL.Path, "route", c.Path(),
				"status", c.Response().Status, "bytes", c.Response().Size,
				"duration_ms", time.Since(start).Milliseconds())
			return nil
		}
	}
}
