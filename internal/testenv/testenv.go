// Package testenv starts real servers (Redis, NATS, ClickHouse) for tests,
// each on a free loopback port with its own temporary directory, stopped by
// t.Cleanup. Tests that need a server call testing.Short() first through
// these helpers: with -short they are skipped.
package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// freePort picks a free port below the kernel's ephemeral range: the
// kernel never hands those out to other listeners on port 0 nor as the
// local port of outgoing connections, so a server stopped and restarted
// on its port (the outage tests) finds it still free. It falls back to a
// port from the kernel when the range below holds none.
//
// A port is free only for a moment: until its server binds it, another
// caller could be handed it too, and then one server answers for both
// (seen once in CI: a gate's /healthz answered by a parallel subtest's
// gate, which then stopped). So each port is handed out once per process
// (taken) and reserved for the process's life against other test
// processes, which run in parallel, by an exclusive flock on a file of its
// own (reserve).
func freePort() (int, error) {
	low := ephemeralLow()
	const floor = 20000
	for range 200 {
		if low-floor < 1000 {
			break
		}
		p := floor + rand.IntN(low-floor)
		if !reserve(p) {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if reserve(p) {
			return p, nil
		}
	}
	return 0, errors.New("free port: none left to reserve")
}

// ports are the ports this process reserved, and the locks that hold
// them against other processes until it exits.
var ports struct {
	sync.Mutex
	taken map[int]*os.File
}

// reserve reports whether port p is now this process's: not handed out
// here before, and its lock file (in the temporary directory) locked by
// no other process. The lock is held until the process exits; a port
// once reserved is never handed out again, even if its lock failed to
// open (then only this process is kept from it).
func reserve(p int) bool {
	ports.Lock()
	defer ports.Unlock()
	if ports.taken == nil {
		ports.taken = map[int]*os.File{}
	}
	if _, ok := ports.taken[p]; ok {
		return false
	}
	dir := filepath.Join(os.TempDir(), "defender-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		ports.taken[p] = nil
		return true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		ports.taken[p] = nil
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false // another test process holds it
	}
	ports.taken[p] = f
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 32768
}

// skipShort skips t in -short mode: servers are not started then.
func skipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: not starting %s", what)
	}
}

// lookBinary finds a server binary or fails the test with the package to install.
func lookBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (see .ci/run)", name, pkg)
	}
	return p
}

// waitTCP waits until addr accepts connections or the deadline passes.
func waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
