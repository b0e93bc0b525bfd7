package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
)

// startRedis starts a redis-server in dir on a free port, without
// persistence; startClickHouse a clickhouse-server in dir on free ports.
// Both are the test environment's starters, which need no testing.TB;
// the caller kills the servers.
func startRedis(dir string) (*testenv.RedisServer, error) { return testenv.StartRedis(dir) }

func startClickHouse(dir string) (*testenv.ClickHouseServer, error) {
	return testenv.StartClickHouse(dir)
}

// scriptStats returns how many scripts Redis ran since it started and
// the time it spent in them (see testenv.ScriptStats).
func scriptStats(ctx context.Context, c *redis.Client) (calls int, usec int64, err error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("info commandstats: %w", err)
	}
	n, usec, err := testenv.ScriptStats(info)
	return int(n), usec, err
}
