// Package notify delivers CloudEvents (JSON, structured mode) to one
// webhook the operator configured. It owns the outbound request only: the
// URL's host MUST be on the configured allowlist, redirects are not
// followed, each attempt is bounded and failed attempts are retried a few
// times. It knows nothing of services or storage, and it MUST NOT log the
// URL (its path or query may hold a secret): only the host.
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ErrNotAllowed means the URL's host is not on the allowlist.
var ErrNotAllowed = errors.New("webhook host not on the allowlist")

// Webhook posts CloudEvents to one URL.
type Webhook struct {
	url      string
	host     string
	source   string
	client   *http.Client
	attempts int
	backoff  time.Duration
}

// Options bound delivery; zero fields take the defaults.
type Options struct {
	// Timeout bounds one attempt (default 5 s).
	Timeout time.Duration
	// Attempts is how many times one event is tried (default 3).
	Attempts int
	// Backoff is the wait before the second attempt, doubled after (default 1 s).
	Backoff time.Duration
}

// New checks rawURL (http or https, its host[:port] in allow) and returns
// the webhook. source is the CloudEvents source of every event.
func New(rawURL string, allow []string, source string, o Options) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, errors.New("webhook URL: want http(s)://host[:port]/path, without credentials in it")
	}
	if !slices.ContainsFunc(allow, func(a string) bool { return strings.EqualFold(strings.TrimSpace(a), u.Host) }) {
		return nil, fmt.Errorf("%w: %s", ErrNotAllowed, u.Host)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	c := &http.Client{
		Timeout: o.Timeout,
		// A redirect could lead anywhere: it is not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Webhook{url: u.String(), host: u.Host, source: source, client: c, attempts: o.Attempts, backoff: o.Backoff}, nil
}

// Host is the webhook's host, safe to log.
func (w *Webhook) Host() string { return w.host }

// Event is a CloudEvents 1.0 event in structured JSON mode.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            any       `json:"data"`
}

// Send posts one event of type typ about subject, with data, and returns
// once a 2xx answered it. 5xx, 408, 429 and transport errors are retried
// up to the attempts with backoff; other answers are final. The event id
// stays the same across attempts, so a receiver can drop duplicates.
func (w *Webhook) Send(ctx context.Context, typ, subject string, data any) error {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	body, err := json.Marshal(Event{SpecVersion: "1.0", ID: hex.EncodeToString(id), Source: w.source, Type: typ, Subject: subject,
		Time: time.Now().UTC(), DataContentType: "application/json", Data: data})
	if err != nil {
		return err
	}
	wait := w.backoff
	for attempt := 1; ; attempt++ {
		retry, err := w.post(ctx, body)
		if err == nil {
			return nil
		}
		if !retry || attempt == w.attempts {
			return fmt.Errorf("webhook %s: %w (attempt %d of %d)", w.host, err, attempt, w.attempts)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("webhook %s: %w", w.host, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("request not built")
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := w.client.Do(req)
	if err != nil {
		// The error names the URL; say only what kind of failure it was.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return ctx.Err() == nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return false, fmt.Errorf("answered %d", resp.StatusCode)
}
