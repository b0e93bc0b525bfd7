package events_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// subjectOf is a plausible subject of each kind.
func subjectOf(k gate.Kind) string {
	switch k {
	case gate.KindUsername, gate.KindUsernameFamiliar:
		return "alice"
	case gate.KindPair:
		return "192.0.2.7|alice"
	case gate.KindSprayNet:
		return "2001:db8:1::/48"
	}
	return "192.0.2.7"
}

// TestKindsValidated: block events and blocked_by lists take every
// gate.Kind, and nothing else.
func TestKindsValidated(t *testing.T) {
	for _, k := range gate.Kinds {
		assert.True(t, events.ValidKind(string(k)), k)
		b := events.NewBlock(gate.TransitionRecord{Time: t0, Kind: k, Subject: subjectOf(k), Blocked: true, Reason: gate.ReasonAuto}, "g")
		require.NoError(t, b.Validate(), k)
		data, err := b.Encode()
		require.NoError(t, err, k)
		got, err := events.DecodeBlock(data)
		require.NoError(t, err, k)
		assert.Equal(t, string(k), got.Kind)

		a := events.NewAttempt(gate.AttemptRecord{Time: t0, IP: "192.0.2.7", Username: "alice", Outcome: gate.OutcomeBlocked,
			BlockedBy: []gate.Kind{k}}, "g")
		data, err = a.Encode()
		require.NoError(t, err, k)
		ga, err := events.DecodeAttempt(data)
		require.NoError(t, err, k)
		assert.Equal(t, []string{string(k)}, ga.BlockedBy)
	}
	for _, bad := range []string{"", "asn", "IP", "ips", "spray.net", "username familiar"} {
		assert.False(t, events.ValidKind(bad), bad)
		b := events.Block{V: 1, Type: events.TypeBlock, ID: "x", Time: t0, Kind: bad, Subject: "s", Reason: "auto"}
		assert.ErrorIs(t, b.Validate(), events.ErrMalformed, bad)
		_, err := events.DecodeBlock(mustJSON(t, b))
		assert.ErrorIs(t, err, events.ErrMalformed, bad)

		a := events.Attempt{V: 1, Type: events.TypeAttempt, ID: "x", Time: t0, Result: "blocked", BlockedBy: []string{"ip", bad}}
		assert.ErrorIs(t, a.Validate(), events.ErrMalformed, bad)
		_, err = events.DecodeAttempt(mustJSON(t, a))
		assert.ErrorIs(t, err, events.ErrMalformed, bad)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return data
}

// TestObserveSharedFamiliarOnTheWire: the new marks travel when set, are
// left out when not, and events written before them decode as unmarked.
func TestObserveSharedFamiliarOnTheWire(t *testing.T) {
	a := events.NewAttempt(gate.AttemptRecord{Time: t0, IP: "100.64.0.9", Username: "bob", Outcome: gate.OutcomeBlocked,
		BlockedBy: []gate.Kind{gate.KindUsernameFamiliar}, Observe: true, Shared: "cgnat", Familiar: true}, "g")
	assert.True(t, a.Observe)
	assert.Equal(t, "cgnat", a.Shared)
	assert.True(t, a.Familiar)
	data, err := a.Encode()
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(data, &raw))
	assert.Equal(t, true, raw["observe"])
	assert.Equal(t, "cgnat", raw["shared"])
	assert.Equal(t, true, raw["familiar"])
	got, err := events.DecodeAttempt(data)
	require.NoError(t, err)
	assert.Equal(t, a, got)

	plain := events.NewAttempt(gate.AttemptRecord{Time: t0, IP: "192.0.2.1", Outcome: gate.OutcomeFailure}, "g")
	data, err = plain.Encode()
	require.NoError(t, err)
	raw = nil
	require.NoError(t, json.Unmarshal(data, &raw))
	for _, k := range []string{"observe", "shared", "familiar"} {
		assert.NotContains(t, raw, k, "an unmarked attempt leaves %s out", k)
	}

	b := events.NewBlock(gate.TransitionRecord{Time: t0, Kind: gate.KindSpray, Subject: "192.0.2.7", Blocked: true,
		Until: t0.Add(time.Hour), Failures: 20, Reason: gate.ReasonAuto, Observe: true}, "g")
	assert.True(t, b.Observe)
	data, err = b.Encode()
	require.NoError(t, err)
	raw = nil
	require.NoError(t, json.Unmarshal(data, &raw))
	assert.Equal(t, true, raw["observe"])
	gotB, err := events.DecodeBlock(data)
	require.NoError(t, err)
	assert.Equal(t, b, gotB)

	// As a gate before these fields wrote them.
	old, err := events.DecodeAttempt([]byte(`{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","ip":"::1","username":"bob","result":"blocked","blocked_by":["ip"],"ip_failures":4,"username_failures":1,"pair_failures":0}`))
	require.NoError(t, err)
	assert.False(t, old.Observe)
	assert.Empty(t, old.Shared)
	assert.False(t, old.Familiar)
	oldB, err := events.DecodeBlock([]byte(`{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"ip","subject":"1.2.3.4","permanent":true,"failures":4,"reason":"auto"}`))
	require.NoError(t, err)
	assert.False(t, oldB.Observe)
}

