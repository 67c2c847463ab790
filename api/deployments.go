package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

func listDeployments(s *service.Deployments) echo.HandlerFunc {
	return func(c echo.Context) error {
		limit, err := queryLimit(c)
		if err != nil {
			return err
		}
		compliant, err := queryBool(c, "compliant")
		if err != nil {
			return err
		}
		list, err := s.List(c.Request().Context(), principal(c), service.DeploymentQuery{Digest: c.QueryParam("digest"), Key: c.QueryParam("key"),
			Namespace: c.QueryParam("namespace"), Compliant: compliant, Limit: limit})
		if err != nil {
			return err
		}
		out := wire.DeploymentsResponse{Deployments: []wire.Deployment{}, Truncated: list.Truncated}
		for _, d := range list.Deployments {
			a := d.Admission
			out.Deployments = append(out.Deployments, wire.Deployment{
				Admission: wire.Admission{Digest: a.Digest, Namespace: a.Namespace, WorkloadKind: a.WorkloadKind, WorkloadName: a.WorkloadName,
					First: a.First, Last: a.Last, Count: a.Count, Breakglass: a.Breakglass},
				Repository: d.Repository, Compliant: d.Compliant, Reason: d.Reason, CheckedAt: d.CheckedAt})
		}
		return c.JSON(http.StatusOK, out)
	}
}

func revalidate(r *service.Revalidator) echo.HandlerFunc {
	return func(c echo.Context) error {
		sum, err := r.RunNow(c.Request().Context(), principal(c))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wire.RevalidationResponse{Started: sum.Started, Finished: sum.Finished, Checked: sum.Checked,
			NonCompliant: sum.NonCompliant, Truncated: sum.Truncated})
	}
}
