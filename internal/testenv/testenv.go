// Package testenv starts real servers (Redis, NATS, ClickHouse) for tests,
// each on a free loopback port with its own temporary directory, stopped by
// t.Cleanup. Tests that need a server call testing.Short() first through
// these helpers: with -short they are skipped.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
func freePort() (int, error) {
	low := ephemeralLow()
	const floor = 20000
	for range 100 {
		if low-floor < 1000 {
			break
		}
		p := floor + rand.IntN(low-floor)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
