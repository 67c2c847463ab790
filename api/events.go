package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

// queryTime reads an RFC 3339 time from the query, or zero.
func queryTime(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, echo.NewHTTPError(http.StatusBadRequest, name+": want an RFC 3339 time such as 2026-11-27T10:00:00Z")
	}
	return t, nil
}

func listEvents(a *service.Audit) echo.HandlerFunc {
	return func(c echo.Context) error {
		q := service.EventQuery{Digest: c.QueryParam("digest"), Kind: c.QueryParam("kind"), Actor: c.QueryParam("actor"), Cursor: c.QueryParam("cursor")}
		var err error
		if q.Since, err = queryTime(c, "since"); err != nil {
			return err
		}
		if q.Until, err = queryTime(c, "until"); err != nil {
			return err
		}
		if v := c.QueryParam("limit"); v != "" {
			if q.Limit, err = strconv.Atoi(v); err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, "limit: want a number")
			}
		}
		page, err := a.Events(c.Request().Context(), principal(c), q)
		if err != nil {
			return err
		}
		out := wire.EventsResponse{Events: []wire.Event{}, NextCursor: page.Next}
		for _, e := range page.Events {
			w := wire.Event{Seq: e.Seq, ID: e.ID, Kind: e.Kind, At: e.At, Repository: e.Repository, Digest: e.Digest, Tags: e.Tags,
				Actor: wire.Actor{Kind: e.ActorKind, ID: e.ActorID, Name: e.ActorName}, PredicateType: e.PredicateType, RequestID: e.RequestID,
				Locations: e.Locations, Detail: e.Detail}
			if e.LogIndex != nil && *e.LogIndex >= 0 {
				i := uint64(*e.LogIndex)
				w.LogIndex = &i
			}
			if e.KeyID != "" {
				w.Key = &wire.EventKey{ID: e.KeyID, Name: e.KeyName, Version: e.KeyVersion}
			}
			out.Events = append(out.Events, w)
		}
		return c.JSON(http.StatusOK, out)
	}
}
