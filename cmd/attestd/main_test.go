package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attestd/attestd/internal/app"
)

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "attestd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeZeroConfigAndSIGTERM runs the real binary with no configuration
// but a data dir and a port, waits until it is ready, and stops it with
// SIGTERM: it must exit 0, and the admin token must be in a 0600 file and
// nowhere in the log.
func TestServeZeroConfigAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--listen", addr)
	cmd.Env = append(os.Environ(), "ATTESTD_DATA_DIR="+dir)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	ready := false
	for i := 0; i < 200 && !ready; i++ {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			ready = resp.StatusCode == 200
			_ = resp.Body.Close()
		}
		if !ready {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatalf("not ready:\n%s", logs.String())
	}
	fi, err := os.Stat(filepath.Join(dir, app.AdminTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", fi, err)
	}
	tok, _ := os.ReadFile(filepath.Join(dir, app.AdminTokenFile))

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("attestd did not stop after SIGTERM")
	}
	out := logs.String()
	if strings.Contains(out, strings.TrimSpace(string(tok))) {
		t.Error("the admin token appears in the log")
	}
	if !strings.Contains(out, `"msg":"shutting down"`) || !strings.Contains(out, `"level":"INFO"`) {
		t.Errorf("no JSON log of the shutdown:\n%s", out)
	}
}

func TestServeHelpDocumentsEverySetting(t *testing.T) {
	var out bytes.Buffer
	c := root()
	c.SetOut(&out)
	c.SetArgs([]string{"serve", "--help"})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, s := range app.Settings {
		if !strings.Contains(out.String(), s.Env) || (s.Flag != "" && !strings.Contains(out.String(), "--"+s.Flag)) {
			t.Errorf("serve --help does not document %s / --%s", s.Env, s.Flag)
		}
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	c := root()
	c.SetArgs([]string{"serve", "--listen", "nope", "--data-dir", t.TempDir()})
	c.SetOut(&bytes.Buffer{})
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("bad listen address: %v", err)
	}
}
