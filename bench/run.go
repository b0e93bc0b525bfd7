package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/record"
)

// pass is one sweep over workloads × configurations with one password
// check and one number of clients.
type pass struct {
	ID          string // "cheap", "bcrypt", "latency"
	Title       string
	Check       string
	Concurrency int
	Duration    time.Duration
	// Settle is a wait after the load, inside the cell's CPU reading, for
	// the work the load left behind (the recorder's last batch); the same
	// for every configuration of the pass.
	Settle time.Duration
}

func passes(o options) []pass {
	return []pass{
		{ID: "cheap", Title: fmt.Sprintf("cheap password check, %d clients", o.Concurrency), Check: checkCheap, Concurrency: o.Concurrency, Duration: o.Duration},
		{ID: "bcrypt", Title: fmt.Sprintf("bcrypt (cost %d), %d clients", bcryptCost, o.Concurrency), Check: checkBcrypt, Concurrency: o.Concurrency, Duration: o.BcryptDuration},
		{ID: "latency", Title: "cheap password check, 1 client (latency without queueing)", Check: checkCheap, Concurrency: 1, Duration: o.LatencyDuration},
	}
}

// cell is one measurement: a configuration under a workload in one pass
// of one round.
type cell struct {
	Round    int
	Pass     string
	Workload string
	Config   string
	Load     loadResult
	// Mallocs is the login server process's allocations during the load
	// (runtime.MemStats.Mallocs delta, outcomes settled).
	Mallocs uint64
	// Scripts is the number of Lua scripts Redis ran for the load, and
	// ScriptUsec the time Redis spent running them.
	Scripts    int
	ScriptUsec int64
	// Ping is the median Redis PING round trip timed just before.
	Ping time.Duration
	// Published and Dropped are the event publisher's counters for the load.
	Published, Dropped uint64
	// Unexpected counts answers whose status does not fit the workload.
	Unexpected int
	// CPU is the CPU time each process, and the machine, used from just
	// before the load to the end of its settling.
	CPU cpuTimes
}

// env is what a run started.
type env struct {
	o       options
	dir     string
	redis   *testenv.RedisServer
	ping    *redis.Client
	client  *clientProc
	targets []*target
	info    machineInfo
	closeCH func() // kills clickhouse-server
	chPid   int
	chDSN   string
}

// run performs a whole bench and writes its report into o.Out.
func run(ctx context.Context, o options) (*report, error) {
	start := time.Now()
	e := &env{o: o}
	defer e.close()
	if err := e.setup(); err != nil {
		return nil, err
	}
	var cells []cell
	for round := range o.Rounds {
		for _, p := range passes(o) {
			if !o.selected(p.ID) {
				continue
			}
			for wi, wl := range workloads {
				for _, t := range rotate(e.targets, round+wi) {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					cellStart := time.Now()
					c, err := e.measure(round, p, wl, t)
					if err != nil {
						return nil, fmt.Errorf("round %d, %s, %s, %s: %w", round+1, p.ID, wl, t.name, err)
					}
					e.logf("round %d  %-7s %-8s %-20s %8.0f req/s  p50 %-9s p99 %-9s (%d requests; cell took %s)",
						round+1, p.ID, wl, t.name, c.Load.RPS(), fmtDur(c.Load.P50), fmtDur(c.Load.P99), c.Load.Requests,
						time.Since(cellStart).Round(time.Millisecond))
					cells = append(cells, c)
				}
			}
		}
	}
	// The share pass needs the client's recorder as the matrix had it, so
	// it comes before the recorder's own measurement replaces it.
	var share []cell
	if o.selected(passShare) {
		var err error
		if share, err = e.runShare(ctx); err != nil {
			return nil, err
		}
	}
	e.logf("waiting for the recorder to write the gate's events")
	caught, err := e.client.call(command{Op: opCaughtUp})
	if err != nil {
		return nil, err
	}
	var pubStats published
	for _, t := range e.targets {
		if t.pub != nil {
			s := t.pub.Stats()
			pubStats = published{Published: s.Published, Dropped: s.Dropped, Queued: s.Queued}
		}
	}
	e.logf("measuring the recorder with %d events", o.RecorderEvents)
	rr, err := e.client.call(command{Op: opRecorderRun, Events: o.RecorderEvents, Probes: o.Probes})
	if err != nil {
		return nil, err
	}
	// Nothing after needs the client process: its idle NATS and recorder
	// would only be one more program on the cores.
	e.client.quit()
	e.client = nil
	var evs *eventsRun
	if o.selected(passEvents) {
		if evs, err = e.runEvents(ctx); err != nil {
			return nil, err
		}
	}
	// The store pass comes last, when the recorder is done: it measures
	// redis-server's CPU, which a busy machine moves less than throughput,
	// but not at all is better.
	var store []storeCell
	if o.selected(passStore) {
		if store, err = e.runStore(ctx); err != nil {
			return nil, err
		}
	}
	var instr []instrCell
	if o.named(passInstructions) {
		if instr, err = e.runInstructions(ctx); err != nil {
			return nil, err
		}
	}
	e.info.LoadEnd = loadAvg()
	e.info.Runtime = time.Since(start)
	rep := newReport(rawResults{Options: o, Info: e.info, Cells: cells, Caught: caught.Caught, Published: pubStats,
		Recorder: rr.Recorder, Store: store, Share: share, Events: evs, Instructions: instr})
	if err := rep.write(o.Out); err != nil {
		return nil, err
	}
	return rep, nil
}

