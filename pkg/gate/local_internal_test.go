package gate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// localFixture is a local limiter with a clock the test moves, and the
// op of one username with limit 3.
type localFixture struct {
	t     *testing.T
	now   time.Time
	local *MemoryStore
	op    Op
}

func newLocalFixture(t *testing.T) *localFixture {
	f := &localFixture{t: t, now: time.Unix(1_700_000_000, 0)}
	f.local = NewMemoryStore(MemoryOptions{Policy: DefaultConfig().Policy(), Clock: func() time.Time { return f.now }, SweepInterval: -1})
	f.local.keepLocal = true
	f.op = Op{Counters: []Counter{{Kind: KindUsername, Subject: "carol", Limit: 3}}}
	return f
}

// token is f's op with a token.
func (f *localFixture) token(tok string) Op {
	o := f.op
	o.Token = tok
	return o
}

// answer is a store result for f's op.
func (f *localFixture) answer(failures int, blocked bool) *Result {
	r := &Result{Failures: []int{failures}}
	if blocked {
		r.Blocked = []BlockState{{Kind: KindUsername, Subject: "carol", TTL: 5 * time.Minute}}
	}
	return r
}

// sent is a send time relative to the fixture's clock.
func (f *localFixture) sent(d time.Duration) int64 { return f.now.Add(d).UnixNano() }

// state is what the limiter's Check says of f's op.
func (f *localFixture) state() (failures int, blocked bool) {
	r, err := f.local.Check(context.Background(), f.op)
	require.NoError(f.t, err)
	return r.Failures[0], len(r.Blocked) > 0
}

// TestLocalMirrorChargeIsTheStores: a mirror charge counts while its
// attempt is in flight; when it expires it turns into a failure, as in the
// store, until the store's next answer says what the store counted (an
// outcome reported to another gate instance). So does a charge the
// limiter made alone: its outcome went to another instance (which counted
// a failure) or nowhere.
func TestLocalMirrorChargeIsTheStores(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	for i := range 4 {
		_, refused := f.local.reserve(f.token("mirror-" + string(rune('a'+i))))
		require.False(t, refused)
	}
	r, err := f.local.Begin(ctx, f.token("local"))
	require.NoError(t, err)
	assert.Equal(t, []Kind{KindUsername}, r.Saturated, "four attempts in flight fill the budget")

	f.now = f.now.Add(f.local.policy.PendingTimeout + time.Second)
	f.local.sweep() // the sweeper keeps them: the failures they become
	r, err = f.local.Begin(ctx, f.token("local"))
	require.NoError(t, err)
	assert.False(t, r.Admitted, "four abandoned attempts are four failures: blocked")
	assert.Equal(t, []int{4}, r.Failures)
	f.local.sync(f.op, storeAnswer{res: f.answer(0, false), sent: f.sent(time.Millisecond)})
	failures, blocked := f.state()
	assert.Zero(t, failures, "the store settled them: their outcomes were reported elsewhere")
	assert.False(t, blocked)

	r, err = f.local.Begin(ctx, f.token("alone.local"))
	require.NoError(t, err)
	require.True(t, r.Admitted)
	f.now = f.now.Add(f.local.policy.PendingTimeout + time.Second)
	_, err = f.local.Begin(ctx, f.token("next.local")) // settles the expired charge
	require.NoError(t, err)
	f.local.release(f.token("next.local"))
	failures, _ = f.state()
	assert.Equal(t, 1, failures, "a charge made here alone turns into a failure")
	f.local.sync(f.op, storeAnswer{res: f.answer(0, false), sent: f.sent(time.Millisecond)})
	failures, _ = f.state()
	assert.Zero(t, failures, "until the store's next answer")
}

