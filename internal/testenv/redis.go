package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process started for one test (Redis) or
// for a program such as the bench (StartRedis).
type RedisServer struct {
	Addr string // host:port
	URL  string // redis://host:port/0
	port int
	dir  string
	bin  string
	cmd  *exec.Cmd
	t    testing.TB // nil when started by StartRedis
	// appendOnly runs the server with an append-only file, as
	// deploy/compose.yml does, so that a restart reloads the data.
	appendOnly bool
	// wrap, when set, is a program and its arguments that run the server
	// (valgrind, for the bench's instruction counts).
	wrap []string
}

// Redis starts Debian's redis-server on a free port with a temporary
// directory (no persistence) and stops it when the test ends.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	return redisForTest(t, false)
}

// RedisAppendOnly is Redis with the persistence deploy/compose.yml gives
// it: an append-only file (fsynced every second) in the server's directory,
// reloaded when Start restarts a killed server.
func RedisAppendOnly(t testing.TB) *RedisServer {
	t.Helper()
	return redisForTest(t, true)
}

func redisForTest(t testing.TB, appendOnly bool) *RedisServer {
	t.Helper()
	skipShort(t, "redis-server")
	s, err := startRedis(t.TempDir(), appendOnly)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.t = t
	t.Cleanup(s.Kill)
	return s
}

// StartRedis starts Debian's redis-server in dir (which must exist) on a
// free port, without persistence, and waits until it listens. The caller
// stops it with Kill. It needs no testing.TB: it is for programs (the
// bench) and for servers shared by a test package.
func StartRedis(dir string) (*RedisServer, error) { return startRedis(dir, false) }

// StartRedisUnder is StartRedis with the server run by wrap (a program
// and its arguments, e.g. valgrind's), which may slow it down many times:
// it waits up to a minute for it to listen. Pid is then the wrapper's
// process, which valgrind turns into the server's.
func StartRedisUnder(dir string, wrap ...string) (*RedisServer, error) {
	if len(wrap) == 0 {
		return nil, errors.New("start redis-server under a program: no program")
	}
	if _, err := exec.LookPath(wrap[0]); err != nil {
		return nil, fmt.Errorf("%s not found: %w", wrap[0], err)
	}
	return startRedisWith(dir, false, wrap)
}

func startRedis(dir string, appendOnly bool) (*RedisServer, error) {
	return startRedisWith(dir, appendOnly, nil)
}

func startRedisWith(dir string, appendOnly bool, wrap []string) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found: install the Debian package redis-server (see .ci/run)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &RedisServer{port: port, dir: dir, bin: bin, appendOnly: appendOnly, wrap: wrap}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	s.URL = "redis://" + s.Addr + "/0"
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start (re)starts the server on its port. It fails the test if the
// server does not listen within 10 s.
func (s *RedisServer) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("%v", err)
	}
}

func (s *RedisServer) start() error {
	appendOnly := "no"
	if s.appendOnly {
		appendOnly = "yes"
	}
	args := []string{s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", appendOnly,
		"--appendfsync", "everysec",
		"--protected-mode", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
	wait := 10 * time.Second
	if len(s.wrap) > 0 {
		args, wait = append(slices.Clone(s.wrap), args...), time.Minute
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	if err := waitTCP(s.Addr, wait); err != nil {
		s.Kill()
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return fmt.Errorf("redis-server: %w\n%s", err, log)
	}
	return nil
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

// Pid is the server's process id (0 when it is not running), for reading
// its CPU time.
func (s *RedisServer) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Client returns a go-redis client for the server, closed at test end.
// Only for a server started by Redis.
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
