package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestClusterServerStopsUnderLoad publishes through a three-server NATS
// cluster (routes, clustered JetStream, the stream replicated on all
// three) with a connection given the three URLs, and stops the stream's
// leader while events flow: afterwards every event is in the stream, every
// block exactly once (its id is the message id: the duplicate window drops
// a resent copy) and every attempt at least once (attempts skip the window;
// the recorder stores one row per id).
func TestClusterServerStopsUnderLoad(t *testing.T) {
	c := testenv.NATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, c.URLs(), "cluster-admin",
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	require.NoError(t, err)
	defer nc.Close()
	require.Eventually(t, func() bool {
		_, err = events.EnsureStream(ctx, js, events.StreamConfig{Replicas: 3})
		return err == nil
	}, 20*time.Second, 100*time.Millisecond, "stream with 3 replicas")
	leader := func() (string, int) {
		s, err := js.Stream(ctx, events.StreamName)
		if err != nil {
			return "", 0
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return "", 0
		}
		return info.Cluster.Leader, len(info.Cluster.Replicas)
	}
	require.Eventually(t, func() bool { l, r := leader(); return l != "" && r == 2 }, 20*time.Second, 50*time.Millisecond,
		"the stream has a leader and two replicas")

	// The publisher connects to the stream leader first (the list's
	// order kept), so stopping it also cuts the publisher's connection.
	name, _ := leader()
	require.NotEmpty(t, name)
	urls := c.ByName(name).URL
	for _, s := range c.Servers {
		if s.URL != urls {
			urls += "," + s.URL
		}
	}
	pc, pjs, err := events.Connect(ctx, urls, "cluster-publisher", nats.DontRandomize(),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	require.NoError(t, err)
	defer pc.Close()
	require.Equal(t, name, pc.ConnectedServerName())

	const n, blockEvery = 6000, 50
	p, err := events.NewPublisher(pjs, events.PublisherOptions{Gate: "gate-a", Buffer: n + n/blockEvery, AckTimeout: time.Second})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	emitted := make(chan struct{})
	go func() { // a steady load: 100 events a millisecond
		defer close(emitted)
		for i := range n {
			p.EmitAttempt(attemptRecord(i))
			if i%blockEvery == 0 {
				p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername,
					Subject: fmt.Sprintf("user%d", i), Blocked: true, Failures: 5, Reason: gate.ReasonAuto})
			}
			if i%100 == 99 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	require.Eventually(t, func() bool { return p.Stats().Published >= n/4 }, 20*time.Second, time.Millisecond,
		"events flow")
	c.ByName(name).Shutdown()
	t.Logf("stopped the stream leader %s, the publisher's server, after %d of %d events were acknowledged",
		name, p.Stats().Published, n)
	<-emitted
	const total = n + n/blockEvery
	require.Eventually(t, func() bool { return p.Stats().Published >= total }, 45*time.Second, 20*time.Millisecond,
		"every event acknowledged")
	require.NoError(t, stop())
	st := p.Stats()
	assert.Zero(t, st.Dropped, "nothing dropped")
	assert.Zero(t, st.Unsent, "nothing given up")
	t.Logf("publisher: %+v", st)

	blocks := streamMsgs(t, js, events.Subjects{}.Blocks(), n/blockEvery)
	require.Len(t, blocks, n/blockEvery, "one message per block")
	seen := map[string]bool{}
	for _, m := range blocks {
		b, err := events.DecodeBlock(m.Data())
		require.NoError(t, err)
		assert.False(t, seen[b.Subject], "block of %s twice", b.Subject)
		seen[b.Subject] = true
		assert.Equal(t, b.ID, m.Headers().Get(jetstream.MsgIDHeader))
	}

	attempts := streamMsgs(t, js, events.Subjects{}.Attempts(), n)
	require.GreaterOrEqual(t, len(attempts), n, "at least one message per attempt")
	ids, users := map[string]int{}, map[int]int{}
	for _, m := range attempts {
		a, err := events.DecodeAttempt(m.Data())
		require.NoError(t, err)
		if ids[a.ID]++; ids[a.ID] > 1 {
			continue // a resent copy: same id, same content
		}
		var i int
		_, err = fmt.Sscanf(a.Username, "user%d", &i)
		require.NoError(t, err)
		users[i]++
	}
	for i := range n {
		assert.Equal(t, 1, users[i], "attempt %d: one id", i)
	}
	t.Logf("attempt messages in the stream: %d for %d attempts (resent copies the recorder stores once)", len(attempts), n)
}

// BenchmarkPublishThroughputCluster is BenchmarkPublishThroughput on a
// three-server cluster, the stream replicated on all three (R3): every
// event is stored by a quorum before its acknowledgement. The three
// servers run in this process, on the same cores as the publisher.
func BenchmarkPublishThroughputCluster(b *testing.B) {
	c := testenv.NATSCluster(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nc, js, err := events.Connect(ctx, c.URLs(), "bench")
	require.NoError(b, err)
	defer nc.Close()
	require.Eventually(b, func() bool {
		_, err = events.EnsureStream(ctx, js, events.StreamConfig{Replicas: 3})
		return err == nil
	}, 20*time.Second, 100*time.Millisecond)
	p, err := events.NewPublisher(js, events.PublisherOptions{Buffer: max(b.N, 1)})
	require.NoError(b, err)
	stop := runPublisher(b, p)
	r := attemptRecord(3)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		p.EmitAttempt(r)
	}
	for p.Stats().Published < uint64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	require.Zero(b, p.Stats().Dropped)
	require.NoError(b, p.Close(ctx))
	_ = stop()
}