// TestLocalSyncAddsWhatTheStoreHasNot: failures counted here alone are
// added to every store count until they are replayed; the sum blocks here
// when it passes the limit, though neither count does alone.
func TestLocalSyncAddsWhatTheStoreHasNot(t *testing.T) {
	f := newLocalFixture(t)
	for range 2 {
		r := f.local.localRecord(f.op, false)
		require.True(t, r.Admitted)
	}
	failures, blocked := f.state()
	require.Equal(t, 2, failures)
	require.False(t, blocked)

	ts := f.local.sync(f.op, storeAnswer{res: f.answer(2, false), sent: f.sent(0)})
	failures, blocked = f.state()
	assert.Equal(t, 4, failures, "the store's two and the two counted here")
	assert.True(t, blocked, "four failures pass the limit of three")
	require.Len(t, ts, 1, "a block made here, to publish as local")
	assert.True(t, ts[0].Blocked)

	// The replays reach the store one by one: its answers include them.
	f.now = f.now.Add(time.Millisecond)
	f.local.sync(f.op, storeAnswer{res: f.answer(3, false), sent: f.sent(0), confirmed: 1})
	failures, blocked = f.state()
	assert.Equal(t, 4, failures)
	assert.True(t, blocked, "one of this process's failures is still the store's to learn")
	f.now = f.now.Add(time.Millisecond)
	f.local.sync(f.op, storeAnswer{res: f.answer(4, true), sent: f.sent(0), confirmed: 1})
	failures, blocked = f.state()
	assert.Equal(t, 4, failures)
	assert.True(t, blocked)
	assert.Zero(t, f.local.shardFor(1, "carol").m[1]["carol"].unconfirmed, "every failure confirmed")
}

// TestLocalSyncOrdersAnswers: an answer sent after the limiter took the
// previous one replaces it (a success or an unblock on another process);
// one sent before, which arrived late, only adds what it knows.
func TestLocalSyncOrdersAnswers(t *testing.T) {
	f := newLocalFixture(t)
	f.local.sync(f.op, storeAnswer{res: f.answer(4, true), sent: f.sent(0)})
	f.now = f.now.Add(10 * time.Millisecond)

	f.local.sync(f.op, storeAnswer{res: f.answer(1, false), sent: f.sent(-20 * time.Millisecond)})
	failures, blocked := f.state()
	assert.Equal(t, 4, failures, "a late answer of an overlapping call lowers nothing")
	assert.True(t, blocked)

	f.local.sync(f.op, storeAnswer{res: f.answer(0, false), sent: f.sent(time.Millisecond)})
	failures, blocked = f.state()
	assert.Zero(t, failures, "a later answer: the store forgot (an unblock elsewhere)")
	assert.False(t, blocked)
}

// TestLocalReserve: with nothing but the store's state, reserve only
// charges (the store decides); once the limiter holds what the store has
// not, reserve refuses as Begin would, so that this process's attempts
// stay within limit+1 whatever the store admits it.
func TestLocalReserve(t *testing.T) {
	f := newLocalFixture(t)
	for i := range 10 {
		_, refused := f.local.reserve(f.token("store-" + string(rune('a'+i))))
		require.False(t, refused, "the store's state alone: the store decides")
	}
	for i := range 10 {
		f.local.release(f.token("store-" + string(rune('a'+i))))
	}

	r, err := f.local.Begin(context.Background(), f.token("x.local"))
	require.NoError(t, err)
	require.True(t, r.Admitted)
	_, pending := f.local.localFinish(f.token("x.local"), false, false)
	require.True(t, pending)
	// One failure the store has not; two in flight to it: one more fits.
	for _, tok := range []string{"a", "b", "c"} {
		_, refused := f.local.reserve(f.token(tok))
		require.False(t, refused, tok)
	}
	res, refused := f.local.reserve(f.token("d"))
	require.True(t, refused, "1 failure + 3 in flight = limit+1")
	assert.Equal(t, []Kind{KindUsername}, res.Saturated)

	// A replay of a failure settled already is not pending: it counts
	// nothing, and is not the store's to learn.
	_, pending = f.local.localFinish(f.token("x.local"), false, false)
	assert.False(t, pending)
}

