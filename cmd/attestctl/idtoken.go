package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// idToken finds the CI workload's OIDC ID token: a file, ATTESTD_ID_TOKEN,
// or, in GitHub Actions (a job with `permissions: id-token: write`), one
// requested from the runner for audience. It returns "" when there is none.
func idToken(ctx context.Context, file, audience string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file) //nolint:gosec // the operator names the file
		if err != nil {
			return "", fmt.Errorf("ID token file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("ATTESTD_ID_TOKEN"); t != "" {
		return strings.TrimSpace(t), nil
	}
	reqURL, reqTok := os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL == "" || reqTok == "" {
		return "", nil
	}
	if audience == "" {
		return "", errors.New("in GitHub Actions, --audience (or ATTESTD_OIDC_AUDIENCE) names the audience attestd expects")
	}
	return githubIDToken(ctx, reqURL, reqTok, audience)
}

// githubIDToken asks the GitHub Actions runner for an ID token.
func githubIDToken(ctx context.Context, reqURL, reqTok, audience string) (string, error) {
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %w", err)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !isLoopback(u.Hostname())) {
		return "", errors.New("ACTIONS_ID_TOKEN_REQUEST_URL: the runner's token URL must be https (the request carries its bearer token)")
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The URL is the runner's own (an environment variable GitHub sets), and
	// only https or loopback: the request goes where the runner says.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil) //nolint:gosec // the runner names its token endpoint
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+reqTok)
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // as above
	if err != nil {
		return "", fmt.Errorf("request an ID token from GitHub Actions: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("request an ID token from GitHub Actions: %s (does the job have `permissions: id-token: write`?)", resp.Status)
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Value == "" {
		return "", errors.New("GitHub Actions returned no ID token")
	}
	return out.Value, nil
}

// isLoopback says whether host is this machine (a test runner, or a proxy
// on the runner itself).
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
