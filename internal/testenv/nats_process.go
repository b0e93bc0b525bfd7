package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DebianNATS is Debian's nats-server (the package nats-server: 2.9 on
// bookworm), older than the server go.mod requires and the gate embeds.
// .ci/run and scripts/test.sh install it. Tests name it by its path: a
// nats-server on PATH may be a current one (go install).
const DebianNATS = "/usr/sbin/nats-server"

// NATSProcess is a nats-server running as a process of its own, unlike
// NATS's embedded server: to test against another version, or to read
// the server's CPU time apart from its clients' (the bench).
type NATSProcess struct {
	// URL is the server's client URL, nats://127.0.0.1:<port>, without
	// credentials.
	URL string
	// Version is the server's version as the binary reports it ("2.9.10").
	Version string
	cmd     *exec.Cmd
}

// StartNATSProcess runs the nats-server binary bin with JetStream, its
// file store and its log (nats-server.log) in dir, which must exist, on
// port (0: a free one) of the loopback interface, with args added to its
// command line (such as "--user", "u", "--pass", "p"), and waits until it
// accepts clients. Stop it with Kill.
func StartNATSProcess(bin, dir string, port int, args ...string) (*NATSProcess, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w\n%s", bin, err, out)
	}
	// "nats-server: v2.9.10"
	_, version, _ := strings.Cut(strings.TrimSpace(string(out)), ": v")
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "nats-server.log")
	cmd := exec.Command(bin, append([]string{
		"--addr", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--jetstream",
		"--store_dir", filepath.Join(dir, "jetstream"),
		"--log", logPath,
	}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &NATSProcess{URL: "nats://" + addr, Version: version, cmd: cmd}
	// nats-server accepts clients once JetStream is up.
	if err := waitTCP(addr, 30*time.Second); err != nil {
		p.Kill()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s: %w\n%s", bin, err, tail(log, 4096))
	}
	return p, nil
}

// Pid is the server's process id (0 when it is not running), for reading
// its CPU time.
func (p *NATSProcess) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill stops the server at once (SIGKILL). Safe to call twice.
func (p *NATSProcess) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// RunNATS starts the nats-server binary (a path such as DebianNATS, or a
// command on PATH) as StartNATSProcess does, on a free port and a
// temporary directory, and stops it when the test ends. It is for testing
// against a server other than the embedded one (NATS), which is the
// version go.mod requires. Skipped with -short; a missing binary fails
// the test, naming the Debian package: CI installs it.
func RunNATS(t testing.TB, binary string, args ...string) *NATSProcess {
	t.Helper()
	return RunNATSOn(t, binary, 0, args...)
}

// RunNATSOn is RunNATS on port, for a client started before the server
// (FreePort gives one).
func RunNATSOn(t testing.TB, binary string, port int, args ...string) *NATSProcess {
	t.Helper()
	skipShort(t, binary)
	p, err := StartNATSProcess(lookBinary(t, binary, "nats-server"), t.TempDir(), port, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}