// TestBacklogBounds: the backlog keeps the newest outcomes within its
// bounds and hands the oldest back when it drops them.
func TestBacklogBounds(t *testing.T) {
	var b backlog
	b.wake = make(chan struct{}, 1)
	op := Op{Counters: []Counter{{Kind: KindIP, Subject: "192.0.2.1", Limit: 3}}}
	push := func(b *backlog, r replay) []replay {
		dropped, refused := b.push(r)
		require.False(t, refused)
		return dropped
	}
	var dropped int
	for range backlogMaxItems + 10 {
		dropped += len(push(&b, newReplay(op, "", false, false, true)))
	}
	assert.Equal(t, 10, dropped)
	assert.Equal(t, backlogMaxItems, b.len())
	got := b.peek(3)
	require.Len(t, got, 3)
	assert.Equal(t, 3, b.pop(got[2].seq))
	assert.Equal(t, backlogMaxItems-3, b.len())
	assert.LessOrEqual(t, b.bytes, int64(backlogMaxBytes))

	// Outcomes pushed while a batch is written drop the oldest, some of
	// the batch among them: removing the batch removes no newer one.
	for range 3 {
		require.Empty(t, push(&b, newReplay(op, "", false, false, true)))
	}
	batch := b.peek(replayBatch)
	for range 10 {
		require.Len(t, push(&b, newReplay(op, "", false, false, true)), 1)
	}
	assert.Equal(t, replayBatch-10, b.pop(batch[len(batch)-1].seq), "only what is left of the batch")
	assert.Equal(t, backlogMaxItems-(replayBatch-10), b.len(), "the 10 new outcomes are still there")
	assert.Greater(t, b.peek(1)[0].seq, batch[len(batch)-1].seq)

	var big backlog
	big.wake = make(chan struct{}, 1)
	long := op
	long.Counters = []Counter{{Kind: KindUsername, Subject: string(make([]byte, 64<<10)), Limit: 3}}
	for range 1000 {
		push(&big, newReplay(long, "", false, false, true))
	}
	assert.LessOrEqual(t, big.bytes, int64(backlogMaxBytes), "bounded by bytes as well")
	assert.Less(t, big.len(), 1000)

	// Recalls (of Records the fail mode refused) are bounded apart: past
	// backlogMaxRecalls one is refused, and never pushes out an outcome.
	var rb backlog
	rb.wake = make(chan struct{}, 1)
	recall := newReplay(op, "", true, false, false)
	recall.recall = true
	for range backlogMaxRecalls {
		require.Empty(t, push(&rb, recall))
	}
	dropped2, refused := rb.push(recall)
	assert.True(t, refused, "one recall too many")
	assert.Empty(t, dropped2)
	assert.Equal(t, backlogMaxRecalls, rb.len())
	require.Empty(t, push(&rb, newReplay(op, "", false, false, true)), "an outcome is still taken")
	assert.Equal(t, 10, rb.pop(rb.peek(10)[9].seq))
	require.Empty(t, push(&rb, recall), "room again once recalls were written")
	assert.Equal(t, backlogMaxRecalls-9, rb.recalls[0], "10 written, one more waits")

	// A late Begin's recalls have a bound of their own: a flood of them
	// (every attempt of an attacker while the store is late) leaves the
	// Records' recalls their room, and the other way round.
	begin := recall
	begin.begin = true
	for range backlogMaxRecalls {
		require.Empty(t, push(&rb, begin))
	}
	_, refused = rb.push(begin)
	assert.True(t, refused, "one Begin recall too many")
	records := rb.recalls[0]
	require.Empty(t, push(&rb, recall), "a Record's recall is taken while Begin recalls are full")
	assert.Equal(t, [2]int{records + 1, backlogMaxRecalls}, rb.recalls)
}

