package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/attestd/attestd/api/wire"
)

// Quarantine quarantines a digest or a key (admin).
func (c *Client) Quarantine(ctx context.Context, req wire.QuarantineRequest) (wire.Quarantine, error) {
	var out wire.Quarantine
	err := c.do(ctx, http.MethodPost, "/v1/quarantine", req, &out)
	return out, err
}

// LiftQuarantine lifts quarantine id, with a reason (admin).
func (c *Client) LiftQuarantine(ctx context.Context, id, reason string) (wire.Quarantine, error) {
	var out wire.Quarantine
	err := c.do(ctx, http.MethodPost, "/v1/quarantine/"+url.PathEscape(id)+"/lift", wire.LiftRequest{Reason: reason}, &out)
	return out, err
}

// QuarantineQuery selects quarantines: those in force, or with Lifted
// lifted ones too; Kind is "digest", "key" or "".
type QuarantineQuery struct {
	Lifted bool
	Kind   string
	Cursor string
	Limit  int
}

// Quarantines returns one page of quarantines, oldest first.
func (c *Client) Quarantines(ctx context.Context, q QuarantineQuery) (wire.QuarantinesResponse, error) {
	var out wire.QuarantinesResponse
	lifted := ""
	if q.Lifted {
		lifted = "true"
	}
	err := c.do(ctx, http.MethodGet, "/v1/quarantine?"+query(map[string]string{"lifted": lifted, "kind": q.Kind, "cursor": q.Cursor}, time.Time{}, time.Time{}, q.Limit), nil, &out)
	return out, err
}

// DeploymentQuery selects deployments: a digest, a key (its blast radius)
// or a compliance state ("true", "false"), within a namespace.
type DeploymentQuery struct {
	Digest, Key, Namespace, Compliant string
	Limit                             int
}

// Deployments answers where digests run.
func (c *Client) Deployments(ctx context.Context, q DeploymentQuery) (wire.DeploymentsResponse, error) {
	var out wire.DeploymentsResponse
	err := c.do(ctx, http.MethodGet, "/v1/deployments?"+query(map[string]string{"digest": q.Digest, "key": q.Key, "namespace": q.Namespace,
		"compliant": q.Compliant}, time.Time{}, time.Time{}, q.Limit), nil, &out)
	return out, err
}

// Revalidate runs the re-validation now (admin) and returns what it found.
func (c *Client) Revalidate(ctx context.Context) (wire.RevalidationResponse, error) {
	var out wire.RevalidationResponse
	err := c.do(ctx, http.MethodPost, "/v1/deployments/revalidate", nil, &out)
	return out, err
}
