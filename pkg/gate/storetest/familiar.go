package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// smart is the op of a login to a fresh user from source, under smart
// lockout: the user's two counters, limit 2 each, the unfamiliar one first.
type smart struct {
	user    string
	max     int
	age     time.Duration
	counter [2]gate.Counter
}

func newSmart(max int, age time.Duration) *smart {
	u := "st-" + random(8)
	return &smart{user: u, max: max, age: age, counter: [2]gate.Counter{
		{Kind: gate.KindUsername, Subject: u, Limit: 2, When: gate.IfUnfamiliar},
		{Kind: gate.KindUsernameFamiliar, Subject: u, Limit: 2, When: gate.IfFamiliar},
	}}
}

func (m *smart) from(sources ...string) gate.Op {
	return withToken(gate.Op{Counters: m.counter[:], Familiar: &gate.Familiar{
		User: m.user, Sources: sources, For: m.age, Max: m.max, Learn: true}})
}

// testFamiliarKeepsAccess: the unfamiliar counter's block, however many
// sources fail, refuses only unfamiliar ones: a source that logged in as
// the user before goes on, and its success clears its own counter only.
func testFamiliarKeepsAccess(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	m := newSmart(20, long)
	home := "ip:" + counter(gate.KindIP, 0).Subject
	r := s.record(m.from(home), true)
	require.True(t, r.Admitted)
	assert.False(t, r.Familiar, "not familiar before its first login")

	for i := range 3 {
		r = s.record(m.from("ip:"+counter(gate.KindIP, 0).Subject), false)
		require.True(t, r.Admitted, "attacker %d", i)
		assert.False(t, r.Familiar)
	}
	require.Len(t, r.Blocked, 1, "the third unfamiliar failure blocks")
	assert.Equal(t, gate.KindUsername, r.Blocked[0].Kind)
	_, r = s.begin(m.from("ip:" + counter(gate.KindIP, 0).Subject))
	assert.False(t, r.Admitted, "another unfamiliar source is refused")

	a, r := s.begin(m.from(home))
	require.True(t, r.Admitted, "the familiar source goes on")
	assert.True(t, r.Familiar)
	assert.Empty(t, r.Blocked)
	assert.Equal(t, []int{0, 1}, r.Failures, "counted on the familiar counter only")
	r = s.finish(a, true)
	assert.Equal(t, []int{0, 0}, r.Failures)
	assert.Empty(t, r.Transitions, "its success lifts nothing of the unfamiliar counter")
	_, r = s.begin(m.from("ip:" + counter(gate.KindIP, 0).Subject))
	assert.False(t, r.Admitted, "the unfamiliar block stays")
}

// testFamiliarCounterBlocksFamiliar: failures from familiar sources block
// them alone, and a device is a source like an address.
func testFamiliarCounterBlocksFamiliar(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	m := newSmart(20, long)
	device := "dev:" + random(8)
	s.record(m.from("ip:"+counter(gate.KindIP, 0).Subject, device), true)
	var r gate.Result
	for range 3 {
		r = s.record(m.from("ip:"+counter(gate.KindIP, 0).Subject, device), false)
		assert.True(t, r.Familiar, "the device is familiar from any address")
	}
	require.Len(t, r.Blocked, 1)
	assert.Equal(t, gate.KindUsernameFamiliar, r.Blocked[0].Kind)
	_, r = s.begin(m.from(device))
	assert.False(t, r.Admitted)
	_, r = s.begin(m.from("ip:" + counter(gate.KindIP, 0).Subject))
	assert.True(t, r.Admitted, "unfamiliar sources are counted apart")
	assert.False(t, r.Familiar)
}

// testFamiliarBounded: a user keeps at most Max sources, the least recent
// dropped; a source is familiar for Age after its latest login; a failure
// teaches nothing; without sources nothing is familiar.
func testFamiliarBounded(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	m := newSmart(2, 600*time.Millisecond)
	a, b, c := "ip:198.51.100.1", "ip:198.51.100.2", "dev:"+random(4)
	// Logins a few ms apart: a store may keep times in ms.
	s.record(m.from(a), true)
	s.clock.Sleep(5 * time.Millisecond)
	s.record(m.from(b), true)
	s.clock.Sleep(5 * time.Millisecond)
	s.record(m.from(c), true)
	assert.False(t, s.check(m.from(a)).Familiar, "the least recent was dropped")
	assert.True(t, s.check(m.from(b)).Familiar)
	assert.True(t, s.check(m.from(c)).Familiar)

	s.record(m.from("ip:198.51.100.9"), false)
	assert.False(t, s.check(m.from("ip:198.51.100.9")).Familiar, "a failure teaches nothing")
	assert.False(t, s.check(m.from()).Familiar, "no sources, nothing familiar")
	o := m.from(b)
	o.Familiar = nil
	assert.False(t, s.check(o).Familiar)

	s.clock.Sleep(400 * time.Millisecond)
	s.record(m.from(c), true) // renews c
	s.clock.Sleep(400 * time.Millisecond)
	assert.False(t, s.check(m.from(b)).Familiar, "b's login is older than the age")
	assert.True(t, s.check(m.from(c)).Familiar, "c logged in since")
}

// testFamiliarTwoPhase: Begin and Finish apply the conditions, a pending
// last chance on the unfamiliar counter blocks it alone, and a success
// settled once teaches its sources.
func testFamiliarTwoPhase(t *testing.T, s *suite) {
	s.use(policy(time.Minute))
	m := newSmart(20, long)
	var last gate.Op
	for i := range 3 {
		a, r := s.begin(m.from("ip:" + counter(gate.KindIP, 0).Subject))
		require.True(t, r.Admitted, "attempt %d", i)
		assert.Equal(t, i == 2, r.LastChance)
		last = a
	}
	r := s.finish(last, false)
	require.Len(t, r.Blocked, 1)
	assert.Equal(t, gate.KindUsername, r.Blocked[0].Kind)

	home := "dev:" + random(6)
	a, r := s.begin(m.from(home))
	assert.False(t, r.Admitted, "a new device is unfamiliar: refused")
	r = s.finish(a, true)
	assert.False(t, r.Familiar, "familiarity is read before the success teaches")
}