// TestLocalForgetsChargesSettledElsewhere: attempts this process sent to
// the store, whose outcomes another gate instance settled, leave mirror
// charges here; the store's count of charges pending in a later Begin's
// answer drops them, so that a store outage then does not refuse the
// subject here for the pending timeout. Charges of calls not answered yet
// are kept, however old: under load an answer can come late.
func TestLocalForgetsChargesSettledElsewhere(t *testing.T) {
	f := newLocalFixture(t)
	admitted := func(tok string, pending int) {
		res := &Result{Failures: []int{0}, Admitted: true, Pending: []int{pending}}
		f.local.sync(f.token(tok), storeAnswer{res: res, sent: f.sent(0), begin: true})
	}
	for i, tok := range []string{"a", "b", "c"} {
		_, refused := f.local.reserve(f.token(tok))
		require.False(t, refused)
		admitted(tok, i+1)
	}
	_, refused := f.local.reserve(f.token("unanswered")) // a call in flight, older than the next
	require.False(t, refused)
	f.now = f.now.Add(time.Second)
	_, refused = f.local.reserve(f.token("e"))
	require.False(t, refused)
	admitted("e", 2) // a, b and c were settled elsewhere; the store holds "e" and the call in flight
	e := f.local.shardFor(1, "carol").m[1]["carol"]
	var left []string
	for _, ch := range e.pending {
		left = append(left, ch.token)
	}
	assert.ElementsMatch(t, []string{"c", "unanswered", "e"}, left,
		"one of the answered ones kept for the store's other pending charge; the unanswered call and the answer's own kept")
}

// TestLocalKeepsWhatOnlyItKnows: while its store is away, a flood of new
// names cannot make the local limiter forget the failures of a victim that
// only it counted: full of such failures, it refuses new subjects instead
// of evicting them (a flood of 150,000 names let an attacker through 3
// more guesses each time before). A memory store that is the store itself
// evicts as before.
func TestLocalKeepsWhatOnlyItKnows(t *testing.T) {
	op := func(user string) Op {
		return Op{Counters: []Counter{{Kind: KindUsername, Subject: user, Limit: 3}}}
	}
	for _, limiter := range []bool{true, false} {
		s := NewMemoryStore(MemoryOptions{Policy: DefaultConfig().Policy(), MaxEntries: 200, Shards: 1, SweepInterval: -1})
		s.keepLocal = limiter
		for range 3 {
			require.True(t, s.localRecord(op("victim"), false).Admitted)
		}
		refused := 0
		for i := range 10_000 {
			if r := s.localRecord(op(fmt.Sprintf("flood-%d", i)), false); !r.Admitted {
				refused++
				require.Equal(t, []Kind{KindUsername}, r.Saturated)
			}
		}
		r, err := s.Check(context.Background(), op("victim"))
		require.NoError(t, err)
		st := s.stats()
		t.Logf("limiter %t: %d of 10,000 new names refused, %d entries, victim's failures %v", limiter, refused, st.Entries, r.Failures)
		if limiter {
			assert.Equal(t, []int{3}, r.Failures, "the victim's failures outlive the flood")
			assert.Positive(t, refused)
			assert.EqualValues(t, refused, st.Refused)
			r = s.localRecord(op("victim"), false)
			assert.Len(t, r.Blocked, 1, "and its next failure blocks")
		} else {
			assert.Zero(t, refused, "the store itself makes room")
			assert.Equal(t, []int{0}, r.Failures)
		}
		assert.LessOrEqual(t, st.Entries, 200)
		s.Close()
	}
}

