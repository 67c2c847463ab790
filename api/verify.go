package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

func verify(g *service.Gate) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.VerifyRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		sr := service.VerifyRequest{Image: req.Image, Policy: req.Policy, Namespace: req.Namespace}
		if b := req.Breakglass; b != nil {
			d, err := time.ParseDuration(b.Duration)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, "breakglass.duration: want a duration such as 2h")
			}
			sr.Breakglass = &service.BreakglassRequest{Justification: b.Justification, Duration: d}
		}
		d, err := g.Verify(c.Request().Context(), principal(c), sr)
		if err != nil {
			return err
		}
		out := wire.Decision{ID: d.ID, Decision: "deny", Allow: d.Allow, Image: d.Image, Digest: d.Digest, Policy: d.Policy, Revision: d.Revision,
			KeySetRevision: d.KeySetRevision, Mode: d.Mode, Warnings: d.Warnings, Reason: d.Reason, Breakglass: d.Breakglass, Cached: d.Cached,
			Requirements: []wire.Requirement{}, LogIndex: d.LogIndex}
		if d.Allow {
			out.Decision = "allow"
		}
		for _, r := range d.Requirements {
			out.Requirements = append(out.Requirements, wire.Requirement(r))
		}
		for _, v := range d.Policies {
			out.Policies = append(out.Policies, wire.PolicyVerdict(v))
		}
		return c.JSON(http.StatusOK, out)
	}
}
