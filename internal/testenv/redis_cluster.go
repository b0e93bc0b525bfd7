package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterNodeTimeout is the cluster-node-timeout of the clusters that
// RedisCluster starts: a master unreachable for this long is failed over
// to its replica.
const RedisClusterNodeTimeout = time.Second

// RedisClusterServer is a Redis Cluster of 3 masters and 3 replicas of
// Debian's redis-server, started for one test.
type RedisClusterServer struct {
	// Nodes in start order. Which ones are masters is decided by
	// redis-cli --cluster create (the first three, at first) and changes
	// on failover: ask Master and ReplicaOf.
	Nodes []*RedisClusterNode
	t     testing.TB
}

// RedisClusterNode is one redis-server process of a RedisClusterServer.
type RedisClusterNode struct {
	Addr string // host:port of clients
	port int
	bus  int // cluster bus port
	dir  string
	bin  string

	mu  sync.Mutex
	cmd *exec.Cmd
	t   testing.TB
}

// RedisCluster starts six cluster-enabled redis-server processes on free
// loopback ports, each with its own temporary directory, joins them with
// `redis-cli --cluster create ... --cluster-replicas 1` and waits until
// every node reports cluster_state:ok and every replica is in sync. The
// nodes are killed when the test ends.
//
// The nodes fail over after RedisClusterNodeTimeout, any replica may take
// over however stale (cluster-replica-validity-factor 0), and slots of a
// live master keep serving while another master is down
// (cluster-require-full-coverage no).
func RedisCluster(t testing.TB) *RedisClusterServer {
	t.Helper()
	skipShort(t, "a redis cluster")
	bin := lookBinary(t, "redis-server", "redis-server")
	cli := lookBinary(t, "redis-cli", "redis-tools")
	c := &RedisClusterServer{t: t}
	for i := 0; i < 6; i++ {
		n := &RedisClusterNode{port: FreePort(t), bus: FreePort(t), dir: t.TempDir(), bin: bin, t: t}
		n.Addr = "127.0.0.1:" + strconv.Itoa(n.port)
		c.Nodes = append(c.Nodes, n)
		t.Cleanup(n.Kill)
		n.Start()
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatalf("redis cluster: %v\n%s", err, out)
	}
	return c
}

// Addrs lists the addresses of all nodes, for redis.ClusterOptions.Addrs.
func (c *RedisClusterServer) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Client returns a cluster client over all nodes, closed at test end.
func (c *RedisClusterServer) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Node returns the node listening on addr, or nil.
func (c *RedisClusterServer) Node(addr string) *RedisClusterNode {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Master returns the node that serves key now, as the live nodes see it.
func (c *RedisClusterServer) Master(ctx context.Context, key string) (*RedisClusterNode, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			cl.Close()
			continue
		}
		slots, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				if m := c.Node(s.Nodes[0].Addr); m != nil {
					return m, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("no live node knows the master of %q", key)
}

// WaitHealthy waits until every running node reports cluster_state:ok with
// all 16384 slots served, and every running replica's link to its master
// is up.
func (c *RedisClusterServer) WaitHealthy(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = c.healthy(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %w", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *RedisClusterServer) healthy(ctx context.Context) error {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			cl.Close()
			return fmt.Errorf("%s: cluster info: %w", n.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			cl.Close()
			return fmt.Errorf("%s: %s", n.Addr, strings.Join(strings.Fields(info)[:4], " "))
		}
		repl, err := cl.Info(ctx, "replication").Result()
		cl.Close()
		if err != nil {
			return fmt.Errorf("%s: info replication: %w", n.Addr, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not in sync", n.Addr)
		}
	}
	return nil
}

// Start (re)starts the node on its ports with its directory, so a
// restarted node rejoins the cluster with its node id (as a replica if it
// was failed over meanwhile). It fails the test if the node does not
// listen within 10 s.
func (n *RedisClusterNode) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin,
		"--port", strconv.Itoa(n.port),
		"--cluster-port", strconv.Itoa(n.bus),
		"--bind", "127.0.0.1",
		"--dir", n.dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(RedisClusterNodeTimeout.Milliseconds(), 10),
		"--cluster-replica-validity-factor", "0",
		"--cluster-require-full-coverage", "no",
		"--logfile", filepath.Join(n.dir, "redis.log"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start redis-server: %v", err)
	}
	n.cmd = cmd
	if err := waitTCP(n.Addr, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(n.dir, "redis.log"))
		n.t.Fatalf("redis-server %s: %v\n%s", n.Addr, err, log)
	}
}

// Kill stops the node at once (SIGKILL), as a crash would. Safe to call twice.
func (n *RedisClusterNode) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	_ = n.cmd.Wait()
	n.cmd = nil
}

// Running reports whether the node's process was started and not killed.
func (n *RedisClusterNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Client returns a plain client of this node alone; the caller closes it.
func (n *RedisClusterNode) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second})
}
