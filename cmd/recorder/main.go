// Command recorder writes defender's events from NATS JetStream into
// ClickHouse (package record), and maintains the ClickHouse side.
//
//	recorder [flags]          run: apply migrations, then record until SIGTERM
//	recorder migrate [flags]  apply the schema migrations and exit
//	recorder cleanup [flags]  remove attempts older than DEFENDER_ACCESS_ATTEMPT_EXPIRATION
//
// Every setting is an environment variable and a flag of the same meaning
// (recorder -h lists them). A bad value stops the program at start with a
// message naming the variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

func main() {
	slog.SetDefault(service.Logger(os.Stderr, slog.LevelInfo, "recorder"))
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGOGC)
	}
	os.Exit(Main(os.Args[1:], os.LookupEnv))
}

// defaultGOGC is the recorder's garbage collector target when GOGC is not
// set. Its live heap is small (the batches in hand) and its garbage is
// decoded events, so collecting less often buys throughput for little
// memory: BenchmarkRecorderThroughput moves about 9% more events per
// second at 400 than at Go's 100 (107-110k against 98-102k in one run).
const defaultGOGC = 400

// commandsUsage heads the -h and help text.
const commandsUsage = `Usage: recorder [command] [flags]

Commands:
  run      move events from NATS JetStream into ClickHouse until SIGTERM (the default)
  migrate  apply the schema migrations to ClickHouse and exit
  cleanup  delete attempts older than DEFENDER_ACCESS_ATTEMPT_EXPIRATION and exit (for a daily cron)
  help     this text

Every flag can be given as the environment variable it names:
`

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitConfig = 2
)

// Main runs the command line args with the environment env and returns
// the exit code.
func Main(args []string, env func(string) (string, bool)) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	help := cmd == "help"
	switch cmd {
	case "run", "migrate", "cleanup":
	case "help":
		cmd = "run"
	default:
		fmt.Fprintf(os.Stderr, "recorder: unknown command %q (run, migrate, cleanup, help)\n", cmd)
		return exitConfig
	}
	fs := flag.NewFlagSet("recorder "+cmd, flag.ContinueOnError)
	lookup := envflag.Bind(fs, vars, env)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), commandsUsage)
		fs.PrintDefaults()
	}
	if help {
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return exitOK
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "recorder %s: unexpected arguments %q\n", cmd, fs.Args())
		return exitConfig
	}
	cfg, err := FromEnv(lookup, cmd == "run")
	if err != nil {
		fmt.Fprintf(os.Stderr, "recorder: bad configuration:\n%v\n", err)
		return exitConfig
	}

	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	switch cmd {
	case "migrate":
		err = migrate(ctx, cfg)
	case "cleanup":
		err = cleanup(ctx, cfg)
	default:
		err = serve(ctx, cfg)
	}
	if err != nil {
		slog.Error("recorder failed", "command", cmd, "err", err)
		return exitFailed
	}
	return exitOK
}

// openMigrated opens ClickHouse and applies the migrations, retrying while
// ClickHouse is unreachable if wait is set (so start order does not
// matter), until ctx ends.
func openMigrated(ctx context.Context, cfg Config, wait bool) (driver.Conn, error) {
	conn, err := record.Open(cfg.ClickHouseURL)
	if err != nil {
		return nil, err
	}
	delay := 200 * time.Millisecond
	for {
		_, err := record.Migrate(ctx, conn)
		if err == nil {
			return conn, nil
		}
		if !wait || ctx.Err() != nil {
			conn.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
		slog.Warn("clickhouse not ready, retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func migrate(ctx context.Context, cfg Config) error {
	conn, err := openMigrated(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied, err := record.AppliedMigrations(ctx, conn)
	if err != nil {
		return err
	}
	fmt.Printf("schema up to date: versions %v applied\n", applied)
	return nil
}

func cleanup(ctx context.Context, cfg Config) error {
	conn, err := openMigrated(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Println("Starting clean up of defender attempts")
	rep, err := record.Cleanup(ctx, conn, cfg.Expiration)
	if err != nil {
		return err
	}
	slog.Info("cleanup done", "cutoff", rep.Cutoff, "removed", rep.Removed,
		"dropped_partitions", rep.DroppedPartitions, "mutated", rep.Mutated)
	fmt.Printf("Finished. Removed %d attempt entries.\n", rep.Removed)
	return nil
}

// serve records until ctx ends, with /metrics and /healthz.
func serve(ctx context.Context, cfg Config) error {
	reg := service.Registry()
	ln, err := service.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// /healthz answers 503 until the recorder records: compose and
	// scripts/stack.sh start the admin once it is healthy, because it is
	// the recorder that creates the schema the admin reads. Afterwards it
	// answers 200 for as long as the process lives: outages of NATS or
	// ClickHouse are retried and logged, and a restart would not help.
	var health service.Health
	health.WaitFor("NATS (DEFENDER_NATS_URL)")
	mux.Handle("GET /healthz", &health)
	// Served from the start, while NATS and ClickHouse are awaited.
	hctx, stopHTTP := context.WithCancel(ctx)
	var httpErr error
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		hs := service.NewServer(mux, slog.Default())
		hs.ReadHeaderTimeout = 5 * time.Second
		httpErr = service.HTTP{Server: hs, Listener: ln, Timeout: 5 * time.Second}.Run(hctx)
	}()
	defer func() {
		stopHTTP()
		<-httpDone
	}()
	slog.Info("serving metrics", "addr", ln.Addr().String())

	nc, js, err := events.Connect(ctx, cfg.Events.NATSURL, "defender-recorder")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("DEFENDER_NATS_URL: %w", err)
	}
	defer nc.Close()
	// Refused at once, before anything is created on it: an older server
	// would have the recorder retry its consumer for ever.
	if err := record.ServerNeed.Check(nc); err != nil {
		return fmt.Errorf("DEFENDER_NATS_URL: %w", err)
	}
	health.WaitFor("the " + events.StreamName + " stream")
	if err := events.AwaitStream(ctx, js, cfg.Events.Stream(), slog.Default()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	health.WaitFor("ClickHouse (DEFENDER_CLICKHOUSE_URL) and its schema")
	conn, err := openMigrated(ctx, cfg, true)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer conn.Close()

	rec, err := record.New(js, conn, record.Options{
		Subjects:   cfg.Events.Subjects(),
		Batch:      cfg.Batch,
		Flush:      cfg.Flush,
		AckWait:    cfg.AckWait,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	slog.Info("recording", "nats", nc.ConnectedUrlRedacted(), "batch", cfg.Batch, "flush", cfg.Flush)
	health.Ready()

	var g run.Group
	rctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return rec.Run(rctx) }, func(error) { cancel() })
	g.Add(func() error { <-httpDone; return httpErr }, func(error) { stopHTTP() })
	err = g.Run()
	if err == nil {
		slog.Info("stopped cleanly")
	}
	// Let the last acks reach NATS before the connection goes.
	_ = nc.Drain()
	return err
}
