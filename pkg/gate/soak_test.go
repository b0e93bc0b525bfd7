package gate_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// The soak runs only when DEFENDER_SOAK is set to a duration, the time
// given to each store (make soak SOAK=5m). It floods the login middleware
// from many goroutines with a mix of traffic, samples the process while
// it runs, and checks that nothing grows: heap in use after a GC and
// goroutines in the last third of the run against the first (after a
// warm-up of 30 s), and the memory store's entries against its bound at
// every sample. It compares the run with itself, not with absolute times.

// Tolerances of the soak: the last third may exceed the first by this
// much before the run counts as growing.
const (
	soakHeapRatio      = 1.25
	soakHeapSlack      = 8 << 20 // bytes
	soakGoroutineSlack = 10
	soakMemoryBound    = 50_000 // MemoryOptions.MaxEntries of the soaked store
)

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("DEFENDER_SOAK")
	if v == "" {
		t.Skip("set DEFENDER_SOAK to a duration (per store) to soak: make soak SOAK=5m")
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "DEFENDER_SOAK")
	require.GreaterOrEqual(t, d, 30*time.Second, "DEFENDER_SOAK: at least 30s")
	return d
}

// soakSample is the process as seen at one moment.
type soakSample struct {
	at         time.Duration
	heap       uint64 // HeapInuse after GC, bytes
	goroutines int
	entries    int   // memory store entries (memory only)
	redisMem   int64 // used_memory of redis-server (redis only)
	requests   int64
}

// soakCounter counts what the gate emits, keeping nothing.
type soakCounter struct{ attempts, blocks, unblocks atomic.Int64 }

func (c *soakCounter) EmitAttempt(gate.AttemptRecord) { c.attempts.Add(1) }
func (c *soakCounter) EmitTransition(t gate.TransitionRecord) {
	if t.Blocked {
		c.blocks.Add(1)
	} else {
		c.unblocks.Add(1)
	}
}

func TestSoak(t *testing.T) {
	d := soakDuration(t)
	t.Run("memory", func(t *testing.T) {
		mem := gate.NewMemoryStore(gate.MemoryOptions{Policy: soakConfig().Policy(), MaxEntries: soakMemoryBound})
		defer mem.Close()
		soak(t, d, mem, func(s *soakSample) {
			s.entries = mem.Stats().Entries
			require.LessOrEqual(t, s.entries, soakMemoryBound, "the memory store exceeded its bound")
		}, func() string {
			st := mem.Stats()
			assert.Positive(t, st.Evictions, "the flood filled the store: the bound was exercised")
			return fmt.Sprintf("memory store: bound %d, evictions %d (of which blocks %d), expired %d",
				soakMemoryBound, st.Evictions, st.EvictedBlocks, st.Expired)
		})
	})
	t.Run("redis", func(t *testing.T) {
		srv := testenv.Redis(t)
		client := srv.Client()
		store := gate.NewRedisStore(client, "soak", soakConfig().Policy())
		soak(t, d, store, func(s *soakSample) {
			info, err := client.Info(context.Background(), "memory").Result()
			require.NoError(t, err)
			s.redisMem = infoInt(info, "used_memory")
		}, func() string {
			n, err := client.DBSize(context.Background()).Result()
			require.NoError(t, err)
			return fmt.Sprintf("redis: %d keys at the end", n)
		})
	})
}

// soakConfig is the configuration of the soaked gate, whose policy its
// store applies.
func soakConfig() gate.Config {
	cfg := gate.DefaultConfig()
	cfg.AttemptCooloff = 20 * time.Second
	cfg.LockoutCooloffs = []time.Duration{10 * time.Second, 20 * time.Second}
	cfg.AccessAttemptExpiration = time.Minute
	cfg.PendingTimeout = 10 * time.Second
	cfg.StoreTimeout = 3 * time.Second // a loaded test machine
	cfg.BehindReverseProxy = true
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	return cfg
}

