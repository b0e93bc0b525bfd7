// Command notifier subscribes to defender's block events (a durable
// JetStream consumer that any number of instances share) and tells
// people: it mails the user whose username was blocked, with a link that
// lifts the block (served on a public listener of its own, off by
// default), and alerts the admins by signed webhooks. See package
// internal/notify.
//
//	notifier [flags]   run until SIGTERM
//
// Every setting is an environment variable and a flag of the same meaning
// (notifier -h lists them). A bad value stops the program at start with a
// message naming the variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/mail"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

func main() {
	slog.SetDefault(service.Logger(os.Stderr, slog.LevelInfo, "notifier"))
	os.Exit(Main(os.Args[1:], os.LookupEnv))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitConfig = 2
)

const usage = `Usage: notifier [flags]

Mails blocked users and calls the admins' webhooks on block events,
until SIGTERM. Every flag can be given as the environment variable it names:
`

// Main runs the command line args with the environment env and returns
// the exit code.
func Main(args []string, env func(string) (string, bool)) int {
	fs := flag.NewFlagSet("notifier", flag.ContinueOnError)
	lookup := envflag.Bind(fs, vars, env)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "notifier: unexpected arguments %q\n", fs.Args())
		return exitConfig
	}
	cfg, err := FromEnv(lookup)
	if err != nil {
		fmt.Fprintf(os.Stderr, "notifier: bad configuration:\n%v\n", err)
		return exitConfig
	}
	ctx, stop := service.SignalContext(context.Background())
	defer stop()
	if err := serve(ctx, cfg); err != nil {
		slog.Error("notifier failed", "err", err)
		return exitFailed
	}
	return exitOK
}

// serve notifies until ctx ends, with /metrics and /healthz.
func serve(ctx context.Context, cfg Config) error {
	log := slog.Default()
	reg := service.Registry()
	ln, err := service.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	// /healthz answers 503 until the notifier consumes, then 200.
	var health service.Health
	health.WaitFor("NATS (DEFENDER_NATS_URL)")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /healthz", &health)
	var g run.Group
	serveHTTP(&g, ctx, mux, ln, log)
	log.Info("serving metrics", "addr", ln.Addr().String())

	// What needs no server is checked before waiting for one.
	o := notify.Options{Subjects: cfg.Events.Subjects(), Durable: cfg.Durable, AckWait: cfg.AckWait,
		MailToUsername: cfg.MailToUsername, MailEvery: cfg.MailEvery, MailsPerHour: cfg.MailsPerHour,
		Log: log, Registerer: reg}
	if cfg.SMTP.Host != "" {
		cfg.SMTP.Log = log
		if o.Mail, err = mail.NewSender(cfg.SMTP); err != nil {
			return err
		}
		if cfg.Lookup.URL != "" {
			if o.Lookup, err = mail.NewLookup(cfg.Lookup); err != nil {
				return fmt.Errorf("DEFENDER_MAIL_LOOKUP_URL: %w", err)
			}
		}
	}
	o.Links = cfg.links
	var n *notify.Notifier // set below, before any dead letter can come
	if len(cfg.Webhooks) > 0 {
		o.Hooks, err = webhook.New(webhook.Options{Endpoints: cfg.Webhooks, Secrets: cfg.WebhookSecrets,
			Interval: cfg.WebhookInterval, Attempts: cfg.WebhookAttempts, Log: log, Registerer: reg,
			DeadLetter: func(ctx context.Context, dl webhook.DeadLetter) error { return n.DeadLetter(ctx, dl) }})
		if err != nil {
			return fmt.Errorf("DEFENDER_WEBHOOK_URLS: %w", err)
		}
	}

	nc, js, err := events.Connect(ctx, cfg.Events.NATSURL, "defender-notifier")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("DEFENDER_NATS_URL: %w", err)
	}
	defer nc.Close()
	health.WaitFor("the " + events.StreamName + " stream")
	if err := events.AwaitStream(ctx, js, cfg.Events.Stream(), log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if n, err = notify.New(ctx, js, o); err != nil {
		return err
	}
	if o.Hooks != nil {
		hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.Add(func() error { return o.Hooks.Run(hctx) }, func(error) { cancel() })
	}
	if cfg.UnlockAddr != "" {
		closeUnlock, err := serveUnlock(ctx, &g, cfg, js, n, reg, log)
		if err != nil {
			return err
		}
		defer closeUnlock()
	}
	rctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return n.Run(rctx, 10*time.Second) }, func(error) { cancel() })
	if o.Mail == nil && o.Hooks == nil {
		log.Warn("nothing to send: set DEFENDER_SMTP_HOST (with DEFENDER_MAIL_LOOKUP_URL) or DEFENDER_WEBHOOK_URLS; block events are acknowledged unsent")
	}
	log.Info("notifying", "nats", nc.ConnectedUrlRedacted(), "consumer", cfg.Durable,
		"mail", cfg.SMTP.Host != "", "unlock", cfg.UnlockAddr != "", "webhooks", len(cfg.Webhooks))
	health.Ready()
	err = g.Run()
	if err == nil {
		log.Info("stopped cleanly")
	}
	// Let the last acknowledgements reach NATS before the connection goes.
	_ = nc.Drain()
	return err
}

// serveHTTP serves h on ln from now until ctx ends (or the group stops),
// as an actor of g: the metrics and health answer while NATS is awaited.
func serveHTTP(g *run.Group, ctx context.Context, h http.Handler, ln net.Listener, log *slog.Logger) {
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	hs := service.NewServer(h, log)
	go func() { done <- service.HTTP{Server: hs, Listener: ln, Timeout: 5 * time.Second, Log: log}.Run(hctx) }()
	g.Add(func() error { return <-done }, func(error) { cancel() })
}

// serveUnlock serves the unlock page on DEFENDER_UNLOCK_ADDR, lifting
// blocks in the gates' Redis and publishing the unblocks (reason user).
// The returned function closes what it opened, once g has stopped.
func serveUnlock(ctx context.Context, g *run.Group, cfg Config, js jetstream.JetStream, n *notify.Notifier, reg prometheus.Registerer, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", cfg.UnlockAddr)
	if err != nil {
		return nil, fmt.Errorf("DEFENDER_UNLOCK_ADDR: %w", err)
	}
	redis.SetLogger(service.PrintfLogger{Log: log.With("component", "redis"), Level: slog.LevelWarn})
	store, client, err := gate.OpenRedisStore(cfg.Gate)
	if err != nil {
		ln.Close()
		return nil, err
	}
	pub, err := events.NewPublisher(js, events.PublisherOptions{Subjects: cfg.Events.Subjects(), Gate: "notifier", Logger: log, Registerer: reg})
	if err != nil {
		ln.Close()
		client.Close()
		return nil, err
	}
	gt, err := gate.New(cfg.Gate, store, gate.WithEmitter(pub), gate.WithLogger(log))
	closeAll := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if gt != nil {
			if err := gt.Close(cctx); err != nil {
				log.Warn("gate close", "err", err)
			}
		}
		if err := pub.Close(cctx); err != nil {
			log.Warn("unblock events left unpublished", "err", err)
		}
		_ = client.Close()
	}
	if err != nil {
		ln.Close()
		closeAll()
		return nil, err
	}
	serveHTTP(g, ctx, n.UnlockPage(gt), ln, log)
	log.Info("serving the unlock page", "addr", ln.Addr().String(), "url", cfg.UnlockURL)
	return closeAll, nil
}
