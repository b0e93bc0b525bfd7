package events_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

func attemptRecord(i int) gate.AttemptRecord {
	ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	return gate.AttemptRecord{Time: time.Now(), IP: ip.String(), Username: fmt.Sprintf("user%d", i),
		Outcome: gate.OutcomeFailure, BlockedBy: []gate.Kind{gate.KindIP}, Path: "/login", UserAgent: "test",
		IPFailures: i % 7, UsernameFailures: i % 5}
}

func TestPublisherRoundTrip(t *testing.T) {
	env := newNATSEnv(t)
	reg := prometheus.NewRegistry()
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Gate: "gate-a", Registerer: reg})
	require.NoError(t, err)

	ctx := t.Context()
	blocks := make(chan events.Block, 16)
	_, err = events.SubscribeBlocks(ctx, env.nc, events.Subjects{}, func(b events.Block) { blocks <- b })
	require.NoError(t, err)
	require.NoError(t, env.nc.Flush())

	stop := runPublisher(t, p)
	const n = 2000
	for i := range n {
		p.EmitAttempt(attemptRecord(i))
	}
	until := time.Now().Add(5 * time.Minute).Truncate(time.Second)
	p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindIP, Subject: "10.0.0.1",
		Blocked: true, Until: until, Failures: 4, Reason: gate.ReasonAuto})
	p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindIP, Subject: "10.0.0.1", Reason: gate.ReasonAdmin})

	select {
	case b := <-blocks:
		assert.Equal(t, events.TypeBlock, b.Type)
		assert.Equal(t, "ip", b.Kind)
		assert.Equal(t, "10.0.0.1", b.Subject)
		require.NotNil(t, b.Until)
		assert.True(t, until.Equal(*b.Until))
		assert.Equal(t, 4, b.Failures)
		assert.Equal(t, "auto", b.Reason)
		assert.Equal(t, "gate-a", b.Gate)
	case <-time.After(10 * time.Second):
		t.Fatal("no block event delivered to the block.> subscriber")
	}

	msgs := streamMsgs(t, env.js, events.Subjects{}.Attempts(), n)
	require.Len(t, msgs, n, "exactly one message per emitted attempt")
	ids := map[string]bool{}
	for _, m := range msgs {
		assert.Equal(t, "defender.attempt.failure", m.Subject())
		a, err := events.DecodeAttempt(m.Data())
		require.NoError(t, err)
		assert.Empty(t, m.Headers().Get(jetstream.MsgIDHeader), "attempts skip the duplicate window")
		require.False(t, ids[a.ID], "duplicate id %s", a.ID)
		ids[a.ID] = true
		var i int
		_, err = fmt.Sscanf(a.Username, "user%d", &i)
		require.NoError(t, err)
		want := events.NewAttempt(attemptRecord(i), "gate-a")
		want.ID, want.Time = a.ID, a.Time
		assert.Equal(t, want, a)
	}
	unblocks := streamMsgs(t, env.js, events.Subjects{}.Unblocks(), 1)
	require.Len(t, unblocks, 1)
	u, err := events.DecodeBlock(unblocks[0].Data())
	require.NoError(t, err)
	assert.Equal(t, u.ID, unblocks[0].Headers().Get(jetstream.MsgIDHeader), "a transition's id is its msg id")

	require.NoError(t, stop())
	st := p.Stats()
	assert.Equal(t, uint64(n+2), st.Queued)
	assert.Equal(t, uint64(n+2), st.Published)
	assert.Zero(t, st.Dropped)
	assert.Equal(t, float64(n+2), testenv.Metric(t, reg, "defender_events_published_total"))
	assert.Equal(t, float64(n+2), testenv.Metric(t, reg, "defender_events_publish_seconds"), "one latency sample per event")
}

