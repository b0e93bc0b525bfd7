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

// NATSProcessServer is a nats-server process started for one test.
type NATSProcessServer struct {
	// URL is the server's client URL, nats://127.0.0.1:<port>, without
	// credentials.
	URL string
	// Version is the server's version as the binary reports it ("2.9.10").
	Version string
}

// NATSProcess starts the nats-server binary (a path such as DebianNATS,
// or a command on PATH) with JetStream on a free loopback port and a
// temporary store directory, with args added to its command line (such
// as "--user", "u", "--pass", "p"), and stops it when the test ends. It
// is for testing against a server other than the embedded one (NATS),
// which is the version go.mod requires. Skipped with -short; a missing
// binary fails the test, naming the Debian package: CI installs it.
func NATSProcess(t testing.TB, binary string, args ...string) *NATSProcessServer {
	t.Helper()
	skipShort(t, binary)
	return NATSProcessOn(t, binary, FreePort(t), args...)
}

// NATSProcessOn is NATSProcess on port, for a client started before the
// server (FreePort gives one).
func NATSProcessOn(t testing.TB, binary string, port int, args ...string) *NATSProcessServer {
	t.Helper()
	skipShort(t, binary)
	bin := lookBinary(t, binary, "nats-server")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	// "nats-server: v2.9.10"
	_, version, _ := strings.Cut(strings.TrimSpace(string(out)), ": v")
	dir := t.TempDir()
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
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// nats-server accepts clients once JetStream is up.
	if err := waitTCP(addr, 30*time.Second); err != nil {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("%s: %v\n%s", bin, err, tail(log, 4096))
	}
	return &NATSProcessServer{URL: fmt.Sprintf("nats://%s", addr), Version: version}
}