// soak floods a gate over store for d and checks the samples.
func soak(t *testing.T, d time.Duration, store gate.Store, sample func(*soakSample), summary func() string) {
	cfg := soakConfig()
	emit := &soakCounter{}
	g, err := gate.New(cfg, store, gate.WithEmitter(emit), gate.WithLogger(quiet))
	require.NoError(t, err)
	site := &loginSite{}
	h := g.Middleware(site)

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		requests, refused atomic.Int64
		wg                sync.WaitGroup
	)
	workers := 4 * runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			var rnd [16]byte
			for i := 0; ctx.Err() == nil; i++ {
				_, _ = rand.Read(rnd[:])
				code := soakRequest(h, w, i, rnd)
				requests.Add(1)
				if code == http.StatusTooManyRequests {
					refused.Add(1)
				}
			}
		})
	}

	// Warm-up: the stores fill to their steady state (Redis keys live up
	// to PendingTimeout + AttemptCooloff, 30 s), then the thirds compare.
	warmup := min(max(d/10, 30*time.Second), d/2)
	every := max(d/60, time.Second)
	start := time.Now()
	var samples []soakSample
	tick := time.NewTicker(every)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			s := soakSample{at: time.Since(start), heap: ms.HeapInuse, goroutines: runtime.NumGoroutine(), requests: requests.Load()}
			sample(&s)
			if s.at >= warmup && ctx.Err() == nil { // not while the workers stop
				samples = append(samples, s)
			}
		}
	}
	wg.Wait()
	flush, cancelFlush := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFlush()
	require.NoError(t, g.Flush(flush))
	require.NoError(t, g.Close(flush))
	require.GreaterOrEqual(t, len(samples), 9, "too few samples")

	third := len(samples) / 3
	first, last := samples[:third], samples[len(samples)-third:]
	heapFirst, heapLast := meanOf(first, func(s soakSample) float64 { return float64(s.heap) }),
		meanOf(last, func(s soakSample) float64 { return float64(s.heap) })
	gFirst, gLast := maxOf(first, func(s soakSample) float64 { return float64(s.goroutines) }),
		maxOf(last, func(s soakSample) float64 { return float64(s.goroutines) })
	total := requests.Load()
	elapsed := time.Since(start)
	t.Logf("%s: %d requests in %s (%.0f/s), %d refused (429); %d attempt events, %d blocks, %d unblocks; password checks %d",
		t.Name(), total, elapsed.Round(time.Second), float64(total)/elapsed.Seconds(), refused.Load(),
		emit.attempts.Load(), emit.blocks.Load(), emit.unblocks.Load(), site.calls.Load())
	t.Logf("heap in use after GC: first third %.1f MiB, last third %.1f MiB (mean of %d samples each)",
		heapFirst/(1<<20), heapLast/(1<<20), third)
	t.Logf("goroutines: first third max %.0f, last third max %.0f", gFirst, gLast)
	if samples[0].redisMem > 0 {
		t.Logf("redis used_memory: first third %.1f MiB, last third %.1f MiB",
			meanOf(first, func(s soakSample) float64 { return float64(s.redisMem) })/(1<<20),
			meanOf(last, func(s soakSample) float64 { return float64(s.redisMem) })/(1<<20))
	}
	if samples[0].entries > 0 || samples[len(samples)-1].entries > 0 {
		t.Logf("memory store entries: max %.0f, last %d", maxOf(samples, func(s soakSample) float64 { return float64(s.entries) }),
			samples[len(samples)-1].entries)
	}
	t.Log(summary())
	for _, s := range samples {
		t.Logf("  t=%-6s heap=%6.1fMiB goroutines=%-4d entries=%-6d redis=%6.1fMiB requests=%d",
			s.at.Round(time.Second), float64(s.heap)/(1<<20), s.goroutines, s.entries, float64(s.redisMem)/(1<<20), s.requests)
	}

	assert.LessOrEqual(t, heapLast, heapFirst*soakHeapRatio+soakHeapSlack, "heap grew")
	assert.LessOrEqual(t, gLast, gFirst+soakGoroutineSlack, "goroutines grew")
	assert.Positive(t, emit.blocks.Load(), "the flood blocked someone")
	assert.Positive(t, refused.Load(), "and was refused")
}

// soakRequest sends one request of the mix, chosen by i, and returns the
// status. The mix, per 20 requests:
//   - 8 failures from a new random IPv4 address with a new username
//     (credential stuffing from a botnet: every subject new),
//   - 3 failures from a random address of a new IPv6 /64, through the
//     trusted proxy,
//   - 4 guesses at one of 20 targeted users from rotating addresses of 50
//     attacker IPs (blocks and refusals),
//   - 4 logins of 1000 regular users, mostly successful,
//   - 1 GET of the form (checked, not counted).
func soakRequest(h http.Handler, worker, i int, rnd [16]byte) int {
	var remote, user, password, xff string
	method := http.MethodPost
	switch n := binary.LittleEndian.Uint32(rnd[:4]); i % 20 {
	case 0, 1, 2, 3, 4, 5, 6, 7:
		ip := netip.AddrFrom4([4]byte{1 + rnd[4]%223, rnd[5], rnd[6], rnd[7]})
		remote, user, password = ip.String(), "bot-"+strconv.FormatUint(binary.LittleEndian.Uint64(rnd[8:]), 36), "guess"
	case 8, 9, 10:
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
		copy(a[4:], rnd[4:16])
		remote, xff = "10.0.0.1", netip.AddrFrom16(a).String()
		user, password = "v6-"+strconv.Itoa(int(n%100000)), "guess"
	case 11, 12, 13, 14:
		remote = fmt.Sprintf("198.51.100.%d", n%50)
		user, password = fmt.Sprintf("target%d", n%20), "guess"
	case 15, 16, 17, 18:
		k := (worker*7919 + i) % 1000
		remote = fmt.Sprintf("192.0.%d.%d", 2+k/250, k%250)
		user, password = fmt.Sprintf("user%d", k), "secret"
		if n%10 == 0 {
			password = "typo"
		}
	default:
		method, remote = http.MethodGet, fmt.Sprintf("203.0.113.%d", n%250)
	}
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader(url.Values{"username": {user}, "password": {password}}.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "/login", body)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote + ":4242"
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func meanOf(ss []soakSample, f func(soakSample) float64) float64 {
	sum := 0.0
	for _, s := range ss {
		sum += f(s)
	}
	return sum / float64(len(ss))
}

func maxOf(ss []soakSample, f func(soakSample) float64) float64 {
	m := math.Inf(-1)
	for _, s := range ss {
		m = max(m, f(s))
	}
	return m
}

// infoInt reads one integer field of a Redis INFO reply.
func infoInt(info, field string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
