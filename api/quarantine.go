package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
)

func wireQuarantine(q index.Quarantine, li *uint64) wire.Quarantine {
	return wire.Quarantine{ID: q.ID, Kind: q.Kind, Subject: q.Subject, KeyName: q.KeyName, Reason: q.Reason, Actor: q.Actor, CreatedAt: q.CreatedAt,
		LiftedAt: q.LiftedAt, LiftedBy: q.LiftedBy, LiftReason: q.LiftReason, LogIndex: li}
}

func addQuarantine(q *service.Quarantines) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.QuarantineRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		x, err := q.Add(c.Request().Context(), principal(c), service.QuarantineRequest{Digest: req.Digest, Key: req.Key, Reason: req.Reason})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, wireQuarantine(x.Quarantine, x.LogIndex))
	}
}

func liftQuarantine(q *service.Quarantines) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.LiftRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		x, err := q.Lift(c.Request().Context(), principal(c), c.Param("id"), req.Reason)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wireQuarantine(x.Quarantine, x.LogIndex))
	}
}

func listQuarantines(q *service.Quarantines) echo.HandlerFunc {
	return func(c echo.Context) error {
		limit, err := queryLimit(c)
		if err != nil {
			return err
		}
		lifted, err := queryBool(c, "lifted")
		if err != nil {
			return err
		}
		page, err := q.List(c.Request().Context(), principal(c), service.QuarantineFilter{Lifted: lifted != nil && *lifted, Kind: c.QueryParam("kind"), Cursor: c.QueryParam("cursor"), Limit: limit})
		if err != nil {
			return err
		}
		out := wire.QuarantinesResponse{Quarantines: []wire.Quarantine{}, NextCursor: page.NextCursor}
		for _, x := range page.Quarantines {
			out.Quarantines = append(out.Quarantines, wireQuarantine(x, nil))
		}
		return c.JSON(http.StatusOK, out)
	}
}
