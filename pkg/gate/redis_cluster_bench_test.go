package gate_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// BenchmarkRedisScaling compares one Redis (RedisStore) with a Redis
// Cluster of 3 masters (RedisClusterStore), and RedisClusterStore on one
// Redis (the cost of its parallel per-counter scripts alone). Besides
// ns/op it reports the Redis CPU time per operation summed over the
// masters ("redis-cpu-us/op", from INFO cpu): one Redis runs commands on
// one core, so 1e6 / redis-cpu-us/op is the rate at which one master
// saturates, and a cluster multiplies it by its masters when they have
// cores of their own. On a 2-core machine the three masters, the client
// and the benchmark share two cores: compare ratios, not absolutes.
func BenchmarkRedisScaling(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: no servers")
	}
	cfg := gate.DefaultConfig()
	cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = 1_000_000, 1_000_000, 1_000_000 // never block
	cfg.StoreTimeout = 5 * time.Second

	srv := testenv.Redis(b)
	single := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer single.Close()
	cl := testenv.RedisCluster(b)
	cluster := cl.Client()
	var masters []*redis.Client
	for _, n := range cl.Nodes {
		c := n.Client()
		defer c.Close()
		if info, err := c.Info(ctx, "replication").Result(); err == nil && strings.Contains(info, "role:master") {
			masters = append(masters, c)
		}
	}
	clusterStore, err := gate.NewRedisClusterStore(cluster, "bench", cfg.Policy())
	if err != nil {
		b.Fatal(err)
	}
	onSingle, err := gate.NewRedisClusterStore(single, "benchcs", cfg.Policy())
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name    string
		store   gate.Store
		servers []*redis.Client
	}{
		{"redis", gate.NewRedisStore(single, "bench", cfg.Policy()), []*redis.Client{single}},
		{"cluster-store-on-one-redis", onSingle, []*redis.Client{single}},
		{"cluster-3-masters", clusterStore, masters},
	}
	attempts := make([]gate.Attempt, 4096)
	for i := range attempts {
		attempts[i] = gate.Attempt{IP: netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}), Username: "bench" + strconv.Itoa(i)}
	}
	for _, sc := range cases {
		g, err := gate.New(cfg, sc.store, gate.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		g.Record(ctx, attempts[0], true) // load the scripts
		cpu := func() float64 {
			var sum float64
			for _, c := range sc.servers {
				info, err := c.Info(ctx, "cpu").Result()
				if err != nil {
					b.Fatal(err)
				}
				for _, line := range strings.Split(info, "\n") {
					k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
					if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
						f, _ := strconv.ParseFloat(v, 64)
						sum += f
					}
				}
			}
			return sum
		}
		measure := func(b *testing.B, loop func(b *testing.B)) {
			b.ReportAllocs()
			before := cpu()
			loop(b)
			b.ReportMetric((cpu()-before)*1e6/float64(b.N), "redis-cpu-us/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		}
		b.Run(sc.name+"/begin", func(b *testing.B) {
			measure(b, func(b *testing.B) {
				i := 0
				for b.Loop() {
					tk, _ := g.Begin(ctx, attempts[i%len(attempts)])
					tk.FinishAsync(true)
					i++
				}
				_ = g.Flush(ctx)
			})
		})
		b.Run(sc.name+"/record", func(b *testing.B) {
			measure(b, func(b *testing.B) {
				i := 0
				for b.Loop() {
					g.Record(ctx, attempts[i%len(attempts)], i%2 == 0)
					i++
				}
			})
		})
		b.Run(sc.name+"/parallel-login", func(b *testing.B) {
			// Begin, then Finish: what a busy site's logins cost in all.
			b.SetParallelism(16)
			measure(b, func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						tk, _ := g.Begin(ctx, attempts[i%len(attempts)])
						tk.Finish(ctx, i%2 == 0)
						i++
					}
				})
			})
		})
		ctxClose, cancel := contextWithTimeout(5 * time.Second)
		_ = g.Close(ctxClose)
		cancel()
	}
}
