package api

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/service"
)

func admission(a *service.Admission, mutate bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		out, err := a.Review(c.Request().Context(), principal(c), body, mutate)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, out)
	}
}
