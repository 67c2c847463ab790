package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWebhook(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int32
	var got Event
	var ctype string
	status := []int{http.StatusServiceUnavailable, http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		ctype = r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got)
		w.WriteHeader(status[min(int(n)-1, len(status)-1)])
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	w, err := New(srv.URL+"/hook?token=s3cret", []string{host}, "attestd/test", Options{Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Send(ctx, "dev.attestd.deployment.noncompliant", "reg/app@sha256:aa", map[string]string{"reason": "revoked"}); err != nil {
		t.Fatalf("a 503 then a 200: %v", err)
	}
	if calls.Load() != 2 || ctype != "application/cloudevents+json" || got.SpecVersion != "1.0" || got.Type != "dev.attestd.deployment.noncompliant" ||
		got.Source != "attestd/test" || got.Subject != "reg/app@sha256:aa" || got.ID == "" || got.Time.IsZero() {
		t.Errorf("delivered %d times: %s %+v", calls.Load(), ctype, got)
	}

	// Retries are bounded, and the error names the host, never the URL.
	calls.Store(0)
	status = []int{http.StatusInternalServerError}
	err = w.Send(ctx, "t", "s", nil)
	if err == nil || calls.Load() != 3 || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), host) {
		t.Errorf("always 500: %v after %d attempts; want 3, and no secret in the error", err, calls.Load())
	}
	// A 4xx is final.
	calls.Store(0)
	status = []int{http.StatusBadRequest}
	if err := w.Send(ctx, "t", "s", nil); err == nil || calls.Load() != 1 {
		t.Errorf("a 400: %v after %d attempts; want 1", err, calls.Load())
	}
	// A redirect is not followed.
	calls.Store(0)
	status = []int{http.StatusFound}
	if err := w.Send(ctx, "t", "s", nil); err == nil || calls.Load() != 1 {
		t.Errorf("a redirect: %v after %d attempts", err, calls.Load())
	}
}

func TestWebhookBounds(t *testing.T) {
	if _, err := New("https://evil.example/hook", []string{"hooks.example"}, "s", Options{}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a host off the allowlist: %v", err)
	}
	for _, bad := range []string{"ftp://hooks.example/", "https://u:p@hooks.example/", "hooks.example/x", "https:///x"} {
		if _, err := New(bad, []string{"hooks.example"}, "s", Options{}); err == nil {
			t.Errorf("URL %q accepted", bad)
		}
	}
	// One attempt is bounded by the timeout.
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	w, err := New(srv.URL, []string{strings.TrimPrefix(srv.URL, "http://")}, "s", Options{Timeout: 50 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := w.Send(context.Background(), "t", "s", nil); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("a webhook that never answers: %v after %s", err, time.Since(start))
	}
}
