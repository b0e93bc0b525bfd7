// Command bench is defender's load test, the one django-defender's
// documentation planned: the same login application without a gate, with
// the gate on the in-memory store, on Redis, and on Redis with events on
// (NATS JetStream and the recorder writing to ClickHouse), under four
// workloads (all success, mixed, all failures, all from blocked sources),
// with a cheap password check and with bcrypt (cost 10). It starts the
// servers it needs, runs every cell of that matrix in interleaved rounds,
// then the events pipeline's share of a bcrypt login's CPU (the share
// pass), measures the recorder alone, then the events path's CPU per
// event against a floor, each part a process (the events pass), and
// redis-server's CPU per login for the gate's store against
// django-defender's commands and a floor (the store pass), and writes
// RESULTS.md and SVG charts.
//
//	go run ./bench            # full run, ~15 min; writes bench/RESULTS.md and bench/*.svg
//	go run ./bench -quick     # every cell for a fraction of a second; writes to a temp dir
//
// See bench/README.md for what is measured and how.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv(roleEnv) == roleClient {
		os.Exit(clientMain())
	}
	o := defaultOptions()
	flag.BoolVar(&o.Quick, "quick", os.Getenv("BENCH_QUICK") == "1", "run every cell for a fraction of a second, into a temp dir (also BENCH_QUICK=1)")
	flag.StringVar(&o.Out, "out", "", "directory for RESULTS.md and the charts (default: bench/, or a temp dir with -quick)")
	flag.IntVar(&o.Concurrency, "c", o.Concurrency, "concurrent clients (keep-alive connections)")
	flag.DurationVar(&o.Duration, "d", o.Duration, "measured time of a cell with the cheap password check")
	flag.DurationVar(&o.BcryptDuration, "d-bcrypt", o.BcryptDuration, "measured time of a cell with bcrypt")
	flag.DurationVar(&o.LatencyDuration, "d-latency", o.LatencyDuration, "measured time of a cell of the one-client latency pass")
	flag.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured load before every cell")
	flag.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds; every figure is the median over them")
	flag.IntVar(&o.RecorderEvents, "recorder-events", o.RecorderEvents, "events the recorder's throughput is measured with")
	flag.DurationVar(&o.RecordFlush, "record-flush", 0, "how often the recorders take what the stream holds (DEFENDER_RECORD_FLUSH): a longer one trades lag for fewer ClickHouse inserts (default 1s, record.DefaultFlush)")
	flag.IntVar(&o.StoreLogins, "store-logins", o.StoreLogins, "logins per cell of the store pass (Redis CPU per login)")
	flag.IntVar(&o.InstrLogins, "instr-logins", o.InstrLogins, "logins per cell of the instructions pass (redis-server's instructions per login, under valgrind)")
	flag.Var(intList{&o.EventsRates}, "events-rates", "the events pass's offered rates, events per second (comma list)")
	flag.DurationVar(&o.EventsDuration, "d-events", o.EventsDuration, "the events a cell of the events pass sends: this long's worth at its offered rate")
	flag.StringVar(&o.EventsBefore, "events-before", "", "also measure, in the events pass, defender's publisher and recorder at this git revision (the before of a change)")
	flag.DurationVar(&o.ShareDuration, "d-share", o.ShareDuration, "measured time of a cell of the share pass (bcrypt logins with and without events)")
	flag.IntVar(&o.ShareRounds, "share-rounds", o.ShareRounds, "rounds of the share pass; its figure is the median over them (at least 5 for the target)")
	flag.StringVar(&o.Only, "only", "", "run only these passes (comma list of cheap, bcrypt, latency, share, events, store, instructions), for trying a change; the report then misses the others (instructions runs only when named here: it needs valgrind)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the login server's process (the gate's side) to this file")
	rerender := flag.Bool("rerender", false, "measure nothing: write RESULTS.md and the charts again from the results.json in -out")
	flag.Parse()
	if o.Quick {
		o = quickOptions(o)
	}
	if o.Out == "" {
		if o.Quick {
			dir, err := os.MkdirTemp("", "defender-bench-")
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				os.Exit(1)
			}
			o.Out = dir
		} else {
			o.Out = defaultOut()
		}
	}
	o.Log = os.Stderr
	if *rerender {
		if err := rerenderReport(o.Out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	// The libraries log connection changes at shutdown; only errors matter here.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "bench: wrote", filepath.Join(o.Out, "RESULTS.md"))
}

// options of a run.
type options struct {
	Quick bool
	// Out is where RESULTS.md and the charts go.
	Out string
	// Concurrency is the number of clients of the throughput passes.
	Concurrency int
	// Duration, BcryptDuration and LatencyDuration are the measured time
	// of one cell of each pass; Warmup precedes every cell, unmeasured.
	Duration, BcryptDuration, LatencyDuration, Warmup time.Duration
	// Rounds repeats the whole matrix; figures are medians over rounds.
	Rounds int
	// RecorderEvents and Probes size the recorder's own measurement.
	RecorderEvents, Probes int
	// RecordFlush is the recorders' DEFENDER_RECORD_FLUSH; 0 for
	// record.DefaultFlush.
	RecordFlush time.Duration
	// Pings is the number of PINGs timed before every cell.
	Pings int
	// StoreLogins is the logins of one cell of the store pass: a count,
	// not a time, so that every contender does the same work.
	StoreLogins int
	// InstrLogins is the logins of one cell of the instructions pass,
	// which runs only when -only names it.
	InstrLogins int `json:",omitempty"`
	// EventsRates are the events pass's offered rates (events a second),
	// and EventsDuration the time a cell's events take at that rate.
	EventsRates    []int
	EventsDuration time.Duration
	// EventsBefore is a git revision whose publisher and recorder the
	// events pass measures too ("" for none).
	EventsBefore string `json:",omitempty"`
	// ShareDuration is the measured time of a cell of the share pass, and
	// ShareRounds its rounds (its own, more than Rounds: see share.go).
	ShareDuration time.Duration
	ShareRounds   int
	// Only, when set, lists the passes to run (by ID).
	Only string
	// Log receives progress lines.
	Log io.Writer `json:"-"`
}

func defaultOptions() options {
	return options{
		Concurrency:     16,
		Duration:        2500 * time.Millisecond,
		BcryptDuration:  4 * time.Second,
		LatencyDuration: 1500 * time.Millisecond,
		Warmup:          300 * time.Millisecond,
		Rounds:          3,
		RecorderEvents:  300_000,
		Probes:          10,
		Pings:           300,
		StoreLogins:     30_000,
		InstrLogins:     4_000,
		EventsRates:     []int{2000, 10_000},
		EventsDuration:  10 * time.Second,
		ShareDuration:   15 * time.Second,
		ShareRounds:     5,
	}
}

// quickOptions shrinks a run to seconds: it proves the bench works, and
// its numbers mean nothing.
func quickOptions(o options) options {
	o.Quick = true
	o.Concurrency = 2
	o.Duration, o.BcryptDuration, o.LatencyDuration = 100*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond
	o.Warmup = 0
	o.Rounds = 1
	o.RecorderEvents = 3000
	o.Probes = 1
	o.Pings = 20
	o.StoreLogins = 300
	o.InstrLogins = 100
	o.EventsDuration = 300 * time.Millisecond
	o.ShareDuration = 100 * time.Millisecond
	return o
}

// selected tells whether the pass with this ID runs (see -only).
func (o options) selected(id string) bool {
	return o.Only == "" || o.named(id)
}

// named tells whether -only names the pass with this ID: the passes that
// run only when asked for (instructions).
func (o options) named(id string) bool {
	return slices.Contains(strings.Split(o.Only, ","), id)
}

// intList is a flag of comma-separated positive integers.
type intList struct{ p *[]int }

func (l intList) String() string {
	if l.p == nil {
		return ""
	}
	s := make([]string, len(*l.p))
	for i, v := range *l.p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l intList) Set(v string) error {
	var xs []int
	for _, f := range strings.Split(v, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || x <= 0 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		xs = append(xs, x)
	}
	*l.p = xs
	return nil
}

// defaultOut is bench/ from the repository root, else the current directory.
func defaultOut() string {
	if _, err := os.Stat(filepath.Join("bench", "README.md")); err == nil {
		return "bench"
	}
	return "."
}
