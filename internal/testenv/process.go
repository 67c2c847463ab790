package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BuildAttestd builds the attestd binary into a temporary directory and
// returns its path.
func BuildAttestd(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "attestd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/attestd/attestd/cmd/attestd").CombinedOutput(); err != nil {
		t.Fatalf("build attestd: %v\n%s", err, out)
	}
	return bin
}

// Process is attestd run as a separate process, for what the tests must
// measure from outside: resident memory and CPU time from /proc, crashes.
type Process struct {
	Cmd *exec.Cmd
	// Addr is the API's host:port on loopback.
	Addr string
	logs *lockedWriter
}

// StartProcess runs bin serve on a free loopback port with args (and env
// added to this process's), waits until /readyz answers 200, and kills it
// when the test ends.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{logs: &lockedWriter{}, Addr: "127.0.0.1:" + FreePort(t)}
	p.Cmd = exec.Command(bin, append([]string{"serve", "--listen", p.Addr, "--log-level", "warn"}, args...)...)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.logs, p.logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Cmd.Process.Kill(); _ = p.Cmd.Wait() })
	for range 400 {
		if resp, err := http.Get("http://" + p.Addr + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("attestd did not start:\n%s", p.Logs())
	return nil
}

// Logs is what the process has written to stdout and stderr so far.
func (p *Process) Logs() string {
	p.logs.mu.Lock()
	defer p.logs.mu.Unlock()
	return p.logs.b.String()
}

// status reads one field of /proc/<pid>/status given in kB, in MiB; -1 if
// it cannot be read.
func (p *Process) status(field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// RSS is the process's resident set now (VmRSS), in MiB.
func (p *Process) RSS() float64 { return p.status("VmRSS") }

// PeakRSS is the process's peak resident set (VmHWM), in MiB: since it
// started, or since ResetPeakRSS.
func (p *Process) PeakRSS() float64 { return p.status("VmHWM") }

// ResetPeakRSS sets the peak resident set to the current one (writes 5 to
// /proc/<pid>/clear_refs; Linux 4.0 and later).
func (p *Process) ResetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Cmd.Process.Pid), []byte("5"), 0)
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// CPUTime is the CPU time the process has used so far, user and system
// (utime + stime of /proc/<pid>/stat), to 10 ms.
func (p *Process) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields after its closing one (field 3 is the state).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", p.Cmd.Process.Pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", p.Cmd.Process.Pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}
