// Command admin is defender's operator tool: a web UI and JSON API (admin
// serve) and a CLI over the same stores (admin blocked, block, unblock,
// attempts). It reads blocked state from Redis through the gate library,
// history from ClickHouse, and publishes the blocks and unblocks it makes
// on NATS.
//
// Usage:
//
//	admin [serve]                                  web UI and API on DEFENDER_HTTP_ADDR
//	admin blocked                                  list what is blocked now
//	admin unblock KIND VALUE                       lift a block (KIND: ip, username, pair, spray, spray_net, spray_shared, username_familiar)
//	admin block KIND VALUE [--for 1h | --permanent]
//	admin attempts [--username U] [--ip IP] [--result R] [--observe true|false] [--since 1h] [--until T] [--limit 50]
//
// Every setting is an environment variable and a flag of the same meaning
// (admin help lists them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

func main() {
	// A CLI command's libraries (the NATS connection's lines) warn only,
	// as the command itself does; serve installs its JSON logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := service.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// errUsage marks a command line that cannot work (exit status 2).
var errUsage = errors.New("usage")

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, args, stderr, lookup, nil)
	case "blocked":
		err = cmdBlocked(ctx, args, stdout, stderr, lookup)
	case "reindex":
		err = cmdReindex(ctx, args, stdout, stderr, lookup)
	case "unblock":
		err = cmdUnblock(ctx, args, stdout, stderr, lookup)
	case "block":
		err = cmdBlock(ctx, args, stdout, stderr, lookup)
	case "attempts":
		err = cmdAttempts(ctx, args, stdout, stderr, lookup)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		fs := flag.NewFlagSet("admin", flag.ContinueOnError)
		bindConfig(fs, lookup)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "admin: %v\n\n%s", err, usage)
		return 2
	}
	fmt.Fprintf(stderr, "admin: %v\n", err)
	return 1
}

const usage = `usage:
  admin [serve]                                  web UI and JSON API
  admin blocked                                  list what is blocked now
  admin reindex                                  list blocks set by hand in Redis too
  admin unblock KIND VALUE                       lift a block or clear a report (and forget failures);
                                                 KIND: ip, username, pair, spray, spray_net,
                                                 spray_shared, username_familiar
  admin block KIND VALUE [--for 1h | --permanent]
                                                 block by hand (a kind the gates check)
  admin attempts [--username U] [--ip IP|CIDR] [--result success|failure|blocked]
                 [--observe true|false] [--since 1h] [--until TIME] [--limit 50]
settings (environment variable or flag):
`

// parseArgs parses flags anywhere among the arguments ("block ip X --for 1h")
// and returns the others.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlagSet returns a flag set with the settings' flags bound.
func newFlagSet(name string, stderr io.Writer, lookup func(string) (string, bool)) (*flag.FlagSet, *Config) {
	fs := flag.NewFlagSet("admin "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs, bindConfig(fs, lookup)
}

// cmdServe runs the web UI and API until ctx ends (SIGTERM), then shuts
// down gracefully. ready, if set, receives the listening address.
func cmdServe(ctx context.Context, args []string, stderr io.Writer, lookup func(string) (string, bool), ready chan<- string) error {
	fs, cfg := newFlagSet("serve", stderr, lookup)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, pos)
	}
	if err := cfg.finish(needs{redis: true, clickhouse: true, http: true}); err != nil {
		return err
	}
	log := service.Logger(stderr, slog.LevelInfo, "defender-admin")
	slog.SetDefault(log) // the libraries' lines (the NATS connection's) in the same JSON
	reg := service.Registry()

	d, err := openDeps(ctx, cfg, needs{redis: true, clickhouse: true, shared: true}, log, reg)
	if err != nil {
		if ctx.Err() != nil { // SIGTERM while Redis or NATS was awaited: stopped as asked
			log.Info("admin stopped before it started", "err", err)
			return nil
		}
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		d.Close(cctx, log)
	}()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := d.hist.Ping(pctx); err != nil {
		log.Warn("ClickHouse unavailable: history pages will show errors until it answers", "err", err)
	}
	cancel()

	var live *Live
	var dead func(context.Context) ([]webhook.DeadLetter, error)
	if d.nc != nil {
		if live, err = NewLive(d.nc, events.Subjects{Prefix: cfg.SubjectPrefix}, cfg.Gate.Mode == gate.ModeObserve, log); err != nil {
			return err
		}
		if dead, err = deadLettersOf(d.nc); err != nil {
			return err
		}
	} else {
		log.Warn("DEFENDER_NATS_URL is not set: no live updates on the Blocked page, and blocks and unblocks made here publish no events")
	}
	srv, err := NewServer(ServerOptions{Gate: d.gate, History: d.hist, Live: live, DeadLetters: dead, User: cfg.AdminUser,
		Password: cfg.AdminPassword, Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := service.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	hs := service.NewServer(srv, log)
	hs.ReadTimeout = 30 * time.Second // no write timeout: the Blocked page's event stream stays open
	if live != nil {
		hs.RegisterOnShutdown(live.Close) // ends the event streams, which the shutdown would wait for
	}
	log.Info("admin listening", "addr", ln.Addr().String(), "live", live != nil)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return service.HTTP{Server: hs, Listener: ln, Timeout: 10 * time.Second, Log: log}.Run(ctx)
}
