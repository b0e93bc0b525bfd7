package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/defender-go/defender/pkg/record"
)

// figures are one (pass, workload, configuration)'s numbers: each the
// median over rounds of that round's value, ratios taken within a round.
type figures struct {
	Rounds int
	RPS    float64
	// Ratio is RPS over the baseline's in the same round and workload.
	Ratio          float64
	P50, P99, P999 time.Duration
	// Scripts is Redis scripts per login and ScriptUs Redis's time in
	// them per login, in µs (NaN without Redis).
	Scripts, ScriptUs float64
	// Allocs is the server's allocations per request.
	Allocs float64
	// AddP50 and AddP99 are the latency added to the baseline's, in Redis
	// PING round trips measured in the same round (NaN for the baseline).
	AddP50, AddP99 float64
	Ping           time.Duration
	Requests       int
	// Unexpected and Errors are summed over rounds.
	Unexpected, Errors int
	// Published and Dropped are events, summed over rounds.
	Published, Dropped uint64
	// CPU per request in µs, by process (see cpuTimes), and Busy the
	// share of the machine's cores that were busy during the cell.
	CPUServer, CPURedis, CPUClient, CPUClickHouse, CPUOthers, CPUMachine, Busy float64
	// CPUOwn is the run's own processes' CPU per request (µs), and
	// CPURatio the baseline's CPUOwn over this one's, in the same round:
	// the share of the baseline's throughput this configuration would
	// keep if its processes had the cores to themselves and used them
	// fully.
	CPUOwn, CPURatio float64
}

type cellKey struct{ Pass, Workload, Config string }

// report is a finished run.
type report struct {
	o        options
	info     machineInfo
	passes   []pass
	cells    []cell
	figs     map[cellKey]*figures
	caught   *caughtUp
	pub      published
	recorder *recorderResult
	// store is the store pass's cells (none when it did not run).
	store []storeCell
}