func TestObserveSubjects(t *testing.T) {
	s := events.Subjects{Prefix: "p"}
	tests := []struct {
		observe, blocked bool
		want             string
	}{
		{false, true, "p.block.spray_net"},
		{false, false, "p.unblock.spray_net"},
		{true, true, "p.observe.block.spray_net"},
		{true, false, "p.observe.unblock.spray_net"},
	}
	for _, tc := range tests {
		b := events.NewBlock(gate.TransitionRecord{Time: t0, Kind: gate.KindSprayNet, Subject: "2001:db8:1::/48",
			Blocked: tc.blocked, Reason: gate.ReasonAuto, Observe: tc.observe}, "")
		assert.Equal(t, tc.want, b.NATSSubject(s))
	}
	assert.Equal(t, "p.observe.block.>", s.ObserveBlocks())
	assert.Equal(t, "p.observe.unblock.>", s.ObserveUnblocks())
	for _, f := range s.Events() {
		assert.NotEqual(t, s.All(), f, "the recorder's filters leave the DLQ out")
	}
	assert.Contains(t, s.Events(), s.ObserveBlocks())
	assert.Contains(t, s.Events(), s.ObserveUnblocks())
}

// TestObserveBlocksOnTheirOwnSubjects: the publisher sends observe mode's
// would-be blocks and unblocks, of every kind, to <prefix>.observe.*, under
// their event id as message id, and never to <prefix>.block.> or
// <prefix>.unblock.>, where a subscriber would take them for real ones.
// Real blocks of every kind go to <prefix>.block.<kind>. The stream
// (<prefix>.>) keeps them all.
func TestObserveBlocksOnTheirOwnSubjects(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Gate: "g"})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	s := events.Subjects{}

	type got struct {
		mu   sync.Mutex
		msgs map[string][]*nats.Msg // by the subscription's filter
	}
	g := &got{msgs: map[string][]*nats.Msg{}}
	filters := []string{s.Blocks(), s.Unblocks(), s.ObserveBlocks(), s.ObserveUnblocks()}
	for _, f := range filters {
		_, err := env.nc.Subscribe(f, func(m *nats.Msg) {
			g.mu.Lock()
			g.msgs[f] = append(g.msgs[f], m)
			g.mu.Unlock()
		})
		require.NoError(t, err)
	}
	require.NoError(t, env.nc.Flush())
	count := func(f string) int { g.mu.Lock(); defer g.mu.Unlock(); return len(g.msgs[f]) }

	now := time.Now()
	n := len(gate.Kinds)
	for _, k := range gate.Kinds {
		p.EmitTransition(gate.TransitionRecord{Time: now, Kind: k, Subject: subjectOf(k), Blocked: true,
			Until: now.Add(time.Hour), Failures: 4, Reason: gate.ReasonAuto, Observe: true})
		p.EmitTransition(gate.TransitionRecord{Time: now, Kind: k, Subject: subjectOf(k), Reason: gate.ReasonAuto, Observe: true})
	}
	for _, k := range gate.Kinds { // real ones, after
		p.EmitTransition(gate.TransitionRecord{Time: now, Kind: k, Subject: subjectOf(k), Blocked: true,
			Until: now.Add(time.Hour), Failures: 4, Reason: gate.ReasonAuto})
	}
	p.EmitAttempt(gate.AttemptRecord{Time: now, IP: "192.0.2.7", Username: "alice", Outcome: gate.OutcomeBlocked,
		BlockedBy: []gate.Kind{gate.KindSpray}, Observe: true, Shared: "tor"})
	require.Eventually(t, func() bool { return p.Stats().Published == uint64(3*n+1) }, 20*time.Second, 5*time.Millisecond)

	// Every event is in the stream, each on its subject.
	observeBlocks := streamMsgs(t, env.js, s.ObserveBlocks(), n)
	require.Len(t, observeBlocks, n)
	require.Len(t, streamMsgs(t, env.js, s.ObserveUnblocks(), n), n)
	realBlocks := streamMsgs(t, env.js, s.Blocks(), n)
	require.Len(t, realBlocks, n, "only the real blocks are under block.>")
	assert.Empty(t, streamSubjects(t, env.js, s.Unblocks()), "no unblock under unblock.>")
	for i, m := range observeBlocks {
		b, err := events.DecodeBlock(m.Data())
		require.NoError(t, err)
		assert.True(t, b.Observe)
		assert.Equal(t, events.TypeBlock, b.Type)
		assert.Equal(t, "defender.observe.block."+string(gate.Kinds[i]), m.Subject())
		assert.Equal(t, b.ID, m.Headers().Get(jetstream.MsgIDHeader), "an observe block's id is its message id")
	}
	for i, m := range realBlocks {
		b, err := events.DecodeBlock(m.Data())
		require.NoError(t, err)
		assert.False(t, b.Observe)
		assert.Equal(t, "defender.block."+string(gate.Kinds[i]), m.Subject())
	}
	attempts := streamMsgs(t, env.js, s.Attempts(), 1)
	require.Len(t, attempts, 1)
	assert.Equal(t, "defender.attempt.blocked", attempts[0].Subject(), "observe attempts keep their subjects")
	a, err := events.DecodeAttempt(attempts[0].Data())
	require.NoError(t, err)
	assert.True(t, a.Observe)
	assert.Equal(t, "tor", a.Shared)

	// Live subscribers: the real blocks were published after the observe
	// events, on the same connection, so by the time the last real one
	// has arrived every observe event would have too.
	require.Eventually(t, func() bool {
		return count(s.Blocks()) == n && count(s.ObserveBlocks()) == n && count(s.ObserveUnblocks()) == n
	}, 20*time.Second, 5*time.Millisecond)
	g.mu.Lock()
	for _, m := range g.msgs[s.Blocks()] {
		b, err := events.DecodeBlock(m.Data)
		require.NoError(t, err)
		assert.False(t, b.Observe, "a block.> subscriber got an observe event on %s", m.Subject)
	}
	assert.Empty(t, g.msgs[s.Unblocks()], "an unblock.> subscriber got an observe unblock")
	g.mu.Unlock()
	require.NoError(t, stop())
}

// streamSubjects counts the stream's messages per subject under filter.
func streamSubjects(t *testing.T, js jetstream.JetStream, filter string) map[string]uint64 {
	t.Helper()
	st, err := js.Stream(t.Context(), events.StreamName)
	require.NoError(t, err)
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	return info.State.Subjects
}