// published sums up the event publisher over the whole run.
type published struct {
	Queued, Published, Dropped uint64
}

func (e *env) logf(format string, args ...any) {
	if e.o.Log != nil {
		fmt.Fprintf(e.o.Log, "bench: "+format+"\n", args...)
	}
}

// setup starts Redis, ClickHouse (schema applied), the client process with
// NATS and the recorder, and the four login servers.
func (e *env) setup() error {
	e.info = collectMachineInfo()
	e.info.LoadStart = loadAvg()
	dir, err := os.MkdirTemp("", "defender-bench-")
	if err != nil {
		return err
	}
	e.dir = dir
	e.logf("starting redis-server and clickhouse-server in %s", dir)
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return err
	}
	if e.redis, err = startRedis(filepath.Join(dir, "redis")); err != nil {
		return err
	}
	ch, err := startClickHouse(filepath.Join(dir, "clickhouse"))
	if err != nil {
		return err
	}
	e.closeCH, e.chPid, e.chDSN = ch.Kill, ch.Pid(), ch.DSN()
	conn, err := record.Open(ch.DSN())
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	if _, err := record.Migrate(ctx, conn); err != nil {
		return fmt.Errorf("clickhouse schema: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&e.info.ClickHouse); err != nil {
		return fmt.Errorf("clickhouse version: %w", err)
	}
	e.ping = redis.NewClient(&redis.Options{Addr: e.redis.Addr, PoolSize: 1})
	if e.info.Redis, err = redisVersion(ctx, e.ping); err != nil {
		return err
	}

	e.logf("starting the client process (load generator, NATS, recorder)")
	var natsURL string
	if e.client, natsURL, err = startClient(os.Stderr); err != nil {
		return err
	}
	if _, err := e.client.call(command{Op: opRecorder, ClickHouse: ch.DSN(), Flush: e.o.RecordFlush}); err != nil {
		return err
	}
	u, err := newUsers()
	if err != nil {
		return err
	}
	for _, name := range configNames {
		t, err := newTarget(name, u, e.redis.Addr, natsURL)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		e.targets = append(e.targets, t)
	}
	return nil
}