func newReport(o options, info machineInfo, cells []cell, caught *caughtUp, pub published, rec *recorderResult, store []storeCell) *report {
	r := &report{o: o, info: info, cells: cells, caught: caught, pub: pub, recorder: rec, figs: map[cellKey]*figures{}, store: store}
	for _, p := range passes(o) { // those that ran (see -only)
		if slices.ContainsFunc(cells, func(c cell) bool { return c.Pass == p.ID }) {
			r.passes = append(r.passes, p)
		}
	}
	base := map[[3]any]*cell{} // round, pass, workload → baseline cell
	for i := range cells {
		c := &cells[i]
		if c.Config == cfgBaseline {
			base[[3]any{c.Round, c.Pass, c.Workload}] = c
		}
	}
	type series struct {
		rps, ratio, p50, p99, p999, scripts, scriptUs, allocs, add50, add99, ping, req       []float64
		cpuServer, cpuRedis, cpuClient, cpuCH, cpuOthers, cpuMachine, busy, cpuOwn, cpuRatio []float64
	}
	// The Redis round trip of a round: the median of its cells' PINGs,
	// steadier than one cell's.
	pings := map[int][]float64{}
	for i := range cells {
		pings[cells[i].Round] = append(pings[cells[i].Round], float64(cells[i].Ping))
	}
	roundPing := map[int]float64{}
	for round, ps := range pings {
		roundPing[round] = median(ps)
	}
	all := map[cellKey]*series{}
	for i := range cells {
		c := &cells[i]
		k := cellKey{c.Pass, c.Workload, c.Config}
		s := all[k]
		if s == nil {
			s = &series{}
			all[k] = s
			r.figs[k] = &figures{}
		}
		f := r.figs[k]
		f.Rounds++
		f.Unexpected += c.Unexpected
		f.Errors += c.Load.Errors
		f.Published += c.Published
		f.Dropped += c.Dropped
		n := float64(c.Load.Requests)
		s.rps = append(s.rps, c.Load.RPS())
		s.p50 = append(s.p50, float64(c.Load.P50))
		s.p99 = append(s.p99, float64(c.Load.P99))
		s.p999 = append(s.p999, float64(c.Load.P999))
		s.allocs = append(s.allocs, float64(c.Mallocs)/n)
		s.ping = append(s.ping, roundPing[c.Round])
		s.req = append(s.req, n)
		if c.CPU.Machine > 0 {
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / n }
			s.cpuServer = append(s.cpuServer, us(c.CPU.Server))
			s.cpuRedis = append(s.cpuRedis, us(c.CPU.Redis))
			s.cpuClient = append(s.cpuClient, us(c.CPU.Client))
			s.cpuCH = append(s.cpuCH, us(c.CPU.ClickHouse))
			s.cpuOthers = append(s.cpuOthers, us(c.CPU.Others()))
			s.cpuMachine = append(s.cpuMachine, us(c.CPU.Machine))
			s.busy = append(s.busy, float64(c.CPU.Machine)/float64(c.Load.Elapsed)/float64(r.info.Cores))
			s.cpuOwn = append(s.cpuOwn, us(c.CPU.own()))
			if b := base[[3]any{c.Round, c.Pass, c.Workload}]; b != nil && b.CPU.own() > 0 && c.CPU.own() > 0 {
				own := func(x *cell) float64 { return float64(x.CPU.own()) / float64(x.Load.Requests) }
				s.cpuRatio = append(s.cpuRatio, own(b)/own(c))
			}
		}
		if c.Config == cfgRedis || c.Config == cfgEvents {
			s.scripts = append(s.scripts, float64(c.Scripts)/n)
			s.scriptUs = append(s.scriptUs, float64(c.ScriptUsec)/n)
		}
		if b := base[[3]any{c.Round, c.Pass, c.Workload}]; b != nil && c.Config != cfgBaseline {
			s.ratio = append(s.ratio, c.Load.RPS()/b.Load.RPS())
			s.add50 = append(s.add50, float64(c.Load.P50-b.Load.P50)/roundPing[c.Round])
			s.add99 = append(s.add99, float64(c.Load.P99-b.Load.P99)/roundPing[c.Round])
		}
	}
	for k, s := range all {
		f := r.figs[k]
		f.RPS, f.Ratio = median(s.rps), median(s.ratio)
		if k.Config == cfgBaseline {
			f.Ratio = 1
		}
		f.P50, f.P99, f.P999 = time.Duration(median(s.p50)), time.Duration(median(s.p99)), time.Duration(median(s.p999))
		f.Scripts, f.ScriptUs, f.Allocs = median(s.scripts), median(s.scriptUs), median(s.allocs)
		f.AddP50, f.AddP99 = median(s.add50), median(s.add99)
		f.Ping, f.Requests = time.Duration(median(s.ping)), int(median(s.req))
		f.CPUServer, f.CPURedis, f.CPUClient = median(s.cpuServer), median(s.cpuRedis), median(s.cpuClient)
		f.CPUClickHouse, f.CPUOthers, f.CPUMachine, f.Busy = median(s.cpuCH), median(s.cpuOthers), median(s.cpuMachine), median(s.busy)
		f.CPUOwn, f.CPURatio = median(s.cpuOwn), median(s.cpuRatio)
	}
	return r
}

// clipAt is where a chart's y axis stops so that outliers (the blocked
// workload with bcrypt, a latency spike) leave the other bars readable:
// five times the median bar, unless nothing is that tall.
func clipAt(values [][]float64) float64 {
	var all []float64
	for _, g := range values {
		for _, v := range g {
			if !math.IsNaN(v) {
				all = append(all, v)
			}
		}
	}
	return 5 * median(all)
}

// median of xs; NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *report) fig(pass, wl, cfg string) *figures {
	if f := r.figs[cellKey{pass, wl, cfg}]; f != nil {
		return f
	}
	nan := math.NaN()
	return &figures{RPS: nan, Ratio: nan, Scripts: nan, ScriptUs: nan, Allocs: nan, AddP50: nan, AddP99: nan,
		CPUServer: nan, CPURedis: nan, CPUClient: nan, CPUClickHouse: nan, CPUOthers: nan, CPUMachine: nan, Busy: nan,
		CPUOwn: nan, CPURatio: nan}
}

// target is one of the goals, evaluated.
type targetResult struct {
	Goal, Measured string
	Met            bool
}