// BenchmarkLocalMirror is what the local limiter adds to a login while the
// store answers: the mirror charge before Begin, the copy of Begin's
// answer, and the copy of Finish's answer with the charge's release, for
// an IP and a username.
func BenchmarkLocalMirror(b *testing.B) {
	local := NewMemoryStore(MemoryOptions{Policy: DefaultConfig().Policy(), SweepInterval: -1})
	local.keepLocal = true
	defer local.Close()
	begin := &Result{Failures: []int{0, 0}, Admitted: true, Pending: []int{1, 1}, Lockouts: []int{0, 0}}
	finish := &Result{Failures: []int{1, 1}}
	i := 0
	for b.Loop() {
		i++
		op := Op{Counters: []Counter{
			{Kind: KindIP, Subject: fmt.Sprintf("10.0.%d.%d", i>>8&255, i&255), Limit: 3},
			{Kind: KindUsername, Subject: fmt.Sprintf("user-%d", i%10_000), Limit: 3},
		}, Token: fmt.Sprintf("t-%d", i)}
		sent := time.Now().UnixNano()
		local.reserve(op)
		local.sync(op, storeAnswer{res: begin, sent: sent, begin: true})
		local.sync(op, storeAnswer{res: finish, sent: time.Now().UnixNano(), release: true})
	}
}

// TestLocalSuccessClearsWhatOnlyItCounted: a success the limiter counts
// clears the failures it counted alone too: the store's next answer does
// not bring them back (they would block the user who just logged in).
func TestLocalSuccessClearsWhatOnlyItCounted(t *testing.T) {
	f := newLocalFixture(t)
	for range 3 {
		require.True(t, f.local.localRecord(f.op, false).Admitted)
	}
	_, refused := f.local.reserve(f.token("in-flight")) // keeps the entry
	require.False(t, refused)
	require.True(t, f.local.localRecord(f.op, true).Admitted)
	f.local.sync(f.op, storeAnswer{res: f.answer(1, false), sent: f.sent(time.Millisecond)})
	failures, _ := f.state()
	assert.Equal(t, 1, failures, "the store's one failure, not four")
}

// TestLocalDropsItsOwnChargesOnceTheStoreAnswers: charges the limiter
// made alone during an outage, whose outcomes went to another gate
// instance, are dropped when the store answers again, once they are older
// than localChargeGrace; younger ones (attempts still at their password
// check) are kept.
func TestLocalDropsItsOwnChargesOnceTheStoreAnswers(t *testing.T) {
	f := newLocalFixture(t)
	for _, tok := range []string{"old-1.local", "old-2.local"} {
		r, err := f.local.Begin(context.Background(), f.token(tok))
		require.NoError(t, err)
		require.True(t, r.Admitted)
	}
	f.now = f.now.Add(localChargeGrace + time.Second)
	r, err := f.local.Begin(context.Background(), f.token("young.local"))
	require.NoError(t, err)
	require.True(t, r.Admitted)
	f.local.sync(f.op, storeAnswer{res: f.answer(0, false), sent: f.sent(time.Millisecond)})
	e := f.local.shardFor(1, "carol").m[1]["carol"]
	require.NotNil(t, e)
	var left []string
	for _, ch := range e.pending {
		left = append(left, ch.token)
	}
	assert.Equal(t, []string{"young.local"}, left)
}

// TestLocalCountedChargeReleasedAndCleared: Begin's answer that the store
// counted the attempt at once releases its mirror charge (the copied count
// holds it, once), and its success, when the store does not take it,
// clears the limiter as the store's Finish would have.
func TestLocalCountedChargeReleasedAndCleared(t *testing.T) {
	f := newLocalFixture(t)
	op := f.token("counted")
	_, refused := f.local.reserve(op)
	require.False(t, refused)
	ans := f.answer(3, false) // two earlier failures and this attempt
	ans.Admitted, ans.Counted, ans.Pending = true, []bool{true}, []int{0}
	f.local.sync(op, storeAnswer{res: ans, sent: f.sent(0), begin: true})
	failures, _ := f.state()
	assert.Equal(t, 3, failures, "the store's count, the attempt in it once")
	r, err := f.local.Begin(context.Background(), f.token("next"))
	require.NoError(t, err)
	assert.True(t, r.LastChance, "3 counted, none pending: the next is the last chance")

	f.local.release(f.token("next"))
	res, pending := f.local.localFinish(op, true, true)
	assert.False(t, pending, "no charge of its own here")
	assert.Equal(t, []int{0}, res.Failures, "the success clears, as the store's Finish would")
}