// TestPublisherNamedTransitionOnce: a transition the gate named (a block
// replied again to a replayed store call, announced a second time) is
// published under its id, which JetStream's duplicate window takes once.
func TestPublisherNamedTransitionOnce(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Gate: "gate-a", Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	id := uuid.Must(uuid.NewV7())
	at := time.Now().Truncate(time.Millisecond)
	named := gate.TransitionRecord{ID: id, Time: at, Kind: gate.KindUsername, Subject: "dana",
		Blocked: true, Until: at.Add(time.Minute), Failures: 4, Reason: gate.ReasonAuto}
	p.EmitTransition(named)
	p.EmitTransition(named)
	// And one the emitter names: an id of its own.
	p.EmitTransition(gate.TransitionRecord{Time: at, Kind: gate.KindUsername, Subject: "erin", Blocked: true, Reason: gate.ReasonAuto})
	require.NoError(t, stop())
	assert.Equal(t, uint64(3), p.Stats().Published, "each sent")

	msgs := streamMsgs(t, env.js, events.Subjects{}.Blocks(), 2)
	require.Len(t, msgs, 2, "the named block once, the other once")
	b, err := events.DecodeBlock(msgs[0].Data())
	require.NoError(t, err)
	assert.Equal(t, id.String(), b.ID)
	assert.Equal(t, "dana", b.Subject)
	assert.True(t, at.Equal(b.Time), "at the time the gate gave")
	other, err := events.DecodeBlock(msgs[1].Data())
	require.NoError(t, err)
	assert.NotEqual(t, id.String(), other.ID)
	assert.Equal(t, "erin", other.Subject)
}

// TestPublisherSurvivesOutage stops NATS for about 10 s while several
// goroutines keep emitting: no Emit blocks, and afterwards every event is
// in the stream, under its id (attempts at least once: see below).
func TestPublisherSurvivesOutage(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{
		Buffer: 100_000, AckTimeout: time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	stop := runPublisher(t, p)

	// Before: a steady trickle is published.
	const before = 500
	for i := range before {
		p.EmitAttempt(attemptRecord(i))
	}
	require.Eventually(t, func() bool { return p.Stats().Published == before }, 10*time.Second, 10*time.Millisecond)

	// Emitting just as the server goes away leaves a batch in flight.
	const burst = 20_000
	for i := range burst {
		p.EmitAttempt(attemptRecord(before + i))
	}
	down := time.Now()
	env.srv.Shutdown()
	require.Nil(t, env.srv.Server)

	const goroutines, perG = 4, 5000
	var wg sync.WaitGroup
	maxEmit := make([]time.Duration, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				r := attemptRecord(i)
				r.Username = fmt.Sprintf("outage-%d-%d", g, i)
				start := time.Now()
				p.EmitAttempt(r)
				maxEmit[g] = max(maxEmit[g], time.Since(start))
				if i%20 == 0 {
					time.Sleep(10 * time.Millisecond) // spread over the outage
				}
			}
		}()
	}
	wg.Wait()
	// Every Emit returned while the server was still down.
	require.Nil(t, env.srv.Server, "server must still be down")
	assert.Equal(t, uint64(before+burst+goroutines*perG), p.Stats().Queued)
	assert.Zero(t, p.Stats().Dropped)
	t.Logf("max EmitAttempt duration during outage: %s (emitters done after %s)", longest(maxEmit), time.Since(down))

	time.Sleep(time.Until(down.Add(10 * time.Second))) // keep NATS down ~10 s
	env.srv.Start()

	total := before + burst + goroutines*perG
	require.Eventually(t, func() bool { return p.Stats().Published >= uint64(total) }, 60*time.Second, 50*time.Millisecond,
		"published %d of %d", p.Stats().Published, total)
	msgs := streamMsgs(t, env.js, "", total)
	perID := map[string]int{}
	perUser := map[string]int{}
	for _, m := range msgs {
		a, err := events.DecodeAttempt(m.Data())
		require.NoError(t, err)
		perID[a.ID]++
		perUser[a.Username]++
	}
	// Attempts carry no message id: those in flight when the server went
	// away were stored, their acknowledgements lost, and sent again. Each
	// copy has its event's id, which the recorder stores once.
	assert.GreaterOrEqual(t, len(msgs), total, "each event stored")
	assert.Len(t, perID, total, "every id")
	for g := range goroutines {
		for i := range perG {
			u := fmt.Sprintf("outage-%d-%d", g, i)
			if perUser[u] < 1 {
				t.Fatalf("event %s not stored", u)
			}
		}
	}
	t.Logf("%d messages for %d events (copies resent after the outage)", len(msgs), total)
	st := p.Stats()
	t.Logf("stats after outage: %+v", st)
	require.NoError(t, stop())
}