func (r *report) targets() []targetResult {
	var ts []targetResult
	ratioTarget := func(pass string, want float64, goal string) {
		worst, at := math.Inf(1), ""
		var parts []string
		for _, wl := range workloads {
			f := r.fig(pass, wl, cfgEvents)
			parts = append(parts, wl+" "+pct(f.Ratio, cfgEvents))
			if f.Ratio < worst || math.IsNaN(f.Ratio) {
				worst, at = f.Ratio, wl
			}
		}
		byCPU := math.Inf(1)
		for _, wl := range workloads {
			byCPU = min(byCPU, r.fig(pass, wl, cfgEvents).CPURatio)
		}
		m := fmt.Sprintf("lowest %.1f%% (%s); %s", 100*worst, at, strings.Join(parts, ", "))
		if !math.IsNaN(byCPU) && !math.IsInf(byCPU, 0) {
			m += fmt.Sprintf("; by CPU (see below) lowest %.1f%%", 100*byCPU)
		}
		ts = append(ts, targetResult{Goal: goal, Measured: m, Met: worst >= want})
	}
	ratioTarget("cheap", 0.70, "gate + Redis + events keeps ≥ 70% of the baseline's throughput in every workload, cheap check")
	ratioTarget("bcrypt", 0.99, "gate + Redis + events keeps ≥ 99% of the baseline's throughput in every workload, bcrypt")

	worst, at := math.Inf(-1), ""
	var parts []string
	for _, wl := range workloads {
		f := r.fig("latency", wl, cfgEvents)
		parts = append(parts, fmt.Sprintf("%s %.2f", wl, f.AddP99))
		if f.AddP99 > worst || math.IsNaN(f.AddP99) {
			worst, at = f.AddP99, wl
		}
	}
	ts = append(ts, targetResult{
		Goal: "added p99 latency within 2 Redis round trips (gate + Redis + events, 1 client)",
		Measured: fmt.Sprintf("highest %.2f × PING (%s); %s; PING %s",
			worst, at, strings.Join(parts, ", "), fmtDur(r.fig("latency", wlFailure, cfgEvents).Ping)),
		Met: worst <= 2,
	})

	met := true
	parts = parts[:0]
	for _, cfg := range configNames[1:] {
		fb, ff := r.fig("cheap", wlBlocked, cfg), r.fig("cheap", wlFailure, cfg)
		lb, lf := r.fig("latency", wlBlocked, cfg), r.fig("latency", wlFailure, cfg)
		ok := fb.RPS >= ff.RPS && lb.P50 <= lf.P50
		met = met && ok
		parts = append(parts, fmt.Sprintf("%s: %s vs %s req/s, p50 %s vs %s (1 client)",
			cfg, si(fb.RPS), si(ff.RPS), fmtDur(lb.P50), fmtDur(lf.P50)))
	}
	ts = append(ts, targetResult{Goal: "the refused path (blocked) is at least as fast as the failure path (throughput and 1-client p50, blocked vs failure)",
		Measured: strings.Join(parts, "; "), Met: met})

	if r.recorder != nil {
		eps := r.recorder.EventsPerSecond()
		ts = append(ts, targetResult{Goal: "the recorder sustains ≥ 100,000 events/s",
			Measured: fmt.Sprintf("%.0f events/s (%d events in %s)", eps, r.recorder.Events, fmtDur(r.recorder.Elapsed)),
			Met:      eps >= 100_000})
	}
	return ts
}

// rawResults is everything a report is made of. It is saved beside the
// report as results.json, so that the report and charts can be written
// again (-rerender) without measuring again.
type rawResults struct {
	Options   options
	Info      machineInfo
	Cells     []cell
	Caught    *caughtUp
	Published published
	Recorder  *recorderResult
	// Store is the store pass's cells; missing in results saved before
	// the pass existed, which then report it as not run.
	Store []storeCell `json:",omitempty"`
}

const rawFile = "results.json"

// rerenderReport rewrites RESULTS.md and the charts in dir from its results.json.
func rerenderReport(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, rawFile))
	if err != nil {
		return err
	}
	var raw rawResults
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%s: %w", rawFile, err)
	}
	return newReport(raw.Options, raw.Info, raw.Cells, raw.Caught, raw.Published, raw.Recorder, raw.Store).write(dir)
}

// write puts RESULTS.md, the charts and results.json into dir.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(rawResults{Options: r.o, Info: r.info, Cells: r.cells, Caught: r.caught, Published: r.pub, Recorder: r.recorder, Store: r.store}, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, rawFile), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	for name, svg := range r.charts() {
		if err := os.WriteFile(filepath.Join(dir, name), svg, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), r.markdown(), 0o644)
}

// Chart file names.
const (
	chartCheap   = "throughput-cheap.svg"
	chartBcrypt  = "throughput-bcrypt.svg"
	chartLatency = "latency-p99.svg"
)

