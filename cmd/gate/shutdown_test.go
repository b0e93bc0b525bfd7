package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// streamSubjects returns the number of messages per subject in the
// DEFENDER stream of the NATS server at url.
func streamSubjects(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "DEFENDER")
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	require.NoError(t, err)
	if info.State.Subjects == nil {
		return map[string]uint64{}
	}
	return info.State.Subjects
}

// metric reads one unlabelled sample from /metrics.
func metric(t *testing.T, g *gateProc, name string) float64 {
	t.Helper()
	m := g.do(t, http.MethodGet, "/metrics", "", nil)
	for _, line := range strings.Split(m.Raw, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return -1
}

// SIGTERM while requests are in flight: the listener closes, every
// request in flight is answered, the events they caused reach JetStream,
// and the process exits 0.
func TestShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	g := startGate(t, "DEFENDER_NATS_URL="+ns.URL)
	const n = 6

	// Each request sends its headers and most of its body, so its handler
	// is running (reading the body) when the signal comes.
	type pending struct {
		conn net.Conn
		rest string
	}
	var reqs []pending
	for i := range n {
		body := fmt.Sprintf(`{"ip":"203.0.113.%d","username":"user%d","success":false,"path":"/login"}`, 50+i, i)
		conn, err := net.Dial("tcp", g.Addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		head := fmt.Sprintf("POST /v1/attempts HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		_, err = conn.Write([]byte(head + body[:len(body)-10]))
		require.NoError(t, err)
		reqs = append(reqs, pending{conn: conn, rest: body[len(body)-10:]})
	}
	require.Eventually(t, func() bool {
		return metric(t, g, "defender_gate_http_in_flight_requests") == n
	}, 10*time.Second, 10*time.Millisecond, "requests in flight")

	require.NoError(t, g.cmd.Process.Signal(syscall.SIGTERM))
	// Shutdown has begun once the listener is closed.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}, 10*time.Second, 10*time.Millisecond, "listener closed")

	for i, r := range reqs {
		_, err := r.conn.Write([]byte(r.rest))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(r.conn), nil)
		require.NoError(t, err, "request %d", i)
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "request %d: %v", i, body)
		assert.Equal(t, true, body["allowed"])
		assert.EqualValues(t, 1, body["ip_failures"])
	}
	assert.Equal(t, 0, g.wait(t), "exit status")

	// The process is gone: what it published is all there is.
	subjects := streamSubjects(t, ns.URL)
	assert.EqualValues(t, n, subjects["defender.attempt.failure"], "subjects %v", subjects)
}

// DEFENDER_STORE_ACCESS_ATTEMPTS=false publishes block events only.
func TestAttemptEventsOff(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	g := startGate(t, "DEFENDER_NATS_URL="+ns.URL, "DEFENDER_STORE_ACCESS_ATTEMPTS=false")
	for range 5 {
		g.attempt(t, "203.0.113.60", "alice", false)
	}
	g.stop(t)
	assert.Equal(t, 0, g.wait(t))
	subjects := streamSubjects(t, ns.URL)
	assert.Equal(t, map[string]uint64{"defender.block.ip": 1, "defender.block.username": 1}, subjects)
}

// With attempt events on (the default), every attempt and the blocks it
// made reach the stream, blocks once each.
func TestEventsPublished(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	g := startGate(t, "DEFENDER_NATS_URL="+ns.URL, "DEFENDER_SUBJECT_PREFIX=acme.defender")
	for range 5 {
		g.attempt(t, "203.0.113.61", "alice", false)
	}
	g.attempt(t, "198.51.100.61", "bob", true)
	g.stop(t)
	assert.Equal(t, 0, g.wait(t))
	info := streamSubjects(t, ns.URL)
	assert.Equal(t, map[string]uint64{
		"acme.defender.attempt.failure": 4,
		"acme.defender.attempt.blocked": 1,
		"acme.defender.attempt.success": 1,
		"acme.defender.block.ip":        1,
		"acme.defender.block.username":  1,
	}, info)
}

// The embedded NATS server is reachable by others (the recorder, the
// admin) and keeps the events in its stream.
func TestEmbeddedNATS(t *testing.T) {
	t.Parallel()
	natsPort := testenv.FreePort(t)
	g := startGate(t, "DEFENDER_NATS_LISTEN=127.0.0.1:"+strconv.Itoa(natsPort))
	g.attempt(t, "203.0.113.62", "alice", false)
	url := "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	require.Eventually(t, func() bool {
		return streamSubjects(t, url)["defender.attempt.failure"] == 1
	}, 10*time.Second, 20*time.Millisecond)
}
