// Command gate is defender's gate as an HTTP/JSON service, for login
// handlers in any language: POST /v1/check, POST /v1/attempts (one call,
// or two phases with POST /v1/attempts/{token}), GET /healthz and GET
// /metrics (see internal/gatesvc for the API).
//
// It counts failures in Redis (DEFENDER_REDIS_URL, shared by any number
// of instances) or in its own memory (one instance only), and publishes
// attempt and block events on NATS JetStream: to DEFENDER_NATS_URL, or
// to a NATS server it embeds (DEFENDER_NATS_LISTEN) that the recorder and
// the admin connect to.
//
// Every setting is an environment variable and a flag of the same
// meaning (gate -h lists them); a bad value stops it at start with exit
// status 2. SIGTERM or SIGINT stops accepting requests, drains those in
// flight, then flushes the events.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/gatesvc"
	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/sharedip"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stderr, os.LookupEnv))
}

const usage = `usage: gate [flags]

The gate service: JSON over HTTP in front of defender's brute-force gate.
Every flag is also an environment variable (shown beside it); a flag wins.

`

// cli parses the command line and runs the service, returning the exit
// status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a bad
// setting or flag.
func cli(args []string, stderr io.Writer, env func(string) (string, bool)) int {
	fs := flag.NewFlagSet("gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lookup := envflag.Bind(fs, vars(), env)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gate: unexpected arguments %q (settings are flags or environment variables; see gate -h)\n", fs.Args())
		return 2
	}
	cfg, err := loadConfig(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "gate: bad configuration:\n%v\n", err)
		return 2
	}
	log := service.Logger(stderr, cfg.LogLevel, "defender-gate")
	slog.SetDefault(log)
	redis.SetLogger(service.PrintfLogger{Log: log.With("component", "redis"), Level: slog.LevelWarn})
	if err := serve(cfg, log); err != nil {
		var bad badConfig
		if errors.As(err, &bad) {
			fmt.Fprintf(stderr, "gate: bad configuration:\n%v\n", err)
			return 2
		}
		log.Error("gate stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the service until SIGTERM or SIGINT, then shuts down in
// order: HTTP (drain in-flight requests), gate, events, NATS, store.
func serve(cfg Config, log *slog.Logger) error {
	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	reg := service.Registry()

	store, health, closeStore, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()

	ev, err := openEvents(ctx, cfg, log, reg)
	if err != nil {
		if ctx.Err() != nil { // SIGTERM while NATS was awaited: stopped as asked
			log.Info("gate stopped before it started", "err", err)
			return nil
		}
		return err
	}
	defer ev.close(log)

	// The lists of shared addresses: files and caches now (a bad one stops
	// the start), URLs by Run below, which keeps the last good lists.
	lists, err := sharedip.New(cfg.Shared, sharedip.WithLogger(log))
	if err != nil {
		return badConfig{err}
	}
	reg.MustRegister(lists.Collectors()...)
	g, err := gate.New(cfg.Gate, store, gate.WithEmitter(ev.pub), gate.WithRegisterer(reg), gate.WithLogger(log),
		gate.WithSharedLists(lists))
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	key := cfg.TokenSecret
	if key == nil {
		key = gatesvc.RandomKey()
		log.Warn("DEFENDER_TOKEN_SECRET is not set: two-phase tokens are signed with a random key and work on this instance only; set the same secret on every instance")
	}
	if cfg.APIKey == "" {
		log.Info("DEFENDER_API_KEY is not set: anyone who reaches the service can report attempts; keep it on a private network or set a key")
	}
	srv, err := gatesvc.New(gatesvc.Options{
		Gate: g, Tokens: gatesvc.NewTokens(key, nil), Health: health, Logger: log, Registerer: reg, APIKey: cfg.APIKey,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}),
	})
	if err != nil {
		return err
	}
	ln, err := service.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	hs := service.NewServer(srv, log)
	hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout = 5*time.Second, 15*time.Second, 15*time.Second
	hs.MaxHeaderBytes = 64 << 10

	// The HTTP actor returns only once requests have drained and the gate
	// has closed.
	var group run.Group
	hctx, stopHTTP := context.WithCancel(ctx)
	group.Add(func() error {
		log.Info("gate listening", "addr", ln.Addr().String(), "fail_mode", string(cfg.Gate.FailMode))
		err := service.HTTP{Server: hs, Listener: ln, Timeout: cfg.ShutdownTimeout, Log: log,
			Drained: func(ctx context.Context) {
				if err := g.Close(ctx); err != nil {
					log.Warn("gate close", "err", err)
				}
			}}.Run(hctx)
		if errors.Is(err, service.ErrShutdownTimeout) {
			log.Warn("requests still in flight at the shutdown deadline; closed their connections", "err", err)
			return nil
		}
		return err
	}, func(error) { stopHTTP() })
	// The lists' refresh: Run returns only once its context ends, which
	// only the group's interrupt does: an actor that returned on SIGTERM
	// would interrupt the publisher while requests are still draining.
	lctx, stopLists := context.WithCancel(context.WithoutCancel(ctx))
	group.Add(func() error { return lists.Run(lctx) }, func(error) { stopLists() })
	err = group.Run()
	// Requests have drained and the gate has closed: the publisher
	// flushes everything they emitted.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.FlushTimeout)
	defer cancel()
	pubErr := ev.pub.Close(fctx)
	st := ev.pub.Stats()
	log.Info("gate stopped", "events_published", st.Published, "events_dropped", st.Dropped, "events_unsent", st.Unsent)
	return errors.Join(err, pubErr)
}

