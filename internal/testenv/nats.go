package testenv

import (
	"context"
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
// acknowledged every message it was to take (nothing pending, nothing
// awaiting an acknowledgement): whatever it was going to do is done.
func ConsumerDone(t testing.TB, js jetstream.JetStream, stream, durable string, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		c, err := js.Consumer(ctx, stream, durable)
		if err == nil {
			info, err := c.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s of %s still has messages to take or acknowledge after %s", durable, stream, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
