package app

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/attestd/attestd/internal/notify"
	"github.com/attestd/attestd/storage/index"
)

// TestWebhookEventsPerRunAreCapped: one re-validation run sends at most
// maxWebhookEvents events, and a failed delivery is logged by host only.
func TestWebhookEventsPerRunAreCapped(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusBadRequest) // the first is refused: logged, dropped
		}
	}))
	defer srv.Close()
	hook, err := notify.New(srv.URL+"/h?token=s3cret", []string{strings.TrimPrefix(srv.URL, "http://")}, "attestd/test", notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	send := nonCompliantWebhook(hook, slog.New(slog.NewTextHandler(&logs, nil)))
	rs := make([]index.Revalidation, maxWebhookEvents+5)
	for i := range rs {
		rs[i] = index.Revalidation{Repository: "reg/app", Digest: "sha256:aa", Namespace: "prod", Reason: "deny: revoked"}
	}
	send(context.Background(), rs)
	if got := int(n.Load()); got != maxWebhookEvents {
		t.Errorf("%d events sent for %d deployments; want the cap, %d", got, len(rs), maxWebhookEvents)
	}
	if l := logs.String(); !strings.Contains(l, "not delivered") || !strings.Contains(l, "more deployments turned non-compliant") || strings.Contains(l, "s3cret") {
		t.Errorf("log:\n%s", l)
	}
}