// TestLocalStaleAnswerKeepsLaterCharges: two Begins of one process in
// flight at once; the store takes X (a failure counted at once, the third)
// then Y (the last chance, a pending charge), but X's answer reaches the
// limiter after Y's. X's answer, which knew nothing of Y, must not drop
// Y's charge as settled elsewhere: the limiter then still counts Y, and
// refuses a fifth attempt decided here while the store is late.
func TestLocalStaleAnswerKeepsLaterCharges(t *testing.T) {
	f := newLocalFixture(t)
	for _, tok := range []string{"x", "y"} {
		_, refused := f.local.reserve(f.token(tok))
		require.False(t, refused)
	}
	f.local.sync(f.token("y"), storeAnswer{begin: true, sent: f.sent(-time.Millisecond),
		res: &Result{Admitted: true, Failures: []int{3}, Pending: []int{1}, Counted: []bool{false}}})
	f.local.sync(f.token("x"), storeAnswer{begin: true, sent: f.sent(-2 * time.Millisecond),
		res: &Result{Admitted: true, Failures: []int{3}, Pending: []int{0}, Counted: []bool{true}}})
	r, err := f.local.Begin(context.Background(), f.token("z.local"))
	require.NoError(t, err)
	assert.False(t, r.Admitted, "three failures and Y in flight: no fifth attempt")
}

// TestLocalKeepsTheLastChanceAfterAShortAnswer: Redis's Begin answers
// are fed to the local limiter as the gate does (reserve, Begin, sync).
// Username limit 3: two failures, the user's own attempt (on another
// instance) counted, the attacker's last chance held open here, then the
// user's success clears the count (the last chance stays pending). The
// attacker's next attempt here must say the charge still pending, else
// the limiter drops the last chance's mirror charge as settled elsewhere
// and, once Redis is late, admits one attempt too many: the last chance,
// this one and those decided locally stay within limit+1.
func TestLocalKeepsTheLastChanceAfterAShortAnswer(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	srv := testenv.Redis(t)
	s := NewRedisStore(srv.Client(), "lcs", f.local.policy)
	step := func() { f.now = f.now.Add(time.Millisecond) }
	viaGate := func(tok string) Result { // what Gate.Begin does with a store answer
		o := f.token(tok)
		_, refused := f.local.reserve(o)
		require.False(t, refused)
		sent := f.now.UnixNano()
		step()
		r, err := s.Begin(ctx, o)
		require.NoError(t, err)
		f.local.sync(o, storeAnswer{res: &r, sent: sent, begin: true})
		step()
		return r
	}
	for _, tok := range []string{"f1", "f2"} {
		require.True(t, viaGate(tok).Admitted)
	}
	user := f.token("user") // the user's own login, on another instance
	r, err := s.Begin(ctx, user)
	require.NoError(t, err)
	require.True(t, r.Admitted)
	lc := viaGate("lc")
	require.True(t, lc.LastChance)
	_, err = s.Finish(ctx, user, true)
	require.NoError(t, err)

	a := viaGate("a")
	require.True(t, a.Admitted)
	n, err := srv.Client().ZCard(ctx, "lcs:pending:username:carol").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the last chance is still pending")
	assert.Equal(t, []int{1}, a.Pending, "Result.Pending: the charges pending after the call")

	// Redis late: the limiter decides alone.
	local := 0
	for i := range 5 {
		r, err := f.local.Begin(ctx, f.token(fmt.Sprintf("late%d%s", i, localToken)))
		require.NoError(t, err)
		if r.Admitted {
			local++
		}
	}
	assert.LessOrEqual(t, 2+local, 4, "in flight: the last chance, the attempt counted at once, %d decided locally: at most limit+1", local)
}
