package testenv

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