// badConfig marks a setting found unusable only when used (exit status 2).
type badConfig struct{ error }

func (b badConfig) Unwrap() error { return b.error }

// openStore returns the Redis store when DEFENDER_REDIS_URL is set (one
// Redis, a cluster or a Sentinel-watched master, see gate.OpenRedisStore),
// else the in-memory one, with its health check and its closer.
func openStore(cfg Config, log *slog.Logger) (gate.Store, func(context.Context) error, func(), error) {
	if cfg.Gate.RedisURL == "" {
		log.Warn("counting failures in memory: this instance only, lost at restart; set DEFENDER_REDIS_URL to share them between instances",
			"store", "memory", "max_entries", cfg.Gate.MemoryMaxEntries)
		m := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Gate.Policy(), MaxEntries: cfg.Gate.MemoryMaxEntries, MaxBytes: cfg.Gate.MemoryMaxBytes})
		return m, nil, func() { _ = m.Close() }, nil
	}
	store, client, err := gate.OpenRedisStore(cfg.Gate)
	if err != nil {
		return nil, nil, nil, badConfig{err}
	}
	pingTimeout := max(cfg.Gate.StoreTimeout, time.Second)
	health := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		if err := client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis ping: %w", err)
		}
		return nil
	}
	log.Info("counting failures in Redis", "store", fmt.Sprintf("%T", store), "timeout", cfg.Gate.StoreTimeout)
	if err := health(context.Background()); err != nil {
		log.Warn("Redis does not answer yet; decisions follow DEFENDER_FAIL_MODE until it does",
			"fail_mode", string(cfg.Gate.FailMode), "err", err)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		if err := gate.CheckRedisMemoryPolicy(ctx, client); err != nil {
			log.Warn("Redis memory policy: blocks may be evicted under a flood of new names", "err", err)
		}
		cancel()
	}
	return store, health, func() { _ = client.Close() }, nil
}

// eventsConn is the event publisher and what it runs on.
type eventsConn struct {
	pub      *events.Publisher
	nc       *nats.Conn
	embedded *server.Server
}

// openEvents connects to DEFENDER_NATS_URL, or starts the embedded NATS
// server, ensures the stream and creates the publisher (not yet running).
func openEvents(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*eventsConn, error) {
	ec := &eventsConn{}
	url := cfg.Events.NATSURL
	if url == "" {
		port := cfg.NATSPort
		if port == 0 {
			port = -1 // events.StartEmbedded: a free port
		}
		// The server's notices (a banner) only at debug level.
		natsMin := slog.LevelWarn
		if cfg.LogLevel <= slog.LevelDebug {
			natsMin = cfg.LogLevel
		}
		natsLog := slog.New(leveled{log.Handler(), natsMin})
		s, err := events.StartEmbedded(events.EmbeddedOptions{Host: cfg.NATSHost, Port: port,
			StoreDir: cfg.NATSStoreDir, Logger: natsLog})
		if err != nil {
			return nil, fmt.Errorf("DEFENDER_NATS_LISTEN: %w", err)
		}
		ec.embedded = s
		url = s.ClientURL()
		log.Info("embedded NATS server started; point the recorder and admin at it with DEFENDER_NATS_URL",
			"nats_url", url, "store_dir", s.StoreDir())
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, js, err := events.Connect(cctx, url, "defender-gate")
	if err != nil {
		ec.close(log)
		return nil, fmt.Errorf("DEFENDER_NATS_URL: %w", err)
	}
	ec.nc = nc
	if _, err := events.EnsureStream(cctx, js, cfg.Events.Stream()); err != nil {
		ec.close(log)
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	ec.pub, err = events.NewPublisher(js, events.PublisherOptions{Subjects: cfg.Events.Subjects(), Gate: name,
		Buffer: cfg.Events.EventBuffer, Logger: log, Registerer: reg})
	if err != nil {
		ec.close(log)
		return nil, err
	}
	if !cfg.Gate.StoreAccessAttempts {
		log.Info("DEFENDER_STORE_ACCESS_ATTEMPTS=false: publishing block events only")
	}
	return ec, nil
}

// close closes the NATS connection, then the embedded server.
func (ec *eventsConn) close(log *slog.Logger) {
	if ec.nc != nil {
		ec.nc.Close()
	}
	if ec.embedded != nil {
		ec.embedded.Shutdown()
		ec.embedded.WaitForShutdown()
		log.Info("embedded NATS server stopped")
	}
}

// leveled raises the minimum level of a handler.
type leveled struct {
	slog.Handler
	min slog.Level
}

func (h leveled) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
