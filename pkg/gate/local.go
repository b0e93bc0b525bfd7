package gate

import (
	"math"
	"sync"
	"time"
)

// The local limiter decides for the gate when its store does not answer
// in time (FailLocal): a MemoryStore of this process with the gate's
// policy, which knows what the store told this process.
//
// While the store answers, every answer is copied into it (sync): the
// blocks, failure counts and lockouts the store reported, and a mirror
// charge for every attempt this process sent to Begin, from before the
// call until the store's answer refuses it or its outcome settles it.
// So when a call is late, the limiter decides with the blocks the store
// last reported and counts the attempts the store admitted to this
// process, and those still in flight: at most limit+1 attempts per
// subject reach the password check through this process, whatever the
// store does.
//
// What the limiter decides alone (the outcomes of its own admissions, and
// of store charges whose outcome could not be written) goes to a backlog,
// which the gate replays to the store, in order, once it answers again:
// the counts are not forgotten. Until the store has them, the limiter
// keeps the higher of its own counts and the store's (entry.unconfirmed);
// afterwards the store's answers are copied as they are, so a success or
// an unblock on another process reaches this one's limiter too.

// reserve charges op.Token on every counter as a mirror charge: an
// attempt about to be sent to the store's Begin, which counts here until
// the store's answer or its outcome removes it. A mirror charge that
// expires turns into a failure, as in the store, until the store's next
// answer tells the count.
//
// Where the limiter knows what the store does not (failures it counted
// that are not replayed yet, attempts it admitted alone), the store's
// answer would not count them: reserve then applies Begin's rules here
// first, and refuses as Begin would (refused true). So an attempt reaches
// the password check through this process only within limit+1 of what
// the process knows, the store's admissions and its own together.
func (s *MemoryStore) reserve(op Op) (res Result, refused bool) {
	var c memCall
	if c.open(s, op, true) != nil {
		return Result{}, false
	}
	defer c.close()
	for i := 0; i < c.n; i++ {
		if e := c.e[i]; e != nil && e.localOnly() {
			c.begin = true
			c.settleAll()
			if res, refused = c.refusal(); refused {
				return res, true
			}
			break
		}
	}
	c.createAll() // full: the store decides alone what has no room here
	ch := charge{token: op.Token, at: c.now, mirror: true, expires: forever, keep: forever}
	if p := &s.policy; p.PendingTimeout > 0 {
		// Kept as long as the failure it turns into would be: expiring,
		// it counts until the store's next answer.
		ch.expires = addDur(c.now, p.PendingTimeout)
		if p.AttemptCooloff > 0 {
			ch.keep = addDur(ch.expires, p.AttemptCooloff)
		}
	}
	for i := 0; i < c.n; i++ {
		if c.e[i] != nil {
			c.charge(i, ch)
		}
	}
	return Result{}, false
}

// localOnly reports that e holds what its store does not know yet:
// failures counted here, or a charge of an attempt admitted here alone.
func (e *entry) localOnly() bool {
	if e.unconfirmed > 0 {
		return true
	}
	for i := range e.pending {
		if !e.pending[i].mirror {
			return true
		}
	}
	return false
}

// release removes op.Token's charges, counting nothing.
func (s *MemoryStore) release(op Op) {
	var c memCall
	if c.open(s, op, true) != nil {
		return
	}
	defer c.close()
	for i := 0; i < c.n; i++ {
		if c.e[i] != nil {
			c.uncharge(i, op.Token)
		}
	}
}

// storeAnswer is what sync copies: the store's result of one call for
// an op, and how to take it.
type storeAnswer struct {
	res *Result
	// sent is when the call was sent (unix ns, before its turn among the
	// calls in flight). An answer sent after the limiter took the
	// previous one of a subject shows a later state, and replaces it;
	// answers of calls that overlapped may arrive in any order, and are
	// merged, keeping the higher counts and the blocks.
	sent int64
	// success says the call reported a success: where the answer shows a
	// counter clear, the store cleared it.
	success bool
	// confirmed is the number of failures counted here that this call
	// brought to the store (a backlog replay).
	confirmed int32
	// release removes op.Token's charges (its outcome is settled), in
	// the same step: between the two, the attempt would count nowhere.
	release bool
	// begin marks the answer of Begin. Refused, the call's mirror charge
	// is released; admitted, it is known to be a store charge, and with
	// the store's count of charges pending (Result.Pending) the mirror
	// charges known so beyond that count are charges another gate
	// instance settled, and are dropped.
	begin bool
}

