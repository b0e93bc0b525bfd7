package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process started for one test.
type RedisServer struct {
	Addr string // host:port
	URL  string // redis://host:port/0
	port int
	dir  string
	bin  string
	cmd  *exec.Cmd
	t    testing.TB
}

// Redis starts Debian's redis-server on a free port with a temporary
// directory (no persistence) and stops it when the test ends.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	skipShort(t, "redis-server")
	s := &RedisServer{
		port: FreePort(t),
		dir:  t.TempDir(),
		bin:  lookBinary(t, "redis-server", "redis-server"),
		t:    t,
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	s.URL = "redis://" + s.Addr + "/0"
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start (re)starts the server on its port. It fails the test if the
// server does not listen within 10 s.
func (s *RedisServer) Start() {
	s.t.Helper()
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	if err := waitTCP(s.Addr, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		s.t.Fatalf("redis-server: %v\n%s", err, log)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would. Safe to call twice.
func (s *RedisServer) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Client returns a go-redis client for the server, closed at test end.
func (s *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// CommandCalls returns how many times each command ran since the last
// CONFIG RESETSTAT, from INFO commandstats (keys lower-case, e.g. "evalsha").
func (s *RedisServer) CommandCalls(ctx context.Context, c *redis.Client) (map[string]int, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("info commandstats: %w", err)
	}
	return ParseCommandStats(info)
}
