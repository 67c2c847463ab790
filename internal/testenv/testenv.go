// Package testenv starts a real attestd in-process for tests: embedded
// registry, SQLite index and a generated key in a temporary data dir.
package testenv

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
)

// Server is a running attestd.
type Server struct {
	URL string
	// TLSURL is the HTTPS listener's base URL, with tls_listen set.
	TLSURL       string
	RegistryHost string
	DataDir      string
	KeyID        string
	AdminToken   string
	Admin        *client.Client
	// Config is the configuration it runs with.
	Config app.Config
	log    *lockedWriter
	stop   func()
}

// Stop shuts the server down gracefully; the test's end does it otherwise.
func (s *Server) Stop() { s.stop() }

// LogText is everything the server has logged so far.
func (s *Server) LogText() string {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.log.b.String()
}

// Start runs attestd until the test ends. mod may change the config.
func Start(t testing.TB, mod func(*app.Config)) *Server {
	t.Helper()
	return start(t, mod, "")
}

// StartReplica runs another attestd on the same shared database as first
// (mod must set the same database_url and registries): it bootstraps no
// admin token of its own, so it is given first's.
func StartReplica(t testing.TB, first *Server, mod func(*app.Config)) *Server {
	t.Helper()
	return start(t, mod, first.AdminToken)
}

func start(t testing.TB, mod func(*app.Config), adminToken string) *Server {
	t.Helper()
	cfg := app.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 15 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &lockedWriter{}
	log := slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, "", ln, log)
	if err != nil {
		cancel()
		t.Fatalf("app.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Connections a client dialled and never used count as active for
			// 5 s in http.Server.Shutdown; close the test's idle ones first.
			if tr, ok := remote.DefaultTransport.(interface{ CloseIdleConnections() }); ok {
				tr.CloseIdleConnections()
			}
			http.DefaultClient.CloseIdleConnections()
			cancel()
			if err := <-done; err != nil {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("serve: %v\n%s", err, buf[:n])
			}
		})
	}
	t.Cleanup(stop)
	if adminToken == "" {
		tok, err := os.ReadFile(filepath.Join(cfg.DataDir, app.AdminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		adminToken = strings.TrimSpace(string(tok))
	}
	s := &Server{stop: stop, URL: a.URL(), TLSURL: a.TLSURL(), RegistryHost: a.RegistryHost(), DataDir: cfg.DataDir, KeyID: a.KeyID(), AdminToken: adminToken, log: logBuf, Config: cfg}
	s.Admin = s.Client(t, s.AdminToken)
	return s
}

// Client returns an API client with token.
func (s *Server) Client(t testing.TB, token string) *client.Client {
	t.Helper()
	c, err := client.New(s.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Token creates a token with roles, allowed to write to every repository,
// and returns its secret.
func (s *Server) Token(t testing.TB, roles ...string) string {
	t.Helper()
	return s.ScopedToken(t, []string{"**"}, roles...)
}

// ScopedToken creates a token with roles that may write only to repos, and
// returns its secret.
func (s *Server) ScopedToken(t testing.TB, repos []string, roles ...string) string {
	t.Helper()
	tok, err := s.Admin.CreateToken(context.Background(), "test-"+roles[0], roles, repos)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return tok.Secret
}

// PushRandom pushes a random image to repo on host and returns its tag and digest references.
func PushRandom(t testing.TB, host, repo string, auth authn.Authenticator) (name.Tag, name.Digest, v1.Image) {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/" + repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag, tag.Context().Digest(h.String()), img
}

// PublicKeyPEM is the server's public key file.
func (s *Server) PublicKeyPEM(t testing.TB) string {
	t.Helper()
	return filepath.Join(s.DataDir, "cosign.pub")
}

type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TrustedRoot writes the server's trusted root (GET /v1/trusted-root) to a
// file and returns its path, for cosign --trusted-root.
func (s *Server) TrustedRoot(t testing.TB) string {
	t.Helper()
	b, err := s.Admin.TrustedRoot(context.Background())
	if err != nil {
		t.Fatalf("trusted root: %v", err)
	}
	p := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
