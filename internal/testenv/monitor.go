package testenv

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Wire records the commands clients send to the server while f runs, as
// MONITOR shows them: commands that scripts run inside the server ("lua"
// in MONITOR's output) are not on the wire and are left out, unlike in
// INFO commandstats. Each command is its lower-cased name.
func (s *RedisServer) Wire(t testing.TB, f func()) []string {
	t.Helper()
	mon, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	defer mon.Close()
	r := bufio.NewReader(mon)
	if _, err := mon.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("monitor: %q %v", line, err)
	}
	f()
	// A marker sent after f tells where f's commands end.
	marker := fmt.Sprintf("end-of-wire-%d", time.Now().UnixNano())
	echo, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
	if err != nil {
		t.Fatalf("monitor marker: %v", err)
	}
	defer echo.Close()
	if _, err := echo.Write([]byte("ECHO " + marker + "\r\n")); err != nil {
		t.Fatalf("monitor marker: %v", err)
	}
	_ = mon.SetReadDeadline(time.Now().Add(10 * time.Second))
	var cmds []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("monitor read: %v", err)
		}
		if strings.Contains(line, marker) {
			return cmds
		}
		// +1700000000.123456 [0 127.0.0.1:5555] "evalsha" "..." ...
		open, close := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
		if open < 0 || close < open {
			continue
		}
		if strings.Contains(line[open:close], "lua") {
			continue
		}
		rest := strings.TrimSpace(line[close+1:])
		name, _, _ := strings.Cut(rest, " ")
		cmds = append(cmds, strings.ToLower(strings.Trim(name, `"`)))
	}
}
