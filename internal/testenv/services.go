package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// need returns the path of a program the drills use, failing under CI and
// skipping elsewhere when it is missing.
func need(t testing.TB, prog, why string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed: %s", prog, why)
		}
		t.Skipf("%s is not installed: %s", prog, why)
	}
	return p
}

// FreePort returns a free loopback port.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// DockerRegistry is Debian's docker-registry (distribution 2.8) run for
// one test on a fixed port and storage dir, so that the test can take it
// down and bring it back as an outage would.
type DockerRegistry struct {
	// Host is 127.0.0.1:port.
	Host string
	bin  string
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartDockerRegistry runs docker-registry until the test ends.
func StartDockerRegistry(t testing.TB) *DockerRegistry {
	t.Helper()
	bin := need(t, "docker-registry", "apt-get install docker-registry")
	dir := t.TempDir()
	r := &DockerRegistry{Host: "127.0.0.1:" + FreePort(t), bin: bin, conf: filepath.Join(dir, "config.yml")}
	conf := fmt.Sprintf("version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp: {addr: %q}\n", filepath.Join(dir, "data"), r.Host)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Restart(t)
	t.Cleanup(r.Stop)
	return r
}

// Stop kills the registry and waits for it to exit.
func (r *DockerRegistry) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Restart starts the registry again on its port, with its stored data.
func (r *DockerRegistry) Restart(t testing.TB) {
	t.Helper()
	r.cmd = exec.Command(r.bin, "serve", r.conf) //nolint:gosec // the test's own registry
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	r.done = done
	go func(c *exec.Cmd) { _ = c.Wait(); close(done) }(r.cmd)
	waitHTTP(t, "http://"+r.Host+"/v2/")
}

func waitHTTP(t testing.TB, url string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		resp, err := http.Get(url) //nolint:gosec,noctx // loopback, the test's own server
		if err == nil {
			_ = resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", url)
}

// Postgres is a throw-away PostgreSQL cluster for one test, which the test
// can stop and start as an outage would.
type Postgres struct {
	// URL is the connection URL of its postgres database, as user attestd.
	URL  string
	bin  string
	dir  string
	port string
	as   []string
}

// StartPostgres initialises and starts a cluster from Debian's PostgreSQL.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL is not installed (apt-get install postgresql)")
		}
		t.Skip("PostgreSQL is not installed (apt-get install postgresql)")
	}
	sort.Strings(bins)
	p := &Postgres{bin: filepath.Dir(bins[len(bins)-1]), port: FreePort(t)}
	base, err := os.MkdirTemp("", "attestd-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	p.dir = filepath.Join(base, "pg")
	if err := os.Mkdir(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		p.as = []string{"runuser", "-u", "postgres", "--"}
		_ = os.Chmod(base, 0o755)
		if out, err := exec.Command("chown", "postgres", p.dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	if out, err := p.run("initdb", "-D", p.dir, "-A", "trust", "-U", "attestd"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.URL = fmt.Sprintf("postgres://attestd@127.0.0.1:%s/postgres?sslmode=disable", p.port)
	p.Restart(t)
	t.Cleanup(p.Stop)
	return p
}

func (p *Postgres) run(prog string, args ...string) ([]byte, error) {
	argv := append(append([]string{}, p.as...), append([]string{filepath.Join(p.bin, prog)}, args...)...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput() //nolint:gosec // the test's own cluster
}

// Stop stops the cluster immediately (-m immediate: as a crash would).
func (p *Postgres) Stop() {
	_, _ = p.run("pg_ctl", "-D", p.dir, "-m", "immediate", "-w", "stop")
}

// Restart starts the cluster again.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	out, err := p.run("pg_ctl", "-D", p.dir, "-o", "-h 127.0.0.1 -p "+p.port+" -k "+p.dir, "-l", filepath.Join(p.dir, "log"), "-w", "start")
	if err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

// MountTmpfs mounts a tmpfs of size bytes for the test (a disk that can
// fill up), and returns its path. It needs root.
func MountTmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("a tmpfs mount needs root")
		}
		t.Skip("a tmpfs mount needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if err := syscall.Unmount(dir, 0); err == nil || !strings.Contains(err.Error(), "busy") {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return dir
}

// Fill writes to dir until its filesystem is full, and returns a func that
// frees the space again.
func Fill(t testing.TB, dir string) func() {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p) //nolint:gosec // the test's own file
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// Fill the last blocks with small writes.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	_ = f.Close()
	return func() { _ = os.Remove(p) }
}
