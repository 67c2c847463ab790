package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

// logKey serves the audit log's verifier key in the signed-note format,
// one line: auditors pin it (attestctl audit log-key > log.pub).
func logKey(l *service.AuditLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.String(http.StatusOK, l.VerifierKey()+"\n")
	}
}

// logResource serves the tlog-tiles layout under /log/: checkpoint, tiles
// and entry bundles, for tessera's client and witnesses.
func logResource(l *service.AuditLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		b, kind, err := l.Resource(c.Request().Context(), principal(c), c.Param("*"))
		if err != nil {
			return err
		}
		h := c.Response().Header()
		switch kind {
		case service.ResourceCheckpoint:
			h.Set("Cache-Control", "no-cache")
			return c.Blob(http.StatusOK, "text/plain; charset=utf-8", b)
		case service.ResourcePartialTile:
			h.Set("Cache-Control", "no-cache")
		default:
			h.Set("Cache-Control", "max-age=31536000, immutable")
		}
		if !l.Public() {
			h.Set("Cache-Control", "private, "+h.Get("Cache-Control"))
		}
		return c.Blob(http.StatusOK, "application/octet-stream", b)
	}
}

func queryUint(c echo.Context, name string) (uint64, error) {
	n, err := strconv.ParseUint(c.QueryParam(name), 10, 64)
	if err != nil {
		return 0, echo.NewHTTPError(http.StatusBadRequest, name+": want a non-negative number")
	}
	return n, nil
}

func inclusionProof(l *service.AuditLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		idx, err := queryUint(c, "index")
		if err != nil {
			return err
		}
		size, err := queryUint(c, "size")
		if err != nil {
			return err
		}
		p, err := l.InclusionProof(c.Request().Context(), principal(c), idx, size)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wire.InclusionProof{Index: idx, Size: size, Hashes: nonNil(p)})
	}
}

func consistencyProof(l *service.AuditLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		from, err := queryUint(c, "from")
		if err != nil {
			return err
		}
		to, err := queryUint(c, "to")
		if err != nil {
			return err
		}
		p, err := l.ConsistencyProof(c.Request().Context(), principal(c), from, to)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wire.ConsistencyProof{From: from, To: to, Hashes: nonNil(p)})
	}
}

func nonNil(p [][]byte) [][]byte {
	if p == nil {
		return [][]byte{}
	}
	return p
}
