package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/defender-go/defender/internal/redact"
)

// EmbeddedOptions configures the NATS server a gate embeds when no
// DEFENDER_NATS_URL is given.
type EmbeddedOptions struct {
	// Host to listen on ("127.0.0.1").
	Host string
	// Port to listen on: 0 means NATS's 4222, -1 a random free port
	// (read it back with (*server.Server).ClientURL).
	Port int
	// StoreDir holds JetStream's files; "" means
	// <os.TempDir()>/defender-nats, which does not survive a reboot.
	StoreDir string
	// Logger receives the server's log; nil silences it.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept clients (10 s).
	ReadyTimeout time.Duration
}

// ErrNotReady is returned when a server or connection is not up in time.
var ErrNotReady = errors.New("events: nats not ready")

// StartEmbedded starts an in-process NATS server with JetStream and waits
// until it accepts clients. Stop it with Shutdown and WaitForShutdown.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		o.StoreDir = filepath.Join(os.TempDir(), "defender-nats")
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName: "defender-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(serverLogger{o.Logger}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(o.ReadyTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s:%d: %w after %s", o.Host, o.Port, ErrNotReady, o.ReadyTimeout)
	}
	return s, nil
}

// serverLogger adapts slog to the nats-server logger.
type serverLogger struct{ l *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) {
	l.l.Info(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (l serverLogger) Warnf(format string, v ...any) {
	l.l.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (l serverLogger) Fatalf(format string, v ...any) {
	l.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (l serverLogger) Errorf(format string, v ...any) {
	l.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (l serverLogger) Debugf(format string, v ...any) {
	l.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (l serverLogger) Tracef(format string, v ...any) {
	l.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}

// Connection defaults used by Connect.
const (
	DefaultReconnectWait    = time.Second
	DefaultReconnectBufSize = 32 << 20 // bytes held while reconnecting
	// DefaultMaxAckPending bounds asynchronous publishes awaiting their
	// acknowledgement on the JetStream context Connect returns.
	DefaultMaxAckPending = 4096
)

// Connect dials NATS at url — one URL or a comma-separated list of a
// cluster's URLs — and returns the connection and a JetStream context. It
// reconnects forever (holding up to DefaultReconnectBufSize bytes of
// publishes meanwhile) and logs connection changes with slog, and each new
// reason a (re)connection fails. It waits for the first connection until
// ctx ends, or until the server refuses the credentials (an error saying
// so); opts are applied after the defaults. Close the connection (nc.Drain or nc.Close) when done.
func Connect(ctx context.Context, url, name string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	urls := strings.Split(url, ",")
	for i := range urls {
		urls[i] = strings.TrimSpace(urls[i])
	}
	url = strings.Join(urls, ",")
	if strings.Trim(url, ",") == "" {
		return nil, nil, errors.New("nats connect: empty url")
	}
	if err := CheckURLs(url); err != nil {
		return nil, nil, fmt.Errorf("nats connect: %w", err)
	}
	log := slog.Default().With("component", "nats", "name", name)
	// A failed attempt to (re)connect is logged when its reason is new, so
	// an outage says why once, not at every retry; connecting again resets it.
	var lastFail atomic.Pointer[string]
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(DefaultReconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(DefaultReconnectBufSize),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil { // Close or Drain: no failure to report
				log.Debug("nats disconnected by close")
				return
			}
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil {
				return
			}
			msg := err.Error()
			if prev := lastFail.Swap(&msg); prev == nil || *prev != msg {
				log.Warn("nats connect failed, retrying", "servers", redact.URLList(url), "err", err)
			}
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			lastFail.Store(nil)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			lastFail.Store(nil)
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats error", "subject", subject, "err", err)
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats connect %s: %w", redact.URLList(url), err)
	}
	if err := waitConnected(ctx, nc, &lastFail); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats connect %s: %w", redact.URLList(url), err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(DefaultMaxAckPending),
		// Clears acks that never come; the Publisher's own, shorter
		// timeout drives its retries.
		jetstream.WithPublishAsyncTimeout(time.Minute),
	)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// waitConnected waits until nc is connected. It gives up at once when the
// connection closes for good (the server refused the credentials: nats.go
// stops retrying), saying why, and otherwise when ctx ends, with the
// reason of the last failed attempt (lastFail), if any.
func waitConnected(ctx context.Context, nc *nats.Conn, lastFail *atomic.Pointer[string]) error {
	if nc.IsConnected() {
		return nil
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if last := lastFail.Load(); last != nil {
				return fmt.Errorf("%w: %w (last attempt: %s)", ErrNotReady, ctx.Err(), *last)
			}
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-tick.C:
			if nc.IsConnected() {
				return nil
			}
			if nc.IsClosed() {
				err := nc.LastError()
				if err == nil {
					err = nats.ErrConnectionClosed
				}
				return fmt.Errorf("%w: %w", ErrNotReady, err)
			}
		}
	}
}

// CheckURLs reports the first URL of a comma-separated list that does not
// parse as nats.go parses it (a missing scheme means nats://). The error
// shows the URL without its password: nats.go's own error, url.Parse's,
// quotes the URL whole, password included, into the service's log.
func CheckURLs(list string) error {
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		full := u
		if !strings.Contains(full, "://") {
			full = "nats://" + full
		}
		if _, err := neturl.Parse(full); err != nil {
			return fmt.Errorf("%s is %w", redact.URLList(u), redact.URLError(u, err))
		}
	}
	return nil
}