func (r *report) charts() map[string][]byte {
	throughput := func(pass, title string) []byte {
		c := &barChart{
			Title:    title,
			Subtitle: fmt.Sprintf("requests per second, median of %d rounds; the second figure is the share of the no-gate baseline", r.o.Rounds),
			YLabel:   "requests / s",
			Groups:   workloads,
			Series:   configNames,
			Tick:     tick,
		}
		for _, wl := range workloads {
			var vs []float64
			var ls []string
			for _, cfg := range configNames {
				f := r.fig(pass, wl, cfg)
				vs = append(vs, f.RPS)
				share := fmt.Sprintf("%.0f%%", 100*f.Ratio)
				if f.Ratio >= 10 {
					share = fmt.Sprintf("%.0f×", f.Ratio)
				}
				ls = append(ls, si(f.RPS)+"\n"+share)
			}
			c.Values, c.Labels = append(c.Values, vs), append(c.Labels, ls)
		}
		c.ClipAt = clipAt(c.Values)
		return c.SVG()
	}
	lat := &barChart{
		Title:    "p99 latency, one client, cheap password check",
		Subtitle: fmt.Sprintf("median of %d rounds; the second figure is the p99 added to the baseline's, in Redis round trips (PING %s)", r.o.Rounds, fmtDur(r.fig("latency", wlFailure, cfgRedis).Ping)),
		YLabel:   "p99 latency (µs)",
		Groups:   workloads,
		Series:   configNames,
		Tick:     tick,
	}
	for _, wl := range workloads {
		var vs []float64
		var ls []string
		for _, cfg := range configNames {
			f := r.fig("latency", wl, cfg)
			us := float64(f.P99) / float64(time.Microsecond)
			vs = append(vs, us)
			l := fmt.Sprintf("%.0f", us)
			if cfg != cfgBaseline {
				l += fmt.Sprintf("\n%+.1f×", f.AddP99)
			} else {
				l += "\n "
			}
			ls = append(ls, l)
		}
		lat.Values, lat.Labels = append(lat.Values, vs), append(lat.Labels, ls)
	}
	lat.ClipAt = clipAt(lat.Values)
	return map[string][]byte{
		chartCheap:   throughput("cheap", fmt.Sprintf("Login throughput, cheap password check, %d clients", r.o.Concurrency)),
		chartBcrypt:  throughput("bcrypt", fmt.Sprintf("Login throughput, bcrypt cost %d, %d clients", bcryptCost, r.o.Concurrency)),
		chartLatency: lat.SVG(),
	}
}