func longest(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestPublisherFullQueueKeepsBlocks: attempts fill the queue while NATS
// is away (an attacker's flood); the blocks made meanwhile are kept apart
// and published once NATS is back: a flood costs a block neither its
// event nor its notifier mail.
func TestPublisherFullQueueKeepsBlocks(t *testing.T) {
	env := newNATSEnv(t)
	reg := prometheus.NewRegistry()
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: 10, MaxPending: 1,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Registerer: reg})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	p.EmitAttempt(attemptRecord(0))
	require.Eventually(t, func() bool { return p.Stats().Published == 1 }, 10*time.Second, 5*time.Millisecond)
	env.srv.Shutdown()
	require.Eventually(t, func() bool { return !env.nc.IsConnected() }, 10*time.Second, 5*time.Millisecond)
	const blocks = 50
	for i := 1; i <= 1000; i++ {
		p.EmitAttempt(attemptRecord(i))
		if i%20 == 0 {
			p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindUsername, Subject: fmt.Sprintf("victim-%d", i/20),
				Blocked: true, Until: time.Now().Add(time.Hour), Failures: 4, Reason: gate.ReasonAuto})
		}
	}
	st := p.Stats()
	assert.GreaterOrEqual(t, st.Dropped, uint64(900), "attempts beyond the queue are dropped")
	assert.Equal(t, uint64(1+1000+blocks), st.Queued+st.Dropped)
	assert.Zero(t, testenv.Metric(t, reg, "defender_events_blocks_dropped_total"))
	assert.Equal(t, float64(blocks), testenv.Metric(t, reg, "defender_events_reserve_length"))
	env.srv.Start()
	require.NoError(t, stop(), "everything queued went out")

	msgs := streamMsgs(t, env.js, events.Subjects{}.Blocks(), blocks)
	got := map[string]bool{}
	for _, m := range msgs {
		b, err := events.DecodeBlock(m.Data())
		require.NoError(t, err)
		got[b.Subject] = true
	}
	for i := 1; i <= blocks; i++ {
		assert.True(t, got[fmt.Sprintf("victim-%d", i)], "block %d published", i)
	}
}

func TestPublisherFullQueueDrops(t *testing.T) {
	env := newNATSEnv(t)
	reg := prometheus.NewRegistry()
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: 10, MaxPending: 1, Registerer: reg})
	require.NoError(t, err)
	p.EmitAttempt(attemptRecord(0))
	require.Eventually(t, func() bool { return p.Stats().Published == 1 }, 10*time.Second, 5*time.Millisecond)
	// NATS gone: the publisher soon stops taking from its queue, which
	// fills, and the rest is dropped: an Emit never waits.
	env.srv.Shutdown()
	require.Eventually(t, func() bool { return !env.nc.IsConnected() }, 10*time.Second, 5*time.Millisecond)
	for i := 1; i <= 100; i++ {
		p.EmitAttempt(attemptRecord(i))
	}
	st := p.Stats()
	assert.Equal(t, 10, st.QueueLen)
	assert.GreaterOrEqual(t, st.Dropped, uint64(80))
	assert.Equal(t, uint64(101), st.Queued+st.Dropped)
	assert.Equal(t, float64(st.Dropped), testenv.Metric(t, reg, "defender_events_dropped_total"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Close(ctx), events.ErrUnsent, "the queued events never went out")
}

