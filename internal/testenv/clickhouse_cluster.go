package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ClickHouseClusterServer is a set of clickhouse-server processes that all
// know each other as the shards of one cluster (remote_servers), one
// replica per shard: what Distributed tables need, without ZooKeeper.
type ClickHouseClusterServer struct {
	Name    string // the cluster's name in remote_servers
	Servers []*ClickHouseServer
}

// ClickHouseCluster starts n clickhouse-servers (see ClickHouse), adds the
// cluster "defender" of n shards to each one's config (config.d), makes
// them reload it and waits until every server lists the n shards in
// system.clusters. The servers are killed when the test ends.
func ClickHouseCluster(t testing.TB, n int) *ClickHouseClusterServer {
	t.Helper()
	skipShort(t, "clickhouse-server")
	c := &ClickHouseClusterServer{Name: "defender"}
	for i := 0; i < n; i++ {
		c.Servers = append(c.Servers, ClickHouse(t))
	}
	var shards strings.Builder
	for _, s := range c.Servers {
		host, port, _ := strings.Cut(s.Addr, ":")
		fmt.Fprintf(&shards, "      <shard><replica><host>%s</host><port>%s</port></replica></shard>\n", host, port)
	}
	conf := "<?xml version=\"1.0\"?>\n<yandex>\n  <remote_servers>\n    <" + c.Name + ">\n" +
		shards.String() + "    </" + c.Name + ">\n  </remote_servers>\n</yandex>\n"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range c.Servers {
		dir := filepath.Join(s.Dir(), "config.d")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("clickhouse config.d: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cluster.xml"), []byte(conf), 0o644); err != nil {
			t.Fatalf("clickhouse cluster config: %v", err)
		}
	}
	for _, s := range c.Servers {
		if err := c.waitShards(ctx, s, n); err != nil {
			t.Fatalf("clickhouse cluster on %s: %v", s.Addr, err)
		}
	}
	return c
}

// waitShards reloads s's config until it lists n shards of the cluster.
func (c *ClickHouseClusterServer) waitShards(ctx context.Context, s *ClickHouseServer, n int) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}})
	if err != nil {
		return err
	}
	defer conn.Close()
	for {
		// The server also rereads its config on its own every few seconds.
		_ = conn.Exec(ctx, "SYSTEM RELOAD CONFIG")
		var got uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.clusters WHERE cluster = ?", c.Name).Scan(&got)
		if err == nil && got == uint64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d shards listed, want %d (last error: %v): %w", got, n, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