func (e *env) close() {
	for _, t := range e.targets {
		if err := t.close(); err != nil {
			e.logf("closing %s: %v", t.name, err)
		}
	}
	if e.client != nil {
		e.client.quit()
	}
	if e.ping != nil {
		e.ping.Close()
	}
	if e.redis != nil {
		e.redis.Kill()
	}
	if e.closeCH != nil {
		e.closeCH()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// measure runs one cell: PING timing, warm-up, then the measured load
// with the server's allocations, Redis scripts and events counted around
// it (outcomes settled before each count).
func (e *env) measure(round int, p pass, wl string, t *target) (cell, error) {
	c := cell{Round: round, Pass: p.ID, Workload: wl, Config: t.name}
	ping, err := e.pingRTT()
	if err != nil {
		return c, err
	}
	c.Ping = ping
	spec := loadSpec{URL: t.url(p.Check), Workload: wl, Concurrency: p.Concurrency, Seed: seed(round, p.ID, wl)}
	if e.o.Warmup > 0 {
		w := spec
		w.Duration, w.Seed = e.o.Warmup, spec.Seed+1
		if _, err := e.client.call(command{Op: opLoad, Load: &w}); err != nil {
			return c, err
		}
	}
	if err := t.flush(); err != nil {
		return c, err
	}
	ctx := context.Background()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0 := ms.Mallocs
	var s0 int
	var u0 int64
	if t.redis != nil {
		if s0, u0, err = scriptStats(ctx, e.ping); err != nil {
			return c, err
		}
	}
	var p0 published
	if t.pub != nil {
		s := t.pub.Stats()
		p0 = published{Published: s.Published, Dropped: s.Dropped}
	}

	spec.Duration = p.Duration
	cpu0 := e.cpu()
	r, err := e.client.call(command{Op: opLoad, Load: &spec})
	if err != nil {
		return c, err
	}
	if err := t.flush(); err != nil {
		return c, err
	}
	time.Sleep(p.Settle)
	c.CPU = e.cpu().sub(cpu0)
	runtime.ReadMemStats(&ms)
	c.Mallocs = ms.Mallocs - m0
	if t.redis != nil {
		s1, u1, err := scriptStats(ctx, e.ping)
		if err != nil {
			return c, err
		}
		c.Scripts, c.ScriptUsec = s1-s0, u1-u0
	}
	if t.pub != nil {
		s := t.pub.Stats()
		c.Published, c.Dropped = s.Published-p0.Published, s.Dropped-p0.Dropped
	}
	c.Load = *r.Load
	if c.Load.Requests == 0 {
		return c, fmt.Errorf("no request answered (%d errors, first: %s)", c.Load.Errors, c.Load.FirstError)
	}
	for status, n := range c.Load.Status {
		if !expectedStatus(wl, t.gate != nil, status) {
			c.Unexpected += n
		}
	}
	return c, nil
}

// cpu reads the CPU times of the run's processes and of the machine.
func (e *env) cpu() cpuTimes {
	return readCPU(e.redis.Pid(), e.chPid, e.client.cmd.Process.Pid)
}

// pingRTT is the median of e.o.Pings sequential PINGs.
func (e *env) pingRTT() (time.Duration, error) {
	ctx := context.Background()
	if err := e.ping.Ping(ctx).Err(); err != nil { // the connection is dialled
		return 0, err
	}
	ds := make([]time.Duration, e.o.Pings)
	for i := range ds {
		t0 := time.Now()
		if err := e.ping.Ping(ctx).Err(); err != nil {
			return 0, fmt.Errorf("ping: %w", err)
		}
		ds[i] = time.Since(t0)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// rotate returns ts starting at index k mod len(ts): each round and
// workload starts with another configuration (contender), so none always
// runs first or last.
func rotate[T any](ts []T, k int) []T {
	k %= len(ts)
	return append(append([]T{}, ts[k:]...), ts[:k]...)
}

// seed is the load's random seed: the same for every configuration of a
// cell, so they answer the same requests.
func seed(round int, passID, wl string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s/%s", round, passID, wl)
	return h.Sum64()
}

func redisVersion(ctx context.Context, c *redis.Client) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("redis info: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("redis info: no redis_version")
}
