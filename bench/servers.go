package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
)

// redisServer is a redis-server process started for one bench run: a free
// loopback port, a temporary directory, no persistence.
type redisServer struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts Debian's redis-server and waits until it answers PING.
func startRedis(dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found: install the Debian package redis-server")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &redisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()

	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server exited during start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("redis-server on %s: no answer to PING: %w", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server's process group and waits for it. Safe to call twice.
func (s *redisServer) Stop() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// startClickHouse starts a clickhouse-server in dir on free ports. It
// reuses the test environment's starter, which needs no testing.TB.
func startClickHouse(dir string) (*testenv.ClickHouseServer, error) {
	return testenv.StartClickHouse(dir)
}

// scriptStats returns how many scripts Redis ran since it started and
// the time it spent in them: the top-level EVAL, EVALSHA and EVALSHA_RO
// lines of INFO commandstats. (The commands run inside scripts are counted
// there too, under their own names, and are left out.)
func scriptStats(ctx context.Context, c *redis.Client) (calls int, usec int64, err error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("info commandstats: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "eval", "evalsha", "evalsha_ro", "eval_ro":
		default:
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "calls":
				n, err := strconv.Atoi(v)
				if err != nil {
					return 0, 0, fmt.Errorf("commandstats %q: %w", line, err)
				}
				calls += n
			case "usec":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("commandstats %q: %w", line, err)
				}
				usec += n
			}
		}
	}
	return calls, usec, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