func TestPublisherCloseFlushes(t *testing.T) {
	env := newNATSEnv(t)
	baseline := goroutineBaseline(t, env)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{})
	require.NoError(t, err)
	ctx := context.Background()
	p.EmitAttempt(attemptRecord(0))
	require.Eventually(t, func() bool { return p.Stats().Published == 1 }, 10*time.Second, time.Millisecond)
	const n = 3000
	for i := 1; i < n; i++ {
		p.EmitAttempt(attemptRecord(i))
	}

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, p.Close(cctx))
	assert.Equal(t, uint64(n), p.Stats().Published)

	p.EmitAttempt(attemptRecord(0)) // after Close: dropped, never blocks
	assert.Equal(t, uint64(1), p.Stats().Dropped)
	require.NoError(t, p.Close(ctx), "Close twice")
	requireNoLeak(t, baseline)

	assert.Len(t, streamMsgs(t, env.js, "", n), n)
}

// What is emitted right before Close goes out too.
func TestPublisherCloseAtOnce(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{})
	require.NoError(t, err)
	for i := range 100 {
		p.EmitAttempt(attemptRecord(i))
	}
	require.NoError(t, p.Close(t.Context()))
	assert.Len(t, streamMsgs(t, env.js, "", 100), 100)
}

// TestPublisherCloseGivesUp: with NATS down, Close returns when its
// context ends and reports what was left.
func TestPublisherCloseGivesUp(t *testing.T) {
	env := newNATSEnv(t)
	baseline := goroutineBaseline(t, env)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{MinBackoff: 10 * time.Millisecond, AckTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	p.EmitAttempt(attemptRecord(1000))
	require.Eventually(t, func() bool { return p.Stats().Published == 1 }, 10*time.Second, 5*time.Millisecond,
		"the publisher publishes")
	env.srv.Shutdown()
	for i := range 50 {
		p.EmitAttempt(attemptRecord(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = p.Close(ctx)
	require.ErrorIs(t, err, events.ErrUnsent)
	assert.Contains(t, err.Error(), "50 events")
	require.ErrorIs(t, p.Close(ctx), events.ErrUnsent, "Close again: the same result")
	assert.Equal(t, uint64(50), p.Stats().Unsent)
	requireNoLeak(t, baseline)
}

func TestNewPublisherErrors(t *testing.T) {
	env := newNATSEnv(t)
	_, err := events.NewPublisher(env.js, events.PublisherOptions{Subjects: events.Subjects{Prefix: "a.>"}})
	require.ErrorIs(t, err, events.ErrInvalidPrefix)
	reg := prometheus.NewRegistry()
	_, err = events.NewPublisher(env.js, events.PublisherOptions{Registerer: reg})
	require.NoError(t, err)
	_, err = events.NewPublisher(env.js, events.PublisherOptions{Registerer: reg})
	require.Error(t, err, "a second publisher on the same registry")
}

// TestEmitAllocations: an Emit allocates at most the event's id (the
// pooled queue item is reused once the publisher has encoded it). The
// sender does not encode while Emit is measured: AllocsPerRun counts
// every goroutine's allocations, and the sender's encoding beside it made
// the figure 9 on a loaded machine. So the pool is warmed with whole
// writes (lingerFull, 64), then fewer attempts than a write are measured,
// which the sender lingers on (Linger: an hour).
func TestEmitAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("-race: sync.Pool drops items at random, allocation counts mean nothing")
	}
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: 1 << 16, Linger: time.Hour})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	r := attemptRecord(1)
	const warm = 16 * 64 // whole writes: nothing lingers
	for range warm {
		p.EmitAttempt(r)
	}
	require.Eventually(t, func() bool { return p.Stats().Published == warm }, 10*time.Second, time.Millisecond)
	allocs := testing.AllocsPerRun(40, func() { p.EmitAttempt(r) })
	assert.Equal(t, uint64(warm), p.Stats().Published, "the sender lingered on the measured attempts")
	assert.LessOrEqual(t, allocs, 1.0, "allocations per EmitAttempt")
	t.Logf("allocations per EmitAttempt: %.2f", allocs)
	require.NoError(t, stop())
}