// sync copies what the store answered to op into the limiter: failure
// counts, blocks and lockouts of op's counters. The failures counted here
// that have not reached the store yet (entry.unconfirmed) are added to
// the store's count, and block here when the sum passes the limit. For
// answers that overlapped the last one taken, it keeps the higher counts
// and the blocks, so that a late answer forgets nothing. It returns the
// blocks it made here.
func (s *MemoryStore) sync(op Op, a storeAnswer) []Transition {
	var c memCall
	if c.open(s, op, true) != nil {
		return nil
	}
	defer c.close()
	p, res := &s.policy, a.res
	for i := 0; i < c.n; i++ {
		ct := &op.Counters[i]
		// Released with the outcome, refused, or counted by Begin as a
		// failure at once (in the store's count copied below, which would
		// count it twice here).
		counted := a.begin && res.Admitted && i < len(res.Counted) && res.Counted[i]
		if (a.release || a.begin && !res.Admitted || counted) && c.e[i] != nil {
			c.uncharge(i, op.Token)
		}
		if ct.When == IfUnfamiliar && res.Familiar {
			continue // the store neither read nor wrote it: nothing to copy
		}
		failures := 0
		if i < len(res.Failures) {
			failures = min(res.Failures[i], math.MaxInt32)
		}
		var block BlockState
		blocked := false
		for _, b := range res.Blocked {
			if b.Kind == ct.Kind {
				block, blocked = b, true
			}
		}
		lockouts := -1 // unknown
		if i < len(res.Lockouts) {
			lockouts = res.Lockouts[i]
		}
		for _, t := range res.Transitions {
			if t.Kind == ct.Kind && t.Blocked {
				lockouts = max(lockouts, t.Lockouts)
			}
		}
		if p.LockoutMemory <= 0 {
			lockouts = -1 // every lockout is the first
		}
		e := c.e[i]
		if e == nil {
			if failures == 0 && !blocked && lockouts <= 0 {
				continue // nothing to remember
			}
			if e = c.s.insert(c.sh[i], c.ki[i], ct.Subject, c.now, c.e[:c.n]); e == nil {
				continue // full of what only the limiter knows: that is kept
			}
			c.e[i] = e
		}
		e.expire(c.now, c.sh[i])
		if a.sent > e.synced {
			c.dropSettledElsewhere(i)
		}
		if a.begin && res.Admitted && i < len(res.Pending) {
			c.dropSettledMirrors(i, res.Pending[i], a.sent)
		}
		e.unconfirmed = max(0, e.unconfirmed-a.confirmed)
		later := a.sent > e.synced
		if later && a.success && !ct.KeepOnSuccess && failures == 0 && !blocked {
			e.unconfirmed = 0 // cleared: what came before is moot
		}
		exact := later && e.unconfirmed == 0
		if later {
			e.synced = c.now
		}
		// The store's count does not hold the failures counted here alone.
		known := int32(min(int64(failures)+int64(e.unconfirmed), math.MaxInt32))
		if later || known > e.failures {
			e.failures = known
			e.failUntil = forever
			if p.AttemptCooloff > 0 {
				e.failUntil = addDur(c.now, p.AttemptCooloff)
			}
		}
		switch {
		case blocked:
			until := int64(forever)
			if !block.Permanent {
				until = addDur(c.now, max(block.TTL, time.Millisecond))
			}
			if exact || !e.blocked || until > e.blockUntil {
				e.blockUntil = until
			}
			if !e.blocked {
				c.sh[i].markBlocked(e)
			}
		case exact && e.blocked:
			c.sh[i].unmarkBlocked(e)
		}
		if lockouts >= 0 && (exact || int32(lockouts) > e.lockouts) {
			e.lockouts = int32(min(lockouts, math.MaxInt32))
			e.lockoutUntil = addDur(c.now, p.LockoutMemory)
		}
		if e.unconfirmed > 0 {
			// Together, the store's failures and this process's pass the
			// limit: this process blocks, as it would had it counted
			// them all itself. (Without failures of its own, a count
			// above the limit and no block is a block that expired: the
			// store's rules admit one attempt at a time then.)
			c.maybeBlock(i)
		}
	}
	return c.trans
}

