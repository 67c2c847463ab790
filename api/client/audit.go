package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/attestd/attestd/api/wire"
)

// query builds a query string from the values given, leaving out empty ones.
func query(kv map[string]string, since, until time.Time, limit int) string {
	v := url.Values{}
	for k, x := range kv {
		if x != "" {
			v.Set(k, x)
		}
	}
	if !since.IsZero() {
		v.Set("since", since.UTC().Format(time.RFC3339))
	}
	if !until.IsZero() {
		v.Set("until", until.UTC().Format(time.RFC3339))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	return v.Encode()
}

// Artifact returns everything known about digest, read in repository (""
// for every repository the record knows it in).
func (c *Client) Artifact(ctx context.Context, digest, repository string) (wire.ArtifactReport, error) {
	var out wire.ArtifactReport
	p := "/v1/artifacts/" + url.PathEscape(digest)
	if repository != "" {
		p += "?" + url.Values{"repository": {repository}}.Encode()
	}
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// ArtifactQuery selects artifacts; zero fields select everything.
type ArtifactQuery struct {
	Repository, SourceRepo, Commit, SignedBy, Key, PredicateType string
	Since, Until                                                 time.Time
	Cursor                                                       string
	Limit                                                        int
}

// SearchArtifacts returns one page of artifacts, first recorded first.
func (c *Client) SearchArtifacts(ctx context.Context, q ArtifactQuery) (wire.ArtifactsResponse, error) {
	var out wire.ArtifactsResponse
	err := c.do(ctx, http.MethodGet, "/v1/artifacts?"+query(map[string]string{"repository": q.Repository, "source_repo": q.SourceRepo, "commit": q.Commit,
		"signed_by": q.SignedBy, "key": q.Key, "predicate_type": q.PredicateType, "cursor": q.Cursor}, q.Since, q.Until, q.Limit), nil, &out)
	return out, err
}

// DecisionQuery selects decisions; Allowed and Breakglass are "", "true" or "false".
type DecisionQuery struct {
	Digest, Namespace, Policy string
	Allowed, Breakglass       string
	Since, Until              time.Time
	Cursor                    string
	Limit                     int
}

// Decisions returns one page of recorded gate decisions, oldest first.
func (c *Client) Decisions(ctx context.Context, q DecisionQuery) (wire.DecisionsResponse, error) {
	var out wire.DecisionsResponse
	err := c.do(ctx, http.MethodGet, "/v1/decisions?"+query(map[string]string{"digest": q.Digest, "namespace": q.Namespace, "policy": q.Policy,
		"allowed": q.Allowed, "breakglass": q.Breakglass, "cursor": q.Cursor}, q.Since, q.Until, q.Limit), nil, &out)
	return out, err
}

// PackageQuery selects packages: a purl, or a name (and type), with a vers
// range; or a license.
type PackageQuery struct {
	PURL, Name, Type, Range, License string
	Cursor                           string
	Limit                            int
}

// Packages returns one page of artifacts holding the packages q selects.
func (c *Client) Packages(ctx context.Context, q PackageQuery) (wire.PackagesResponse, error) {
	var out wire.PackagesResponse
	err := c.do(ctx, http.MethodGet, "/v1/packages?"+query(map[string]string{"purl": q.PURL, "name": q.Name, "type": q.Type, "range": q.Range,
		"license": q.License, "cursor": q.Cursor}, time.Time{}, time.Time{}, q.Limit), nil, &out)
	return out, err
}

// Replay re-judges the decisions recorded in a window with a candidate
// policy and reports which would flip; it changes nothing.
func (c *Client) Replay(ctx context.Context, req wire.ReplayRequest) (wire.ReplayReport, error) {
	var out wire.ReplayReport
	err := c.do(ctx, http.MethodPost, "/v1/policies/replay", req, &out)
	return out, err
}
