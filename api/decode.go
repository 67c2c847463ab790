package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/labstack/echo/v4"
)

// decode reads one JSON object into v, refusing unknown fields and trailing
// data. The body is already capped by the BodyLimit middleware.
func decode(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he // over the body limit
		}
		return fmt.Errorf("%w: %s", errMalformedJSON, err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he
		}
		return fmt.Errorf("%w: trailing data after the JSON object", errMalformedJSON)
	}
	return nil
}