// dropSettledMirrors marks counter i's mirror charge of the call as
// admitted by the store, and keeps, of the mirror charges so marked, at
// most as many as the store has pending besides the call's own, dropping
// the oldest: the others' outcomes were reported to another gate
// instance. (Those still pending in the store are among its count, so as
// many are kept as are pending; charges of calls not answered yet are
// never dropped.) Without this, each charge settled elsewhere would count
// here until its pending timeout, and a store outage would then refuse
// the subject here.
//
// Only charges whose own answer was taken before the call was sent count:
// the store had them when it ran the call. The answer of a call that
// overlapped a later one may arrive after it, and knows nothing of the
// later one's charge; dropping that charge would let the limiter admit
// one attempt too many while the store is late
// (TestLocalStaleAnswerKeepsLaterCharges).
func (c *memCall) dropSettledMirrors(i, storePending int, sent int64) {
	e := c.e[i]
	own := c.op.Token
	if j := e.chargeIndex(own); j >= 0 {
		e.pending[j].admittedAt = max(c.now, 1) // 0 is "not yet"
		storePending--                          // the call's own charge
	}
	known := func(ch *charge) bool {
		return ch.mirror && ch.admittedAt != 0 && ch.admittedAt < sent && ch.token != own
	}
	n := 0
	for j := range e.pending {
		if known(&e.pending[j]) {
			n++
		}
	}
	for excess := n - max(storePending, 0); excess > 0; excess-- {
		oldest := -1
		for j := range e.pending {
			if known(&e.pending[j]) && (oldest < 0 || e.pending[j].at < e.pending[oldest].at) {
				oldest = j
			}
		}
		c.uncharge(i, e.pending[oldest].token)
	}
}

// localChargeGrace is how long a charge the local limiter made alone is
// kept once its store answers again: an attempt is past its password
// check by then, and its outcome was counted (here, or as a failure by
// the gate instance it was reported to, which replays it to the store).
const localChargeGrace = 5 * time.Second

// dropSettledElsewhere drops counter i's charges the limiter made alone
// more than localChargeGrace (or the pending timeout) ago: the store
// answers again, and their outcomes went to another gate instance (the
// gate service's outcomes sent round robin). Kept until their pending
// timeout, they refused every busy user of this instance for that long
// after an outage (556 of 1,446 logins in TestRedisKilledDuringLogins).
func (c *memCall) dropSettledElsewhere(i int) {
	e := c.e[i]
	grace := localChargeGrace
	if p := c.s.policy.PendingTimeout; p > 0 {
		grace = min(grace, p)
	}
	before := c.now - int64(grace)
	for j := 0; j < len(e.pending); {
		if ch := e.pending[j]; !ch.mirror && ch.at < before {
			c.uncharge(i, ch.token)
			continue
		}
		j++
	}
}

// localFinish is Finish for the local limiter deciding alone: it also
// reports whether op.Token was pending here (an outcome the store must
// learn), and marks a failure it counts unconfirmed in the same step, so
// that no store answer taken in between forgets it.
//
// storeCounted says the store counted the attempt at Begin (its mirror
// charge went with that answer, whose count the limiter copied): a
// success clears here as the store's Finish would have, rather than
// leave the copied charge standing until the replay reaches the store.
func (s *MemoryStore) localFinish(op Op, success, storeCounted bool) (res Result, pending bool) {
	var c memCall
	if op.Token == "" || c.open(s, op, true) != nil {
		return Result{}, false
	}
	defer c.close()
	if pending = c.finish(success); pending && !success {
		c.unconfirm(1)
	}
	if success && storeCounted && !pending {
		for i := 0; i < c.n; i++ {
			switch e := c.e[i]; {
			case e == nil:
			case !op.Counters[i].KeepOnSuccess:
				c.clear(i)
			case e.failures > 0:
				e.failures-- // only this attempt's charge goes
			}
		}
	}
	return c.result(), pending
}

// localRecord is Record for the local limiter deciding alone, marking a
// failure it counts unconfirmed in the same step.
func (s *MemoryStore) localRecord(op Op, success bool) Result {
	var c memCall
	if c.open(s, op, true) != nil {
		return Result{}
	}
	defer c.close()
	res := c.record(success)
	if res.Admitted && !success {
		c.unconfirm(1)
	}
	return res
}

// unconfirm adds delta to the failures counted here that the store has
// not been told yet, on every counter of the call.
func (c *memCall) unconfirm(delta int32) {
	for i := 0; i < c.n; i++ {
		if e := c.e[i]; e != nil {
			e.unconfirmed = max(0, e.unconfirmed+delta)
		}
	}
}

