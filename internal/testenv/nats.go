package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer is an embedded NATS server with JetStream for one test.
type NATSServer struct {
	URL    string
	Server *server.Server
	opts   *server.Options
	t      testing.TB
	// violations, when set, keeps the permission violations the server
	// logs (NATSAsREADME).
	violations *violationLog
}

// NATS starts an embedded nats-server with JetStream on a free port and a
// temporary store directory, shut down when the test ends.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	return startNATS(t, "", "")
}

// NATSWithUser is NATS with a server that accepts only the client that
// gives user and password.
func NATSWithUser(t testing.TB, user, password string) *NATSServer {
	t.Helper()
	return startNATS(t, user, password)
}

func startNATS(t testing.TB, user, password string) *NATSServer {
	t.Helper()
	skipShort(t, "nats-server")
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      FreePort(t),
		Username:  user,
		Password:  password,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	n := &NATSServer{opts: opts, t: t}
	n.Start()
	t.Cleanup(n.Shutdown)
	return n
}

// Start (re)starts the server on the same port and store directory, so a
// restart keeps the streams.
func (n *NATSServer) Start() {
	n.t.Helper()
	s, err := server.NewServer(n.opts)
	if err != nil {
		n.t.Fatalf("nats server: %v", err)
	}
	if n.violations != nil {
		s.SetLoggerV2(n.violations, false, false, false)
	}
	go s.Start()
	// A restart recovers the JetStream store, slow under -race on a
	// busy machine.
	if !s.ReadyForConnections(60 * time.Second) {
		n.t.Fatalf("nats server on %s:%d not ready after 60 s", n.opts.Host, n.opts.Port)
	}
	n.Server = s
	n.URL = s.ClientURL()
}

// Shutdown stops the server and waits for it. Safe to call twice.
func (n *NATSServer) Shutdown() {
	if n.Server == nil {
		return
	}
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
	n.Server = nil
}

// ConsumerDone waits up to within until consumer durable of stream has
// acknowledged every message of its filter published so far: whatever it
// was going to do with them is done. (Its pending counts alone do not
// tell: the server updates them a moment after a publish is
// acknowledged, so right after one they may read 0.)
func ConsumerDone(t testing.TB, js jetstream.JetStream, stream, durable string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatalf("consumer %s of %s: %v", durable, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s of %s: %v", durable, stream, err)
	}
	filter := info.Config.FilterSubject
	if filter == "" {
		filter = ">"
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	var last uint64
	if m, err := s.GetLastMsgForSubject(ctx, filter); err == nil {
		last = m.Sequence
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("the last message of %s on %s: %v", stream, filter, err)
	}
	for {
		// info keeps the last state read: a read cut by the deadline
		// returns none.
		if now, err := c.Info(ctx); err == nil {
			info = now
			if info.AckFloor.Stream >= last && info.NumAckPending == 0 && info.NumPending == 0 {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("consumer %s of %s has not acknowledged message %d after %s (last read: ack floor %d, delivered %d, %d awaiting an ack, %d not delivered, %d pulls waiting)",
				durable, stream, last, within, info.AckFloor.Stream, info.Delivered.Stream, info.NumAckPending, info.NumPending, info.NumWaiting)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
