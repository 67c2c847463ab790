package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

// catalog maps service sentinels to HTTP. It is the only place where an
// error becomes a status code.
var catalog = []struct {
	err    error
	code   string
	status int
}{
	{service.ErrInvalid, "INVALID_ARGUMENT", http.StatusBadRequest},
	{service.ErrUnauthenticated, "UNAUTHENTICATED", http.StatusUnauthorized},
	{service.ErrForbidden, "FORBIDDEN", http.StatusForbidden},
	{service.ErrNotFound, "NOT_FOUND", http.StatusNotFound},
	{service.ErrTooLarge, "TOO_LARGE", http.StatusRequestEntityTooLarge},
	{service.ErrUpstream, "UPSTREAM_FAILURE", http.StatusBadGateway},
	{service.ErrUnavailable, "UNAVAILABLE", http.StatusServiceUnavailable},
}

// Errors the api layer makes itself.
var (
	errMalformedJSON = errors.New("malformed JSON body")
)

// echoCodes names the errors echo and its middleware raise.
var echoCodes = map[int]string{
	http.StatusBadRequest:            "INVALID_ARGUMENT",
	http.StatusUnauthorized:          "UNAUTHENTICATED",
	http.StatusForbidden:             "FORBIDDEN",
	http.StatusNotFound:              "NOT_FOUND",
	http.StatusMethodNotAllowed:      "METHOD_NOT_ALLOWED",
	http.StatusRequestEntityTooLarge: "BODY_TOO_LARGE",
	http.StatusUnsupportedMediaType:  "UNSUPPORTED_MEDIA_TYPE",
	http.StatusTooManyRequests:       "TOO_MANY_REQUESTS",
	http.StatusServiceUnavailable:    "UNAVAILABLE",
}

// errorHandler renders every error as a wire.Error JSON body.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := classify(err)
		body.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
		ctx := c.Request().Context()
		if status >= 500 {
			log.ErrorContext(ctx, "request failed", "status", status, "code", body.Code, "err", err.Error(), "request_id", body.RequestID)
		}
		if status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="attestd"`)
		}
		if status == http.StatusServiceUnavailable {
			c.Response().Header().Set("Retry-After", "5")
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(status)
		} else {
			werr = c.JSON(status, wire.Error{Error: body})
		}
		if werr != nil {
			log.ErrorContext(ctx, "write error response", "err", werr)
		}
	}
}

func classify(err error) (int, wire.ErrorBody) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, ok := echoCodes[he.Code]
		if !ok {
			code = "HTTP_ERROR"
		}
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok && s != "" {
			msg = s
		}
		if he.Code == http.StatusRequestEntityTooLarge {
			msg = "request body is over the size limit"
		}
		return he.Code, wire.ErrorBody{Code: code, Message: msg}
	}
	if errors.Is(err, errMalformedJSON) {
		return http.StatusBadRequest, wire.ErrorBody{Code: "MALFORMED_JSON", Message: err.Error()}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, wire.ErrorBody{Code: "UNAVAILABLE", Message: "deadline exceeded"}
	}
	for _, e := range catalog {
		if errors.Is(err, e.err) {
			return e.status, wire.ErrorBody{Code: e.code, Message: err.Error()}
		}
	}
	return http.StatusInternalServerError, wire.ErrorBody{Code: "INTERNAL", Message: "internal error; see the server log for the request id"}
}