// TestPublisherLingerEnds: attempts linger for company, but never past a
// block (which goes out at once, before them, and they right after it: a
// full window may hold them between), nor once enough are
// queued to fill a write, nor past half a small queue (so that lingering
// never fills it). Linger is an hour here: anything published came early.
func TestPublisherLingerEnds(t *testing.T) {
	published := func(t *testing.T, p *events.Publisher, n int) {
		t.Helper()
		require.Eventually(t, func() bool { return p.Stats().Published == uint64(n) }, 10*time.Second, 5*time.Millisecond,
			"published %d of %d", p.Stats().Published, n)
	}
	t.Run("a block", func(t *testing.T) {
		env := newNATSEnv(t)
		p, err := events.NewPublisher(env.js, events.PublisherOptions{Linger: time.Hour})
		require.NoError(t, err)
		stop := runPublisher(t, p)
		p.EmitAttempt(attemptRecord(1))
		time.Sleep(50 * time.Millisecond) // the sender lingers on it
		assert.Zero(t, p.Stats().Published, "the attempt lingers")
		p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindIP, Subject: "10.0.0.1",
			Blocked: true, Failures: 4, Reason: gate.ReasonAuto})
		published(t, p, 2)
		require.NoError(t, stop())
	})
	t.Run("a block behind a full window", func(t *testing.T) {
		// One event in flight at most: the block's wake-up comes while the
		// sender lingers on A1, which it then sends, and the window is full;
		// the block goes next, from its reserve, and A2, queued before it,
		// once the block is acknowledged. A2 must not linger then.
		env := newNATSEnv(t)
		p, err := events.NewPublisher(env.js, events.PublisherOptions{Linger: time.Hour, MaxPending: 1})
		require.NoError(t, err)
		stop := runPublisher(t, p)
		p.EmitAttempt(attemptRecord(1))
		time.Sleep(50 * time.Millisecond) // the sender lingers on A1
		p.EmitAttempt(attemptRecord(2))
		p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindIP, Subject: "10.0.0.1",
			Blocked: true, Failures: 4, Reason: gate.ReasonAuto})
		published(t, p, 3)
		require.NoError(t, stop())
	})
	t.Run("a full write", func(t *testing.T) {
		env := newNATSEnv(t)
		p, err := events.NewPublisher(env.js, events.PublisherOptions{Linger: time.Hour})
		require.NoError(t, err)
		stop := runPublisher(t, p)
		for i := range 64 {
			p.EmitAttempt(attemptRecord(i))
		}
		published(t, p, 64)
		require.NoError(t, stop())
	})
	t.Run("half a small queue", func(t *testing.T) {
		env := newNATSEnv(t)
		p, err := events.NewPublisher(env.js, events.PublisherOptions{Linger: time.Hour, Buffer: 8})
		require.NoError(t, err)
		stop := runPublisher(t, p)
		for i := range 100 {
			p.EmitAttempt(attemptRecord(i))
			time.Sleep(time.Millisecond)
		}
		// Lingering never filled the queue: nothing was dropped. A last
		// group smaller than half the queue lingers (an hour here); a block
		// takes it along.
		assert.Zero(t, p.Stats().Dropped, "dropped while lingering")
		p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindIP, Subject: "10.0.0.1",
			Blocked: true, Failures: 4, Reason: gate.ReasonAuto})
		published(t, p, 101)
		assert.Zero(t, p.Stats().Dropped)
		require.NoError(t, stop())
	})
}
