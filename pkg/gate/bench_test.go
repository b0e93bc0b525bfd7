package gate_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// BenchmarkGate measures the gate's operations on each store. On Redis the
// same run measures a PING, and every result reports its cost as a
// multiple of that round trip ("x-ping"): absolute times on a shared
// machine mean little, ratios within one run do.
func BenchmarkGate(b *testing.B) {
	cfg := gate.DefaultConfig()
	cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = 1_000_000, 1_000_000, 1_000_000 // never block
	type storeCase struct {
		name  string
		store gate.Store
		ping  func() error
		// scripts returns Redis's script calls and their time in µs so far.
		scripts func() (int64, int64)
	}
	mem := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()})
	defer mem.Close()
	cases := []storeCase{{name: "memory", store: mem}}
	if !testing.Short() {
		srv := testenv.Redis(b)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer c.Close()
		cases = append(cases, storeCase{name: "redis", store: gate.NewRedisStore(c, "bench", cfg.Policy()),
			ping:    func() error { return c.Ping(ctx).Err() },
			scripts: func() (int64, int64) { return scriptStats(b, c) }})
	}
	for _, sc := range cases {
		g, err := gate.New(cfg, sc.store, gate.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		var pingNs float64
		if sc.ping != nil {
			b.Run(sc.name+"/ping", func(b *testing.B) {
				for b.Loop() {
					if err := sc.ping(); err != nil {
						b.Fatal(err)
					}
				}
				pingNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			})
		}
		// start marks where a sub-benchmark's Redis script time begins; report
		// gives its time per op as a multiple of a PING, and Redis's own time
		// in scripts per op (outcomes settled in the background included).
		var calls0, usec0 int64
		start := func() {
			if sc.scripts != nil {
				calls0, usec0 = sc.scripts()
			}
		}
		report := func(b *testing.B) {
			if pingNs > 0 {
				perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(perOp/pingNs, "x-ping")
			}
			if sc.scripts != nil {
				_ = g.Flush(ctx)
				calls, usec := sc.scripts()
				b.ReportMetric(float64(calls-calls0)/float64(b.N), "scripts/op")
				b.ReportMetric(float64(usec-usec0)/float64(b.N), "redis-µs/op")
			}
		}
		ips := make([]gate.Attempt, 1024)
		for i := range ips {
			ips[i] = gate.Attempt{IP: netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), Username: "bench" + strconv.Itoa(i)}
		}
		b.Run(sc.name+"/check", func(b *testing.B) {
			b.ReportAllocs()
			start()
			i := 0
			for b.Loop() {
				g.Check(ctx, ips[i%len(ips)])
				i++
			}
			report(b)
		})
		b.Run(sc.name+"/login-critical-path", func(b *testing.B) {
			// What a login waits for: Begin, then the outcome handed off.
			b.ReportAllocs()
			start()
			i := 0
			for b.Loop() {
				tk, _ := g.Begin(ctx, ips[i%len(ips)])
				tk.FinishAsync(i%2 == 0)
				i++
			}
			report(b)
		})
		b.Run(sc.name+"/begin-finish", func(b *testing.B) {
			b.ReportAllocs()
			start()
			i := 0
			for b.Loop() {
				tk, _ := g.Begin(ctx, ips[i%len(ips)])
				tk.Finish(ctx, i%2 == 0)
				i++
			}
			report(b)
		})
		b.Run(sc.name+"/record", func(b *testing.B) {
			b.ReportAllocs()
			start()
			i := 0
			for b.Loop() {
				g.Record(ctx, ips[i%len(ips)], i%2 == 0)
				i++
			}
			report(b)
		})
		b.Run(sc.name+"/parallel-login", func(b *testing.B) {
			// 8 logins per CPU at a time, as a busy login server has.
			b.ReportAllocs()
			b.SetParallelism(8)
			start()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					tk, _ := g.Begin(ctx, ips[i%len(ips)])
					tk.FinishAsync(false)
					i++
				}
			})
			report(b)
		})
		ctxClose, cancel := contextWithTimeout(5 * time.Second)
		_ = g.Close(ctxClose)
		cancel()
	}
}

// scriptStats returns how many scripts Redis ran and its µs in them.
func scriptStats(b *testing.B, c *redis.Client) (calls, usec int64) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	calls, usec, err = testenv.ScriptStats(info)
	if err != nil {
		b.Fatal(err)
	}
	return calls, usec
}

// BenchmarkMiddleware measures what gate.Middleware adds to a login
// handler on the in-memory store: a form POST answered with a redirect,
// through the middleware and without it.
func BenchmarkMiddleware(b *testing.B) {
	cfg := gate.DefaultConfig()
	cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = 1_000_000, 1_000_000, 1_000_000
	cfg.BehindReverseProxy = true
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	mem := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()})
	defer mem.Close()
	g, err := gate.New(cfg, mem, gate.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctxClose, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		_ = g.Close(ctxClose)
	}()
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.PostFormValue("password")
		http.Redirect(w, r, "/", http.StatusFound)
	})
	bodies := make([]string, 1024)
	for i := range bodies {
		bodies[i] = "username=user" + strconv.Itoa(i) + "&password=secret"
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"handler", login}, {"gated", g.Middleware(login)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(bodies[i%len(bodies)]))
				r.RemoteAddr = "127.0.0.1:5000"
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.Header.Set("X-Forwarded-For", "10.1."+strconv.Itoa(i%250)+".7")
				tc.h.ServeHTTP(httptest.NewRecorder(), r)
				i++
			}
			_ = g.Flush(ctx)
		})
	}
}
