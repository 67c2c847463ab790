package api

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/service/policy"
)

func wirePolicy(p *policy.Policy) wire.PolicyInfo {
	return wire.PolicyInfo{Name: p.Name, Revision: p.Revision(), Mode: string(p.Mode), Document: string(p.Source())}
}

func listPolicies(s *service.Policies) echo.HandlerFunc {
	return func(c echo.Context) error {
		ps, err := s.List(principal(c))
		if err != nil {
			return err
		}
		out := wire.PoliciesResponse{Policies: []wire.PolicyInfo{}}
		for _, p := range ps {
			out.Policies = append(out.Policies, wirePolicy(p))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func putPolicy(s *service.Policies) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		p, logIndex, err := s.Put(c.Request().Context(), principal(c), body)
		if err != nil {
			return err
		}
		out := wirePolicy(p)
		out.LogIndex = logIndex
		return c.JSON(http.StatusOK, out)
	}
}

func deletePolicy(s *service.Policies) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.Delete(c.Request().Context(), principal(c), c.Param("name")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}