func (r *report) markdown() []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	in := r.info
	p("# defender bench results")
	p("")
	if r.o.Quick {
		p("> **Quick mode**: every cell ran for a fraction of a second to prove the bench works. These numbers mean nothing.")
		p("")
	}
	p("Written by `go run ./bench` (see [README.md](README.md)) on %s; the run took %s.",
		in.Started.UTC().Format("2006-01-02 15:04 MST"), in.Runtime.Round(time.Second))
	p("Every figure is the median over %d rounds; ratios and added latencies are taken within a round, against the no-gate baseline of that round.", r.o.Rounds)
	p("")
	p("## Targets")
	p("")
	p("| target | measured | met |")
	p("|---|---|---|")
	for _, t := range r.targets() {
		met := "**not met**"
		if t.Met {
			met = "met"
		}
		p("| %s | %s | %s |", t.Goal, t.Measured, met)
	}
	p("")
	r.analysis(p)
	p("![throughput, cheap check](%s)", chartCheap)
	p("")
	p("![throughput, bcrypt](%s)", chartBcrypt)
	p("")
	p("![p99 latency, one client](%s)", chartLatency)
	p("")
	p("## How it was measured")
	p("")
	p("- **Machine**: %s, %d cores, %.0f GiB; %s, Linux %s; %s; redis-server %s; clickhouse-server %s.",
		in.CPU, in.Cores, in.MemoryGiB, in.OS, in.Kernel, in.Go, in.Redis, in.ClickHouse)
	p("- **Load average** (1, 5, 15 min) at the start: %s; at the end: %s. The machine is shared: other processes competed for the same cores, which is one reason every cell runs %d times in interleaved order.", in.LoadStart, in.LoadEnd, r.o.Rounds)
	p("- **Everything on one machine**: the login server (this process), the load generator, the embedded NATS server and the recorder (a second process), redis-server and clickhouse-server share the %d cores, so every part that is switched on takes CPU from the login server.", in.Cores)
	p("- **Login application**: the same `net/http` handler in every configuration: a form POST, a user table of %d users, the password compared with `subtle.ConstantTimeCompare` (cheap) or `bcrypt.CompareHashAndPassword` at cost %d; success is a 302 with a session cookie, failure the form again (200). Gated configurations wrap it in `gate.Middleware` (one store round trip before the handler, the outcome settled in the background) with the default configuration, except failure limits of 1,000,000 so that nothing blocks by itself, and `DEFENDER_BEHIND_REVERSE_PROXY` with `DEFENDER_TRUSTED_PROXIES=127.0.0.0/8`: each request's client address comes from `X-Forwarded-For`.", numUsers, bcryptCost)
	p("- **Configurations**: *%s* (the handler alone); *%s* (`gate.NewMemoryStore`); *%s* (`gate.NewRedisStore`, go-redis, local redis-server); *%s* (the same plus `events.Publisher` to an embedded NATS JetStream server, and `record.Recorder` with %s writing the events into ClickHouse while the load runs).", cfgBaseline, cfgMemory, cfgRedis, cfgEvents, recorderSettings(r.o.RecordFlush))
	p("- **Workloads**: *success* (right password, random user of %d, random IP of %d); *mixed* (half of them wrong); *failure* (all wrong: the counting path); *blocked* (all wrong, from %d IPs blocked by hand before the run: every attempt is refused before the password check; without a gate they are plain failures).", numUsers, numIPs, numBlockedIPs)
	p("- **Load generator**: %d clients (goroutines in the second process), each with its own keep-alive connection, sending the next request as soon as the previous answer is read; a cell sends the same pseudo-random sequence to every configuration. Latency is from sending to reading the whole answer; every sample is kept and sorted (p50, p99, p99.9 by nearest rank). Requests per second = the sum over clients of the client's answers / (start to its last answer): each client's own rate, so the tail after the deadline, where fewer clients still wait for an answer, does not dilute it (with bcrypt that tail is up to a tenth of a cell).", r.o.Concurrency)
	p("- **Passes**: cheap check with %d clients for %s per cell; bcrypt with %d clients for %s per cell; cheap check with 1 client for %s per cell (latency without queueing: with %d clients on %d cores, latency is mostly waiting for a CPU). Every cell is preceded by %s of unmeasured warm-up. Order: round → pass → workload → the four configurations, rotated by one each time.",
		r.o.Concurrency, r.o.Duration, r.o.Concurrency, r.o.BcryptDuration, r.o.LatencyDuration, r.o.Concurrency, in.Cores, r.o.Warmup)
	p("- **Redis scripts per login**: INFO commandstats' `eval` + `evalsha` + `evalsha_ro` calls before and after the cell (after `Gate.Flush`, so background outcomes are in), divided by requests. (Commands run inside the scripts are counted by commandstats too, and are left out.) One of them is on the login's critical path (Begin); the outcome is written after the answer. *Redis µs / login* is the same lines' `usec`: the time redis-server spent running the scripts, per login.")
	p("- **Allocations per request**: `runtime.MemStats.Mallocs` of the login server's process over the cell (after `Gate.Flush`) / requests; the load generator, NATS and the recorder live in the other process and are not counted. The event publisher is.")
	p("- **Added latency**: the cell's p50 (p99) minus the baseline's in the same round and workload, divided by the Redis round trip of that round: %d sequential PINGs (go-redis, from the login server's process) are timed before every cell, and the round's figure is the median of those cells' medians.", r.o.Pings)
	p("")
	for _, ps := range r.passes {
		p("## %s", capitalize(ps.Title))
		p("")
		p("| workload | configuration | req/s | vs no gate | p50 | p99 | p99.9 | added p50 (× PING) | added p99 (× PING) | Redis scripts / login | Redis µs / login | allocs / request | requests |")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, wl := range workloads {
			for _, cfg := range configNames {
				f := r.fig(ps.ID, wl, cfg)
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %d |", wl, cfg,
					fmtRate(f.RPS), pct(f.Ratio, cfg), fmtDur(f.P50), fmtDur(f.P99), fmtDur(f.P999),
					times(f.AddP50, cfg), times(f.AddP99, cfg), num(f.Scripts), num(f.ScriptUs), f.Allocs, f.Requests)
			}
		}
		p("")
	}
	for _, ps := range r.passes {
		if ps.Concurrency == 1 {
			continue // one client leaves the cores mostly idle: CPU per request says little more
		}
		p("## Where the CPU goes: %s", ps.Title)
		p("")
		p("CPU time (user + system, from `/proc`) per request in µs, by process, from just before a cell's load until its outcomes are settled. *These processes* is their sum, and *vs no gate by CPU* the baseline's sum over this configuration's in the same round: the share of the baseline's throughput the configuration keeps when the cores are all these processes', whatever else runs on the machine. *Other programs* is the machine's busy time minus these processes (colleagues' work on the shared machine); *cores busy* is the machine's busy time over the cell's duration and its %d cores. The events' later path (the recorder's batches into ClickHouse) partly falls after the cell.", in.Cores)
		p("")
		p("| workload | configuration | req/s | vs no gate | login server | redis-server | client (load, NATS, recorder) | clickhouse-server | these processes | vs no gate by CPU | other programs | machine | cores busy |")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, wl := range workloads {
			for _, cfg := range configNames {
				f := r.fig(ps.ID, wl, cfg)
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", wl, cfg, fmtRate(f.RPS), pct(f.Ratio, cfg),
					num1(f.CPUServer), num1(f.CPURedis), num1(f.CPUClient), num1(f.CPUClickHouse), num1(f.CPUOwn), pct(f.CPURatio, cfg),
					num1(f.CPUOthers), num1(f.CPUMachine), pct(f.Busy, ""))
			}
		}
		p("")
	}
	p("## Recorder")
	p("")
	if rec := r.recorder; rec != nil {
		p("- **Sustained rate**: %d events waiting in the stream, written to ClickHouse by a fresh `record.Recorder` (batch %d, flush %s%s) in %s: **%.0f events/s**. The recorder runs in the client process, with the garbage collector target `cmd/recorder` uses (GOGC 400); NATS in the same process, ClickHouse beside it.",
			rec.Events, rec.Batch, rec.Flush, defaultsNote(rec.Batch == record.DefaultBatch && rec.Flush == record.DefaultFlush), fmtDur(rec.Elapsed), rec.EventsPerSecond())
		if len(rec.Lags) > 0 {
			p("- **Publish-to-row lag**: %d probe events published one at a time while %.0f other events/s flowed; the time from publishing to the row answering a `record.CountAttempts` poll (every 5 ms): median %s, max %s. With a light flow a batch waits for the flush interval (%s, `DEFENDER_RECORD_FLUSH`); that sets the lag, not the write.",
				len(rec.Lags), rec.Background, fmtDur(rec.Lags[len(rec.Lags)/2]), fmtDur(rec.Lags[len(rec.Lags)-1]), rec.Flush)
		}
	}
	if c := r.caught; c != nil {
		pending := "and it caught up"
		if c.Pending > 0 {
			pending = fmt.Sprintf("and %d were still pending when the wait gave up", c.Pending)
		}
		p("- **During the matrix** the gate with events queued %d events, JetStream acknowledged %d, %d were dropped (publisher queue full); the recorder wrote %d attempt rows and %d block rows, %s %s after the last cell.",
			r.pub.Queued, r.pub.Published, r.pub.Dropped, c.Attempts, c.Blocks, pending, fmtDur(c.Waited))
	}
	p("")
	p("## Checks")
	p("")
	bad := 0
	for _, ps := range r.passes {
		for _, wl := range workloads {
			for _, cfg := range configNames {
				f := r.fig(ps.ID, wl, cfg)
				if f.Unexpected > 0 || f.Errors > 0 {
					bad++
					p("- %s / %s / %s: %d answers with an unexpected status, %d transport errors.", ps.ID, wl, cfg, f.Unexpected, f.Errors)
				}
			}
		}
	}
	if bad == 0 {
		p("Every answer had the status its workload expects (302 success, 200 failure, 429 refused behind a gate) and no request failed.")
	}
	return b.Bytes()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func fmtRate(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func pct(v float64, cfg string) string {
	if math.IsNaN(v) {
		return "–"
	}
	if cfg == cfgBaseline {
		return "100%"
	}
	if v >= 10 {
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

func times(v float64, cfg string) string {
	if math.IsNaN(v) || cfg == cfgBaseline {
		return "–"
	}
	return fmt.Sprintf("%+.1f", v)
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func num1(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f", v)
}

// fmtDur writes a duration with three significant digits in a fitting unit.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// analysis explains, from the run's own measurements, what bounds the
// throughput and latency targets on this machine.
func (r *report) analysis(p func(string, ...any)) {
	const cheap = "cheap"
	if !slices.ContainsFunc(r.passes, func(ps pass) bool { return ps.ID == cheap }) {
		return
	}
	// The workload where gate + Redis + events keeps the least, by CPU.
	wl := workloads[0]
	for _, w := range workloads {
		if r.fig(cheap, w, cfgEvents).CPURatio < r.fig(cheap, wl, cfgEvents).CPURatio {
			wl = w
		}
	}
	b, m, rd, ev := r.fig(cheap, wl, cfgBaseline), r.fig(cheap, wl, cfgMemory), r.fig(cheap, wl, cfgRedis), r.fig(cheap, wl, cfgEvents)
	if math.IsNaN(b.CPUOwn) || math.IsNaN(ev.CPUOwn) {
		return
	}
	p("### What bounds the throughput target")
	p("")
	p("Measured in this run (cheap password check, %d clients, *%s* workload: the one where gate + Redis + events keeps least by CPU; CPU per request, medians over rounds; see *Where the CPU goes*):", r.o.Concurrency, wl)
	p("")
	p("- *%s*: the run's processes spend **%.0f µs** per request, of which the login server %.0f µs and the client process (the load generator) %.0f µs.", cfgBaseline, b.CPUOwn, b.CPUServer, b.CPUClient)
	p("- *%s*: %.0f µs (%s of the baseline by CPU): the gate's own work in Go costs about %+.0f µs per login.", cfgMemory, m.CPUOwn, pct(m.CPURatio, cfgMemory), m.CPUServer-b.CPUServer)
	p("- *%s*: %.0f µs (%s): redis-server %.0f µs per login (%.2f scripts, %.0f µs inside them by INFO commandstats), the login server %+.0f µs over the baseline (%+.0f µs over the in-memory gate: the round trip through go-redis and the kernel's loopback TCP, and writing the outcomes in the background), the client %+.0f µs (it sends the same requests, but waits longer for each answer, and every wake-up costs CPU).",
		cfgRedis, rd.CPUOwn, pct(rd.CPURatio, cfgRedis), rd.CPURedis, rd.Scripts, rd.ScriptUs, rd.CPUServer-b.CPUServer, rd.CPUServer-m.CPUServer, rd.CPUClient-b.CPUClient)
	p("- *%s*: %.0f µs (%s): on top of that the publisher in the login server %+.0f µs, NATS JetStream and the recorder in the client process %+.0f µs, clickhouse-server %.0f µs.",
		cfgEvents, ev.CPUOwn, pct(ev.CPURatio, cfgEvents), ev.CPUServer-rd.CPUServer, ev.CPUClient-rd.CPUClient, ev.CPUClickHouse)
	budget := b.CPUOwn/0.7 - b.CPUOwn
	p("")
	bc := math.Inf(1)
	for _, w := range workloads[:3] { // blocked skips bcrypt behind a gate
		bc = min(bc, r.fig("bcrypt", w, cfgEvents).CPURatio)
	}
	bcrypt := "next to a real password hash it is small (see the bcrypt pass)"
	if !math.IsNaN(bc) && !math.IsInf(bc, 0) {
		bcrypt = fmt.Sprintf("with bcrypt (cost %d) the same pipeline keeps at least %.1f%% of the baseline by CPU (success, mixed and failure workloads)", bcryptCost, 100*bc)
	}
	p("Keeping 70%% of the baseline leaves the whole pipeline %.0f µs of CPU per login (the baseline's %.0f µs / 0.7 − %.0f µs) on these %d cores. Redis's two scripts alone take %.0f µs of redis-server's CPU per login, %.1f× that budget, before the login server, NATS and ClickHouse do anything: the baseline's handler does a map lookup and a constant-time compare, so any networked store costs a multiple of it, while %s. For a handler this cheap the ≥ 70%% target is out of reach on this machine: it would need a baseline of at least %.0f µs of CPU per request (7/3 of the %.0f µs that gate + Redis + events add).",
		budget, b.CPUOwn, b.CPUOwn, r.info.Cores, rd.CPURedis, rd.CPURedis/budget, bcrypt, (ev.CPUOwn-b.CPUOwn)*7/3, ev.CPUOwn-b.CPUOwn)
	r.bcryptBound(p)
	lat := r.fig("latency", wlFailure, cfgEvents)
	lr := r.fig("latency", wlFailure, cfgRedis)
	if !math.IsNaN(lat.AddP50) && lat.Ping > 0 {
		ping := float64(lat.Ping) / float64(time.Microsecond)
		p("")
		p("### What bounds the latency target")
		p("")
		p("With one client the gate puts one Redis round trip (Begin) on a login's path. A PING from the login server takes %s; Redis spends %.0f µs per login in its scripts (%.2f scripts, %.1f PINGs of work; Begin is the larger one), and the login process adds go-redis's encoding, the loopback TCP write and the wake-up of the waiting goroutine. Measured here (failure workload): the gate with Redis adds %+.1f PINGs at p50 and %+.1f at p99, with events %+.1f and %+.1f. The p99 also holds the background work of the previous login (its outcome's Finish and event) that competes for the same two cores.",
			fmtDur(lat.Ping), lr.ScriptUs, lr.Scripts, lr.ScriptUs/ping, lr.AddP50, lr.AddP99, lat.AddP50, lat.AddP99)
	}
	p("")
}

// bcryptBound explains, from the bcrypt pass's CPU table, where gate +
// Redis + events spends the CPU that separates it from the baseline.
func (r *report) bcryptBound(p func(string, ...any)) {
	wl, worst := "", math.Inf(1)
	for _, w := range workloads[:3] { // blocked skips bcrypt behind a gate
		if f := r.fig("bcrypt", w, cfgEvents); f.CPURatio < worst {
			wl, worst = w, f.CPURatio
		}
	}
	if wl == "" || math.IsInf(worst, 0) || math.IsNaN(worst) {
		return
	}
	b, ev := r.fig("bcrypt", wl, cfgBaseline), r.fig("bcrypt", wl, cfgEvents)
	p("")
	p("### What bounds the bcrypt target")
	p("")
	n := ev.RPS * r.o.BcryptDuration.Seconds()
	p("With bcrypt (cost %d) a login costs about %.0f µs of CPU, so ≥ 99%% leaves the pipeline %.0f µs per login. In the *%s* workload (the lowest by CPU) the medians of the table below give gate + Redis + events %+.0f µs per login over the baseline, %.1f%% of it by CPU: the login server %+.0f µs, redis-server %+.0f µs, the client process (load generator, NATS JetStream, the recorder) %+.0f µs and clickhouse-server %+.0f µs. The target's figure is the median of each round's own ratio, %.1f%%: a bcrypt cell holds about %.0f logins (%.0f/s for %s), so one login more or less moves a round's ratio by %.1f%%, and the few background tasks (a recorder batch: at %.0f logins/s one insert of about %.0f rows per `DEFENDER_RECORD_FLUSH`, each a new ClickHouse part whatever its size) fall into one cell or the next. On this machine ClickHouse and NATS share the login server's 2 cores; in production they run on their own hosts.",
		bcryptCost, b.CPUOwn, b.CPUOwn/99, wl, ev.CPUOwn-b.CPUOwn, 100*b.CPUOwn/ev.CPUOwn, ev.CPUServer-b.CPUServer, ev.CPURedis-b.CPURedis, ev.CPUClient-b.CPUClient,
		ev.CPUClickHouse-b.CPUClickHouse, 100*worst, n, ev.RPS, r.o.BcryptDuration, 100/max(n, 1), ev.RPS, ev.RPS*recordFlush(r.o.RecordFlush).Seconds())
}

// recordFlush is the recorders' flush interval for a RecordFlush option
// (0, also in results saved before the flag existed: the default).
func recordFlush(d time.Duration) time.Duration {
	if d <= 0 {
		return record.DefaultFlush
	}
	return d
}

// recorderSettings says how the gate's recorder was set up.
func recorderSettings(flush time.Duration) string {
	if flush <= 0 || flush == record.DefaultFlush {
		return "its defaults"
	}
	return fmt.Sprintf("its defaults but a flush interval of %s (`-record-flush`, `DEFENDER_RECORD_FLUSH`)", flush)
}

func defaultsNote(defaults bool) string {
	if defaults {
		return ": the defaults"
	}
	return ""
}
