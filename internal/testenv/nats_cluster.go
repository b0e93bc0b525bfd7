package testenv

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSClusterServer is a cluster of embedded NATS servers joined by routes,
// with clustered JetStream, for one test.
type NATSClusterServer struct {
	// Servers in start order; a stopped one is nil in Server.
	Servers []*NATSServer
	t       testing.TB
}

// NATSCluster starts n embedded nats-servers (n >= 3 for JetStream to keep
// a quorum when one stops) named n1..nN in the cluster "defender", each on
// free client and route ports with its own store directory, every one
// routed to every other, and waits until JetStream has a meta leader. The
// servers are shut down when the test ends.
func NATSCluster(t testing.TB, n int) *NATSClusterServer {
	t.Helper()
	skipShort(t, "a nats cluster")
	if n < 1 {
		t.Fatalf("nats cluster of %d servers", n)
	}
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = FreePort(t)
	}
	c := &NATSClusterServer{t: t}
	for i := 0; i < n; i++ {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
			}
		}
		opts := &server.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       FreePort(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "defender",
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s := &NATSServer{opts: opts, t: t}
		// Start without waiting for JetStream: it needs the others.
		s.Start()
		t.Cleanup(s.Shutdown)
		c.Servers = append(c.Servers, s)
	}
	if err := c.WaitJetStream(30 * time.Second); err != nil {
		t.Fatalf("nats cluster: %v", err)
	}
	return c
}

// URLs is the comma-separated list of the servers' client URLs, as
// events.Connect and DEFENDER_NATS_URL take it.
func (c *NATSClusterServer) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = "nats://" + s.opts.Host + ":" + strconv.Itoa(s.opts.Port)
	}
	return strings.Join(urls, ",")
}

// ByName returns the server named name (n1, n2, ...), or nil.
func (c *NATSClusterServer) ByName(name string) *NATSServer {
	for _, s := range c.Servers {
		if s.opts.ServerName == name {
			return s
		}
	}
	return nil
}

// WaitJetStream waits until every running server is routed to every other
// running one and JetStream has a meta leader.
func (c *NATSClusterServer) WaitJetStream(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *NATSClusterServer) ready() error {
	running, leader := 0, false
	for _, s := range c.Servers {
		if s.Server != nil {
			running++
		}
	}
	for _, s := range c.Servers {
		if s.Server == nil {
			continue
		}
		// Routes are counted per pooled connection; at least one per peer.
		if got := s.Server.NumRoutes(); got < running-1 {
			return fmt.Errorf("%s has %d routes, want %d", s.opts.ServerName, got, running-1)
		}
		if !s.Server.JetStreamEnabled() {
			return fmt.Errorf("%s: jetstream not enabled", s.opts.ServerName)
		}
		leader = leader || s.Server.JetStreamIsLeader()
	}
	if !leader {
		return fmt.Errorf("no jetstream meta leader")
	}
	return nil
}
