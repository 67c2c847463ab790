package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
)

func health(c echo.Context) error {
	return c.JSON(http.StatusOK, wire.Health{Status: "ok"})
}

func ready(checks []Check) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
		defer cancel()
		out := wire.Health{Status: "ok", Checks: map[string]string{}}
		status := http.StatusOK
		for _, ch := range checks {
			if err := ch.Fn(ctx); err != nil {
				out.Checks[ch.Name] = "failing"
				out.Status = "unavailable"
				status = http.StatusServiceUnavailable
				continue
			}
			out.Checks[ch.Name] = "ok"
		}
		return c.JSON(status, out)
	}
}
