// Package client is the Go client of attestd's HTTP API.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/attestd/attestd/api/wire"
)

// Error is an error response from attestd.
type Error struct {
	Status int
	// RetryAfter is the Retry-After header of a 503 or 429, as sent.
	RetryAfter string
	wire.ErrorBody
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	if e.RequestID != "" {
		msg += ", request id " + e.RequestID
	}
	return msg
}

// Client talks to one attestd server.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// maxResponseBytes caps a response body read by the client.
const maxResponseBytes = 16 << 20

// New returns a client for the server at baseURL, authenticating with token.
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http(s)://host[:port]", baseURL)
	}
	return &Client{base: u, token: token, http: &http.Client{Timeout: 2 * time.Hour, Transport: transport}}, nil
}

// transport is the connection pool every Client shares. It keeps up to 64
// idle connections per server (Go's default keeps 2), so that concurrent
// callers, such as a CI fleet's signer or a gate, reuse connections instead
// of opening one per request.
var transport = func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}()

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

// send makes the request with the token and decodes the answer into out.
func (c *Client) send(req *http.Request, out any) error {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var we wire.Error
		retry := resp.Header.Get("Retry-After")
		if json.Unmarshal(b, &we) != nil || we.Error.Code == "" {
			return &Error{Status: resp.StatusCode, RetryAfter: retry, ErrorBody: wire.ErrorBody{Code: "HTTP", Message: http.StatusText(resp.StatusCode)}}
		}
		return &Error{Status: resp.StatusCode, RetryAfter: retry, ErrorBody: we.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// Sign signs image (by tag or digest) and returns where the signature is stored.
func (c *Client) Sign(ctx context.Context, image string) (wire.SignResponse, error) {
	return c.SignWith(ctx, wire.SignRequest{Image: image})
}

// SignWith signs as req says (a named key, for example).
func (c *Client) SignWith(ctx context.Context, req wire.SignRequest) (wire.SignResponse, error) {
	var out wire.SignResponse
	err := c.do(ctx, http.MethodPost, "/v1/signatures", req, &out)
	return out, err
}

// Keys lists the public keys.
func (c *Client) Keys(ctx context.Context) ([]wire.Key, error) {
	ks, err := c.KeySet(ctx)
	return ks.Keys, err
}

// KeySet lists the key set with its revision.
func (c *Client) KeySet(ctx context.Context) (wire.KeysResponse, error) {
	var out wire.KeysResponse
	err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
	return out, err
}

// ActivateKey makes name the default signing key; the previous one is retired.
func (c *Client) ActivateKey(ctx context.Context, name string) (wire.KeysResponse, error) {
	var out wire.KeysResponse
	err := c.do(ctx, http.MethodPost, "/v1/keys/"+url.PathEscape(name)+"/activate", nil, &out)
	return out, err
}

// RevokeKey revokes name, giving reason.
func (c *Client) RevokeKey(ctx context.Context, name, reason string) (wire.KeysResponse, error) {
	var out wire.KeysResponse
	err := c.do(ctx, http.MethodPost, "/v1/keys/"+url.PathEscape(name)+"/revoke", wire.RevokeKeyRequest{Reason: reason}, &out)
	return out, err
}

// Signatures checks the signatures stored for image against the key set.
func (c *Client) Signatures(ctx context.Context, image string) (wire.SignaturesResponse, error) {
	var out wire.SignaturesResponse
	err := c.do(ctx, http.MethodGet, "/v1/signatures?image="+url.QueryEscape(image), nil, &out)
	return out, err
}

// CreateToken issues a token that may write to repositories (patterns;
// "**" for all); its Secret is set only in this response.
func (c *Client) CreateToken(ctx context.Context, name string, roles, repositories []string) (wire.Token, error) {
	var out wire.Token
	err := c.do(ctx, http.MethodPost, "/v1/tokens", wire.CreateTokenRequest{Name: name, Roles: roles, Repositories: repositories}, &out)
	return out, err
}

// Tokens lists tokens.
func (c *Client) Tokens(ctx context.Context) ([]wire.Token, error) {
	var out wire.TokensResponse
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes the token with id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return errors.New("token id: want the id shown by `tokens list`")
	}
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// TrustedRoot returns the sigstore trusted root JSON for verifying attestd's
// bundles with cosign --trusted-root.
func (c *Client) TrustedRoot(ctx context.Context) ([]byte, error) {
	var out json.RawMessage
	err := c.do(ctx, http.MethodGet, "/v1/trusted-root", nil, &out)
	return out, err
}

// Attest signs an attestation about a subject.
func (c *Client) Attest(ctx context.Context, req wire.AttestRequest) (wire.AttestResponse, error) {
	var out wire.AttestResponse
	err := c.do(ctx, http.MethodPost, "/v1/attestations", req, &out)
	return out, err
}

// Provenance has attestd write and sign a SLSA v1 provenance.
func (c *Client) Provenance(ctx context.Context, req wire.ProvenanceRequest) (wire.AttestResponse, error) {
	var out wire.AttestResponse
	err := c.do(ctx, http.MethodPost, "/v1/provenance", req, &out)
	return out, err
}

// Attestations lists the attestations stored for repository@digest,
// optionally of one predicate type.
func (c *Client) Attestations(ctx context.Context, repository, digest, predicateType string) (wire.AttestationsResponse, error) {
	var out wire.AttestationsResponse
	q := url.Values{"repository": {repository}}
	if predicateType != "" {
		q.Set("predicate_type", predicateType)
	}
	err := c.do(ctx, http.MethodGet, "/v1/artifacts/"+url.PathEscape(digest)+"/attestations?"+q.Encode(), nil, &out)
	return out, err
}

// Register pins an existing image to its digest.
func (c *Client) Register(ctx context.Context, image string) (wire.ArtifactResponse, error) {
	var out wire.ArtifactResponse
	err := c.do(ctx, http.MethodPost, "/v1/artifacts", wire.RegisterRequest{Image: image}, &out)
	return out, err
}

// UploadOptions describes an artifact upload.
type UploadOptions struct {
	Repository string
	Tag        string
	// Kind is "image" or "file".
	Kind                              string
	Filename, MediaType, ArtifactType string
	// Size is the body's length, or -1 if unknown.
	Size int64
}

// Upload streams body to POST /v1/artifacts.
func (c *Client) Upload(ctx context.Context, body io.Reader, o UploadOptions) (wire.ArtifactResponse, error) {
	q := url.Values{"repository": {o.Repository}, "kind": {o.Kind}}
	for k, v := range map[string]string{"tag": o.Tag, "filename": o.Filename, "media_type": o.MediaType, "artifact_type": o.ArtifactType} {
		if v != "" {
			q.Set(k, v)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+"/v1/artifacts?"+q.Encode(), body)
	if err != nil {
		return wire.ArtifactResponse{}, err
	}
	req.ContentLength = o.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	var out wire.ArtifactResponse
	return out, c.send(req, &out)
}

// Verify asks the gate whether an image may run.
func (c *Client) Verify(ctx context.Context, req wire.VerifyRequest) (wire.Decision, error) {
	var out wire.Decision
	err := c.do(ctx, http.MethodPost, "/v1/verify", req, &out)
	return out, err
}

// PutPolicy loads (or replaces) a policy document (YAML).
func (c *Client) PutPolicy(ctx context.Context, doc []byte) (wire.PolicyInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+"/v1/policies", bytes.NewReader(doc))
	if err != nil {
		return wire.PolicyInfo{}, err
	}
	req.Header.Set("Content-Type", "application/yaml")
	var out wire.PolicyInfo
	return out, c.send(req, &out)
}

// Admission posts a raw AdmissionReview and returns the raw answer.
func (c *Client) Admission(ctx context.Context, review []byte, mutate bool) ([]byte, error) {
	p := "/v1/admission"
	if mutate {
		p += "/mutate"
	}
	var out json.RawMessage
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+p, bytes.NewReader(review))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return out, c.send(req, &out)
}

// SBOM asks for SBOMs of a subject; it returns the job.
func (c *Client) SBOM(ctx context.Context, req wire.SBOMRequest) (wire.Job, error) {
	var out wire.Job
	err := c.do(ctx, http.MethodPost, "/v1/sboms", req, &out)
	return out, err
}

// Job returns a job's state, progress and results.
func (c *Client) Job(ctx context.Context, id int64) (wire.Job, error) {
	var out wire.Job
	err := c.do(ctx, http.MethodGet, "/v1/jobs/"+strconv.FormatInt(id, 10), nil, &out)
	return out, err
}

// EventQuery selects events; zero fields select everything.
type EventQuery struct {
	Digest, Kind, Actor string
	Since, Until        time.Time
	Cursor              string
	Limit               int
}

// Events returns one page of recorded events, oldest first.
func (c *Client) Events(ctx context.Context, q EventQuery) (wire.EventsResponse, error) {
	v := url.Values{}
	for k, x := range map[string]string{"digest": q.Digest, "kind": q.Kind, "actor": q.Actor, "cursor": q.Cursor} {
		if x != "" {
			v.Set(k, x)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out wire.EventsResponse
	err := c.do(ctx, http.MethodGet, "/v1/events?"+v.Encode(), nil, &out)
	return out, err
}

// maxPackBytes caps an evidence pack read from the server.
const maxPackBytes = 512 << 20

// Evidence writes the evidence pack of repository@digest to w, as the
// server sent it (a signed tar; attestctl evidence verify checks it).
func (c *Client) Evidence(ctx context.Context, repository, digest string, w io.Writer) (int64, error) {
	q := url.Values{"repository": {repository}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/artifacts/"+url.PathEscape(digest)+"/evidence?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var we wire.Error
		if json.Unmarshal(b, &we) != nil || we.Error.Code == "" {
			return 0, &Error{Status: resp.StatusCode, ErrorBody: wire.ErrorBody{Code: "HTTP", Message: http.StatusText(resp.StatusCode)}}
		}
		return 0, &Error{Status: resp.StatusCode, ErrorBody: we.Error}
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, maxPackBytes+1))
	if err == nil && n > maxPackBytes {
		err = fmt.Errorf("evidence pack over %d bytes", maxPackBytes)
	}
	return n, err
}

// LogKey returns the audit log's verifier key, one line in the signed-note
// format, to pin.
func (c *Client) LogKey(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/log/key", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &Error{Status: resp.StatusCode, ErrorBody: wire.ErrorBody{Code: "HTTP", Message: strings.TrimSpace(string(b))}}
	}
	return strings.TrimSpace(string(b)), nil
}

// LogFetcher reads the audit log under /log/ in the tlog-tiles layout
// (checkpoint, tiles, entry bundles), with tessera's HTTP fetcher and the
// client's token.
func (c *Client) LogFetcher() (*tclient.HTTPFetcher, error) {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/log/"
	f, err := tclient.NewHTTPFetcher(&u, c.http)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		f.SetAuthorizationHeader("Bearer " + c.token)
	}
	return f, nil
}

// InclusionProof asks for the proof that the log entry at index is in the
// tree of size.
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) (wire.InclusionProof, error) {
	var out wire.InclusionProof
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/log/proof/inclusion?index=%d&size=%d", index, size), nil, &out)
	return out, err
}

// ConsistencyProof asks for the proof that the log's tree of size to
// extends the tree of size from.
func (c *Client) ConsistencyProof(ctx context.Context, from, to uint64) (wire.ConsistencyProof, error) {
	var out wire.ConsistencyProof
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/log/proof/consistency?from=%d&to=%d", from, to), nil, &out)
	return out, err
}
