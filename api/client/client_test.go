package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestd/attestd/api/wire"
)

// Sixteen paced goroutines sharing a client reuse its connections: a gate
// or a CI fleet's signer does not open a connection per request.
func TestConcurrentCallersReuseConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"allow":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := New(srv.URL, "t")
	if err != nil {
		t.Fatal(err)
	}
	const callers, each = 16, 50
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := c.Verify(context.Background(), wire.VerifyRequest{Image: "x"}); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(2 * time.Millisecond) // paced, like a gate's callers: connections sit idle between requests
			}
		}()
	}
	wg.Wait()
	if n, most := opened.Load(), int64(callers+callers/4); n > most {
		t.Fatalf("%d requests from %d callers opened %d connections; want at most %d", callers*each, callers, n, most)
	}
}
