package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/service"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/sharedip"
)

// deps are the connections a command works with. Close releases them,
// flushing the events still queued.
type deps struct {
	store io.Closer // the Redis client of the gate's store
	gate  *gate.Gate
	hist  *History
	nc    *nats.Conn
	pub   *events.Publisher
	// stopLists ends the refresh of the shared address lists, and waits
	// for it.
	stopLists func()
}

// openDeps opens what need asks for. The gate publishes the blocks and
// unblocks made through it when NATS is configured.
func openDeps(ctx context.Context, cfg *Config, need needs, log *slog.Logger, reg prometheus.Registerer) (*deps, error) {
	d := &deps{}
	ok := false
	defer func() {
		if !ok {
			d.Close(context.Background(), log)
		}
	}()
	if need.redis {
		// go-redis's own lines (failed dials) in the admin's log format.
		redis.SetLogger(service.PrintfLogger{Log: log.With("component", "redis"), Level: slog.LevelWarn})
		// One Redis, a cluster or a Sentinel-watched master, as the gate.
		store, client, err := gate.OpenRedisStore(cfg.Gate)
		if err != nil {
			return nil, err
		}
		d.store = client
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = client.Ping(pctx).Err()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("redis %s: %w", strings.Join(redisAddrs(client), ","), err)
		}
		if cfg.NATSURL != "" {
			if err := d.openNATS(ctx, cfg, log, reg); err != nil {
				return nil, err
			}
		}
		gopts := []gate.Option{gate.WithLogger(log)}
		if need.shared {
			// Loaded (and refreshed, maybe from URLs) only for the web
			// UI: a CLI command does not show them, and the gate's
			// default list is enough for what it does.
			lists, err := sharedip.New(cfg.Shared, sharedip.WithLogger(log))
			if err != nil {
				return nil, err
			}
			lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan struct{})
			go func() { _ = lists.Run(lctx); close(done) }()
			d.stopLists = func() { stop(); <-done }
			gopts = append(gopts, gate.WithSharedLists(lists))
		}
		if reg != nil {
			gopts = append(gopts, gate.WithRegisterer(reg))
		}
		if d.pub != nil {
			gopts = append(gopts, gate.WithEmitter(d.pub))
		}
		g, err := gate.New(cfg.Gate, store, gopts...)
		if err != nil {
			return nil, err
		}
		d.gate = g
	}
	if need.clickhouse {
		h, err := openHistory(cfg.ClickHouseURL)
		if err != nil {
			return nil, err
		}
		d.hist = h
	}
	ok = true
	return d, nil
}

// redisAddrs are the servers a client was given, for messages (no
// credentials).
func redisAddrs(c redis.UniversalClient) []string {
	switch c := c.(type) {
	case *redis.Client:
		return []string{c.Options().Addr}
	case *redis.ClusterClient:
		return c.Options().Addrs
	}
	return []string{fmt.Sprintf("%T", c)}
}

// openNATS connects, makes sure the DEFENDER stream exists (without
// changing one that does) and starts the event publisher.
func (d *deps) openNATS(ctx context.Context, cfg *Config, log *slog.Logger, reg prometheus.Registerer) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, js, err := events.Connect(cctx, cfg.NATSURL, "defender-admin")
	if err != nil {
		return fmt.Errorf("DEFENDER_NATS_URL: %w", err)
	}
	d.nc = nc
	if _, err := js.Stream(cctx, events.StreamName); errors.Is(err, jetstream.ErrStreamNotFound) {
		// Create only, never update: the stream's limits are the gates'
		// to set, and the README's admin user may create it, not change
		// it. A gate that created it meanwhile wins.
		if _, err := js.CreateStream(cctx, cfg.Events.Stream().JetStream()); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", events.StreamName, err)
		}
	} else if err != nil {
		log.Warn("cannot look up the event stream; events may not be stored", "stream", events.StreamName, "err", err)
	}
	pub, err := events.NewPublisher(js, events.PublisherOptions{
		Subjects: events.Subjects{Prefix: cfg.SubjectPrefix}, Gate: "admin", Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	d.pub = pub
	return nil
}

// Close flushes queued events until ctx ends and closes every connection.
func (d *deps) Close(ctx context.Context, log *slog.Logger) {
	if d.stopLists != nil {
		d.stopLists()
	}
	if d.gate != nil {
		if err := d.gate.Close(ctx); err != nil {
			log.Warn("gate close", "err", err)
		}
	}
	if d.pub != nil {
		if err := d.pub.Close(ctx); err != nil {
			log.Warn("events left unpublished", "err", err)
		}
	}
	if d.nc != nil {
		d.nc.Close()
	}
	if d.store != nil {
		_ = d.store.Close()
	}
	if d.hist != nil {
		_ = d.hist.Close()
	}
}

// deadLettersOf reads the notifier's dead letters through nc.
func deadLettersOf(nc *nats.Conn) (func(context.Context) ([]webhook.DeadLetter, error), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) ([]webhook.DeadLetter, error) { return notify.DeadLetters(ctx, js) }, nil
}