// unconfirm adds delta to the outcomes counted here that the store has
// not been told yet, on every counter of op.
func (s *MemoryStore) unconfirm(op Op, delta int32) {
	var c memCall
	if c.open(s, op, true) != nil {
		return
	}
	defer c.close()
	c.unconfirm(delta)
}

// replay is an outcome the local limiter decided, waiting to be written
// to the store.
type replay struct {
	seq uint64 // its place in the backlog
	op  Op     // a copy: counters and token of its own
	ip  string // the attempt's address, for the transitions it makes
	// finish replays Finish of a charge the store made (op.Token); else
	// the attempt was admitted locally and is replayed with Record.
	finish  bool
	success bool
	// counted says the local limiter counted the outcome as an
	// unconfirmed failure, which its replay, or its loss, then settles.
	counted bool
	// recall is the Finish (a failure, which counts nothing) of a Record
	// the fail mode refused, to learn what it did should it have run in
	// the store all the same (Gate.queueRecall); with begin, the recall
	// of a Begin whose call failed, which reads only (queueBeginRecall).
	recall, begin bool
	queued        time.Time
	size          int64
}

// Bounds of the backlog. Past them the oldest outcomes are dropped (and
// counted): the store then never learns them, as before the backlog.
const (
	backlogMaxItems = 100_000
	backlogMaxBytes = 32 << 20
	replayBatch     = 64
	// backlogMaxRecalls bounds the recalls waiting: one per refused
	// Record would let a blocked attacker fill the backlog with them
	// while the store is late, pushing out the outcomes it must learn.
	// Past it a recall is not kept.
	backlogMaxRecalls = 1024
)

// backlog is the queue of replays, oldest first.
type backlog struct {
	mu    sync.Mutex
	items []replay
	head  int // items[:head] are done
	bytes int64
	seq   uint64 // of the last replay pushed
	// recalls is the number of items that are recalls, of Records and of
	// Begins (replay.begin), each kind bound apart.
	recalls [2]int
	wake    chan struct{}
}

// push appends r and reports the replays dropped to make room; a recall
// past backlogMaxRecalls is not appended (refused).
func (b *backlog) push(r replay) (dropped []replay, refused bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.recall && b.recalls[b2i(r.begin)] >= backlogMaxRecalls {
		return nil, true
	}
	for len(b.items)-b.head >= backlogMaxItems || (b.bytes+r.size > backlogMaxBytes && len(b.items) > b.head) {
		dropped = append(dropped, b.items[b.head])
		b.drop()
	}
	if b.head > len(b.items)/2 { // compact
		n := copy(b.items, b.items[b.head:])
		clear(b.items[n:])
		b.items, b.head = b.items[:n], 0
	}
	b.seq++
	r.seq = b.seq
	b.items = append(b.items, r)
	b.bytes += r.size
	if r.recall {
		b.recalls[b2i(r.begin)]++
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return dropped, false
}

// drop removes the replay at the front.
func (b *backlog) drop() {
	b.bytes -= b.items[b.head].size
	if r := &b.items[b.head]; r.recall {
		b.recalls[b2i(r.begin)]--
	}
	b.items[b.head] = replay{}
	b.head++
}

// peek copies up to n replays from the front.
func (b *backlog) peek(n int) []replay {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, len(b.items)-b.head)
	return append([]replay(nil), b.items[b.head:b.head+n]...)
}

// pop removes the replays at the front up to the one numbered seq (those
// written; push may have dropped some of them meanwhile), and returns how
// many it removed.
func (b *backlog) pop(seq uint64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for b.head < len(b.items) && b.items[b.head].seq <= seq {
		b.drop()
		n++
	}
	if b.head == len(b.items) {
		b.items, b.head = b.items[:0], 0
	}
	return n
}

// len is the number of replays waiting.
func (b *backlog) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items) - b.head
}

// newReplay copies op for the backlog.
func newReplay(op Op, ip string, finish, success, counted bool) replay {
	r := replay{op: Op{Counters: append([]Counter(nil), op.Counters...), Token: op.Token}, ip: ip,
		finish: finish, success: success, counted: counted, queued: time.Now()}
	r.size = 96 + int64(len(op.Token)+len(ip))
	for _, c := range op.Counters {
		r.size += 64 + int64(len(c.Subject))
	}
	return r
}
