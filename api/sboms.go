package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

func wireJob(j service.JobInfo) wire.Job {
	out := wire.Job{ID: j.ID, Kind: j.Kind, State: j.State, Attempt: j.Attempt, Stage: j.Stage, Progress: j.Progress, Errors: j.Errors, Image: j.Image}
	for _, r := range j.Results {
		out.Results = append(out.Results, wire.SBOMResult(r))
	}
	return out
}

func requestSBOM(s *service.SBOMs) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.SBOMRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		j, err := s.Request(c.Request().Context(), principal(c), service.SBOMRequest{Subject: subjectRef(req.Subject), Formats: req.Formats})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, wireJob(j))
	}
}

func getJob(s *service.SBOMs) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || id <= 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "job id: want a positive integer")
		}
		j, err := s.Job(c.Request().Context(), principal(c), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wireJob(j))
	}
}
