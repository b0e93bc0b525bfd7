package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// RedisSentinel is a Redis master watched by one Redis Sentinel, started
// for one test: what DEFENDER_REDIS_URL=redis+sentinel://... points at.
type RedisSentinel struct {
	// Master is the Redis the sentinel watches.
	Master *RedisServer
	// Addr is the sentinel's host:port; URL the gate's URL for the master
	// through it (redis+sentinel://<addr>/<MasterName>).
	Addr, URL string
}

// MasterName is the name the sentinel knows the master by.
const MasterName = "defender"

// RedisSentinelServer starts a master (Redis) and a sentinel monitoring
// it (redis-server --sentinel, from the same Debian package), and stops
// both when the test ends.
func RedisSentinelServer(t testing.TB) *RedisSentinel {
	t.Helper()
	master := Redis(t)
	bin := lookBinary(t, "redis-server", "redis-server")
	host, masterPort, err := net.SplitHostPort(master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := FreePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile %s\n"+
		"sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\n",
		port, dir, filepath.Join(dir, "sentinel.log"), MasterName, host, masterPort, MasterName)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	s := &RedisSentinel{Master: master, Addr: "127.0.0.1:" + strconv.Itoa(port)}
	s.URL = "redis+sentinel://" + s.Addr + "/" + MasterName
	if err := waitTCP(s.Addr, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		t.Fatalf("redis sentinel: %v\n%s", err, log)
	}
	return s
}
