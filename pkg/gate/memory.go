package gate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryOptions configures a MemoryStore. The zero value is usable.
type MemoryOptions struct {
	// Policy is the policy the store applies: a gate's store must apply
	// the gate's, Config.Policy(). Default (nothing set): that of
	// DefaultConfig().
	Policy Policy
	// MaxEntries bounds the number of subjects tracked (a subject is one
	// Kind and Subject with its failures, charges, block and lockout
	// history). Default 1,000,000; values below 3 are raised to 3, as one
	// call may need three entries at once. Each shard holds
	// MaxEntries/Shards entries, so eviction may begin slightly before the
	// whole store is full; the total never exceeds MaxEntries.
	MaxEntries int
	// MaxBytes bounds the memory the tracked subjects take, as counted by
	// the store: each entry's fixed cost (entryBytes) plus its subject,
	// and each pending charge's (chargeBytes) plus its token. Attackers
	// choose how long a username is, so an entry bound alone let 1.1 M
	// names of 255 four-byte characters take 2 GB. Default 128 MiB
	// (DefaultMemoryMaxBytes). Go's collector lets the heap grow to about
	// twice what is live: budget twice this for the store.
	MaxBytes int64
	// Shards is the number of independently locked partitions. Default 64;
	// rounded down to a power of two, and lowered so that every shard holds
	// at least 64 entries.
	Shards int
	// Clock returns the current time. Default time.Now; tests inject a fake
	// clock to test expiry without sleeping.
	Clock func() time.Time
	// SweepInterval is how often the background sweeper looks for expired
	// entries. Default 1 s; negative: no sweeper (expired entries are then
	// dropped only when touched or when room is needed).
	SweepInterval time.Duration
}

// memoryStats are counters of a MemoryStore for metrics.
type memoryStats struct {
	// Entries is the number of subjects tracked now, expired ones not yet
	// swept included. Never above MemoryOptions.MaxEntries.
	Entries int
	// Bytes is the memory the entries take as the store counts it (see
	// MemoryOptions.MaxBytes).
	Bytes int64
	// Evictions counts live entries dropped to make room for a new
	// subject, since the store was created.
	Evictions uint64
	// EvictedBlocks counts, among Evictions, entries that were blocked: a
	// block is evicted only when its shard holds nothing but blocks.
	EvictedBlocks uint64
	// Expired counts entries removed because everything in them had
	// expired, since the store was created.
	Expired uint64
	// Refused counts attempts a local limiter refused for want of room:
	// full of what only it knows (failures its store has not had, attempts
	// it admitted alone), it keeps that rather than make room.
	Refused uint64
}

// MemoryStore is a Store kept in the memory of one process: the store of a
// single gate instance, and of tests. It applies the same rules as
// RedisStore. It is sharded (one lock per shard; a call locks the shards
// of its counters in a fixed order), expires entries lazily on access and
// with an incremental background sweeper, and never tracks more than
// MemoryOptions.MaxEntries subjects: when full it drops expired entries
// first, then plain failure counters, and blocks only when nothing else is
// left in a shard.
//
// Create it with NewMemoryStore and stop its sweeper with Close.
type MemoryStore struct {
	shards        []memShard
	mask          uint64
	perShard      int
	perShardBytes int64
	seed          maphash.Seed
	clock         func() time.Time
	policy        Policy

	entries atomic.Int64
	bytes   atomic.Int64
	refused atomic.Uint64
	// keepLocal makes the store a local limiter: see victim.
	keepLocal     bool
	evictions     atomic.Uint64
	evictedBlocks atomic.Uint64
	expired       atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	fam       memFamiliar // smart lockout's familiar sources
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore. Unless
// opts.SweepInterval is negative it starts a sweeper goroutine, which
// Close stops.
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = 1_000_000
	}
	maxEntries = max(maxEntries, numKinds)
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMemoryMaxBytes
	}
	shards := opts.Shards
	if shards <= 0 {
		shards = 64
	}
	shards = min(shards, 1<<16)
	for shards&(shards-1) != 0 {
		shards &= shards - 1 // keep the highest bit: round down to a power of two
	}
	for shards > 1 && (maxEntries/shards < minPerShard || maxBytes/int64(shards) < minShardBytes) {
		shards /= 2
	}
	s := &MemoryStore{
		shards:        make([]memShard, shards),
		mask:          uint64(shards - 1),
		perShard:      maxEntries / shards,
		perShardBytes: maxBytes / int64(shards),
		seed:          maphash.MakeSeed(),
		clock:         opts.Clock,
		policy:        opts.Policy.clone(),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
		fam:           memFamiliar{maxUsers: max(1024, maxEntries/8)},
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.policy.isZero() {
		s.policy = DefaultConfig().Policy()
	}
	for i := range s.shards {
		s.shards[i].init()
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Second
	}
	if interval < 0 {
		close(s.done)
		return s
	}
	go s.sweeper(interval)
	return s
}

// Close stops the background sweeper and waits for it to return. The
// store stays usable afterwards, without sweeping. Close is idempotent.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Policy returns the policy the store applies.
func (s *MemoryStore) Policy() Policy { return s.policy.clone() }

// stats returns the store's counters (the defender_gate_memory_* metrics).
func (s *MemoryStore) stats() memoryStats {
	return memoryStats{
		Entries:       int(s.entries.Load()),
		Bytes:         s.bytes.Load(),
		Evictions:     s.evictions.Load(),
		EvictedBlocks: s.evictedBlocks.Load(),
		Expired:       s.expired.Load(),
		Refused:       s.refused.Load(),
	}
}

// conditional runs call on op's counters whose condition holds (smart
// lockout, Counter.When) and returns its result as op's. A success that
// took effect (learn) teaches op's sources.
func (s *MemoryStore) conditional(op Op, call func(op Op) (res Result, learn bool, err error)) (Result, error) {
	if !op.conditional() { // the common case: call validates it, once
		res, learn, err := call(op)
		if err == nil && learn {
			s.fam.learn(op.Familiar, s.clock().UnixNano())
		}
		return res, err
	}
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("gate: memory store: %w", err)
	}
	familiar := op.conditional() && s.fam.familiar(op.Familiar, s.clock().UnixNano())
	active, idx := activeOp(op, familiar)
	if len(active.Counters) == 0 {
		return expand(Result{Admitted: true}, len(op.Counters), idx, familiar), nil
	}
	res, learn, err := call(active)
	if err != nil {
		return Result{}, err
	}
	if learn {
		s.fam.learn(op.Familiar, s.clock().UnixNano())
	}
	return expand(res, len(op.Counters), idx, familiar), nil
}

// Check reports blocks and failure counts. It writes nothing.
func (s *MemoryStore) Check(_ context.Context, op Op) (Result, error) {
	return s.conditional(op, func(op Op) (Result, bool, error) {
		res, err := s.check(op)
		return res, false, err
	})
}

func (s *MemoryStore) check(op Op) (Result, error) {
	var c memCall
	if err := c.open(s, op, false); err != nil {
		return Result{}, err
	}
	defer c.close()
	now := c.now
	res := Result{Failures: make([]int, c.n)}
	for i := 0; i < c.n; i++ {
		e := c.e[i]
		if e == nil {
			continue
		}
		if e.failures > 0 && e.failUntil > now {
			res.Failures[i] = int(e.failures)
		}
		if e.blocked && e.blockUntil > now && !c.op.Counters[i].ReportOnly {
			res.Blocked = append(res.Blocked, e.state(c.op.Counters[i], now))
		}
	}
	return res, nil
}

// Begin refuses the attempt if a counter is blocked or saturated, and
// otherwise charges op.Token on every counter; see Store.Begin.
func (s *MemoryStore) Begin(_ context.Context, op Op) (Result, error) {
	if op.Token == "" {
		return Result{}, errors.New("gate: memory store: Begin without a token")
	}
	return s.conditional(op, func(op Op) (Result, bool, error) {
		res, err := s.begin(op)
		return res, false, err
	})
}

func (s *MemoryStore) begin(op Op) (Result, error) {
	var c memCall
	if err := c.open(s, op, true); err != nil {
		return Result{}, err
	}
	defer c.close()
	c.begin = true
	c.settleAll()
	if res, refused := c.refusal(); refused {
		return res, nil
	}
	if full := c.createAll(); full != nil {
		return c.refuseFull(full), nil
	}
	p := &s.policy
	ch := charge{token: op.Token, at: c.now, expires: forever, keep: forever}
	if p.PendingTimeout > 0 {
		ch.expires = addDur(c.now, p.PendingTimeout)
		if p.AttemptCooloff > 0 {
			ch.keep = addDur(ch.expires, p.AttemptCooloff)
		}
	}
	lastChance := false
	counted := make([]bool, c.n)
	for i := 0; i < c.n; i++ {
		ct := &c.op.Counters[i]
		e, limit := c.e[i], ct.Limit
		ch := ch
		switch {
		case ct.distinct() && e.hasMember(ct.Member):
			// counted already: a success removes the member
			ch.counted, ch.keep, counted[i] = true, ch.expires, true
		case ct.ReportOnly:
			c.fail(i) // its block is a report that refuses nobody
			ch.counted, ch.keep, counted[i] = true, ch.expires, true
		case min(int(e.failures), limit)+e.uncounted()+1 == limit+1:
			lastChance = true // pending: its failure would block
		case !s.keepLocal:
			// Counted as a failure at once, as RedisStore does. (A local
			// limiter keeps every charge pending: see local.go.)
			c.count(i, c.now)
			ch.counted, ch.keep, counted[i] = true, ch.expires, true
		}
		c.charge(i, ch)
	}
	res := c.result()
	res.Admitted = true
	res.LastChance = lastChance
	if !s.keepLocal {
		res.Counted = counted
	}
	return res, nil
}

// uncounted is the number of e's charges not counted as failures yet.
func (e *entry) uncounted() int {
	n := 0
	for i := range e.pending {
		if !e.pending[i].counted {
			n++
		}
	}
	return n
}

// refusal is Begin's refusal of the call's attempt, if a counter is
// blocked or saturated.
func (c *memCall) refusal() (Result, bool) {
	if c.anyBlocked() {
		return c.result(), true
	}
	var saturated []Kind
	for i := 0; i < c.n; i++ {
		if e := c.e[i]; e != nil {
			ct := &c.op.Counters[i]
			if ct.ReportOnly || ct.distinct() && e.hasMember(ct.Member) {
				continue // never saturated; a name counted adds nothing
			}
			limit := ct.Limit
			if min(int(e.failures), limit)+e.uncounted() >= limit+1 {
				saturated = append(saturated, c.op.Counters[i].Kind)
			}
		}
	}
	if saturated == nil {
		return Result{}, false
	}
	res := c.result()
	res.Saturated = saturated
	return res, true
}

// Finish settles a charge made by Begin; see Store.Finish.
func (s *MemoryStore) Finish(_ context.Context, op Op, success bool) (Result, error) {
	if op.Token == "" {
		return Result{}, errors.New("gate: memory store: Finish without a token")
	}
	return s.conditional(op, func(op Op) (Result, bool, error) {
		var c memCall
		if err := c.open(s, op, true); err != nil {
			return Result{}, false, err
		}
		defer c.close()
		taken := c.finish(success)
		return c.result(), success && taken, nil
	})
}

// finish settles op.Token where it is pending and reports whether it was
// anywhere.
func (c *memCall) finish(success bool) (pending bool) {
	c.settleAll()
	for i := 0; i < c.n; i++ {
		e := c.e[i]
		if e == nil {
			continue
		}
		// An outcome takes effect once: a token no longer pending (settled
		// already, or expired into a failure) changes nothing, whichever
		// outcome it reports now.
		j := e.chargeIndex(c.op.Token)
		if j < 0 {
			continue
		}
		counted := e.pending[j].counted
		c.uncharge(i, c.op.Token)
		pending = true
		switch {
		case success && c.op.Counters[i].distinct():
			if counted { // a pending charge added no member
				c.removeMember(i, c.op.Counters[i].Member)
			}
		case success && !c.op.Counters[i].KeepOnSuccess:
			c.clear(i)
		case success && counted:
			if e.failures > 0 { // only this attempt's charge goes
				e.failures--
			}
		case !success && !counted:
			c.fail(i)
		}
	}
	return pending
}

// Record is the one-call flow for an attempt whose outcome is known; see
// Store.Record.
func (s *MemoryStore) Record(_ context.Context, op Op, success bool) (Result, error) {
	return s.conditional(op, func(op Op) (Result, bool, error) {
		var c memCall
		if err := c.open(s, op, true); err != nil {
			return Result{}, false, err
		}
		defer c.close()
		res := c.record(success)
		return res, success && res.Admitted, nil
	})
}

// record counts an outcome unless a counter is blocked.
func (c *memCall) record(success bool) Result {
	c.settleAll()
	if c.anyBlocked() {
		return c.result()
	}
	if success {
		for i := 0; i < c.n; i++ {
			switch {
			case c.e[i] == nil:
			case c.op.Counters[i].distinct():
				c.removeMember(i, c.op.Counters[i].Member)
			case !c.op.Counters[i].KeepOnSuccess:
				c.clear(i)
			}
		}
	} else {
		if full := c.createAll(); full != nil {
			return c.refuseFull(full)
		}
		for i := 0; i < c.n; i++ {
			c.fail(i)
		}
	}
	res := c.result()
	res.Admitted = true
	return res
}

// Block blocks a subject by hand for d (0: permanent); see Store.Block.
func (s *MemoryStore) Block(_ context.Context, kind Kind, subject string, d time.Duration) (*Transition, error) {
	ki, err := kindIndex(kind)
	if err != nil {
		return nil, err
	}
	if subject == "" {
		return nil, errors.New("gate: memory store: empty subject")
	}
	if d < 0 {
		return nil, fmt.Errorf("gate: memory store: negative block duration %s", d)
	}
	sh := s.shardFor(ki, subject)
	now := s.clock().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[ki][subject]
	if e == nil {
		if e = s.insert(sh, ki, subject, now, nil); e == nil {
			return nil, errors.New("gate: memory store: full of what only it knows")
		}
	}
	e.expire(now, sh)
	was := e.blocked
	e.blockUntil = forever
	if d > 0 {
		e.blockUntil = addDur(now, d)
	}
	if !was {
		sh.markBlocked(e)
		return &Transition{Kind: kind, Subject: subject, Blocked: true, Duration: d, Permanent: d == 0}, nil
	}
	return nil, nil
}

// Unblock lifts a subject's block and forgets everything about it; see
// Store.Unblock.
func (s *MemoryStore) Unblock(_ context.Context, kind Kind, subject string) (*Transition, error) {
	ki, err := kindIndex(kind)
	if err != nil {
		return nil, err
	}
	sh := s.shardFor(ki, subject)
	now := s.clock().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[ki][subject]
	if e == nil {
		return nil, nil
	}
	was := e.blocked && e.blockUntil > now
	s.remove(sh, e)
	if !was {
		return nil, nil
	}
	return &Transition{Kind: kind, Subject: subject}, nil
}

// Blocked lists the subjects of one kind blocked now, at most limit
// (limit <= 0: all), those whose block ends first first and permanent
// blocks last. It walks each shard's list of blocked subjects of that
// kind, never the other entries. Shards are read one after the other, so
// the list is not one atomic snapshot.
func (s *MemoryStore) Blocked(_ context.Context, kind Kind, limit int) ([]BlockState, error) {
	ki, err := kindIndex(kind)
	if err != nil {
		return nil, err
	}
	now := s.clock().UnixNano()
	var out []BlockState
	var until []int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		l := &sh.blocks[ki]
		for e := l.front(); e != nil; {
			next := l.next(e)
			if e.blockUntil <= now {
				s.unblockExpired(sh, e, now)
			} else {
				out = append(out, e.state(Counter{Kind: kind, Subject: e.subject}, now))
				until = append(until, e.blockUntil)
			}
			e = next
		}
		sh.mu.Unlock()
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(until[a], until[b]); c != 0 {
			return c
		}
		return strings.Compare(out[a].Subject, out[b].Subject)
	})
	if limit > 0 && len(idx) > limit {
		idx = idx[:limit]
	}
	sorted := make([]BlockState, len(idx))
	for i, j := range idx {
		sorted[i] = out[j]
	}
	return sorted, nil
}

// charge is an attempt charged by Begin and not yet finished.
type charge struct {
	token string
	at    int64 // when it was made (unix ns)
	// mirror marks, in a local limiter, a charge of an attempt sent to its
	// store. An expired mirror charge turns into a failure, as in the
	// store, until the store's next answer tells the count.
	mirror bool
	// admittedAt is, for a mirror charge the store answered it had made,
	// when that answer was taken (unix ns; 0 until then; see local.go).
	admittedAt int64
	// counted marks an attempt Begin counted as a failure at once (see
	// Result.Counted): kept only so that its outcome takes effect once,
	// and dropped, counting nothing more, when it expires.
	counted bool
	// expires is when the charge turns into a failure (unix ns; forever
	// without a PendingTimeout).
	expires int64
	// keep is when the failure it turns into would be forgotten: until
	// then the charge keeps its entry alive.
	keep int64
}

// addFailure counts one failure that happened at t.
func (e *entry) addFailure(t int64, p *Policy) {
	if e.failures > 0 && e.failUntil <= t {
		e.failures = 0
	}
	if e.failures < math.MaxInt32 {
		e.failures++
	}
	e.failUntil = forever
	if p.AttemptCooloff > 0 {
		e.failUntil = addDur(t, p.AttemptCooloff)
	}
}

// state describes e's current block for counter c.
func (e *entry) state(c Counter, now int64) BlockState {
	if e.blockUntil == forever {
		return BlockState{Kind: c.Kind, Subject: c.Subject, Permanent: true}
	}
	return BlockState{Kind: c.Kind, Subject: c.Subject, TTL: time.Duration(e.blockUntil - now)}
}

// memCall is one store call in progress, holding the locks of the shards
// of its counters.
type memCall struct {
	s     *MemoryStore
	op    Op
	now   int64
	n     int
	write bool
	begin bool // report Result.Lockouts
	ki    [numKinds]uint8
	sh    [numKinds]*memShard
	e     [numKinds]*entry
	locks [numKinds]int // shard indexes locked, ascending, distinct
	nl    int
	trans []Transition
}

// open validates op, locks the shards of its counters in ascending order
// and looks up their entries.
func (c *memCall) open(s *MemoryStore, op Op, write bool) error {
	if err := validateOp(op, &s.policy); err != nil {
		return fmt.Errorf("gate: memory store: %w", err)
	}
	c.s, c.op, c.n, c.write = s, op, len(op.Counters), write
	for i, ct := range op.Counters {
		ki, _ := kindIndex(ct.Kind) // validated
		idx := s.shardIndex(ki, ct.Subject)
		c.ki[i], c.sh[i] = ki, &s.shards[idx]
		j := c.nl
		for j > 0 && c.locks[j-1] > idx {
			j--
		}
		if j > 0 && c.locks[j-1] == idx {
			continue
		}
		copy(c.locks[j+1:c.nl+1], c.locks[j:c.nl])
		c.locks[j] = idx
		c.nl++
	}
	for _, idx := range c.locks[:c.nl] {
		if write {
			s.shards[idx].mu.Lock()
		} else {
			s.shards[idx].mu.RLock()
		}
	}
	c.now = s.clock().UnixNano()
	for i, ct := range op.Counters {
		c.e[i] = c.sh[i].m[c.ki[i]][ct.Subject]
	}
	return nil
}

// close drops the entries left empty, marks the others as written, and
// unlocks.
func (c *memCall) close() {
	if c.write {
		for i := 0; i < c.n; i++ {
			e := c.e[i]
			if e == nil || e.next == nil { // absent, or already removed
				continue
			}
			if e.empty() {
				c.s.remove(c.sh[i], e)
			} else {
				c.sh[i].touch(e)
			}
		}
		for i := 0; i < c.n; i++ {
			if c.sh[i].bytes > c.s.perShardBytes { // charges grew
				c.s.makeRoom(c.sh[i], c.ki[i], c.now, c.e[:c.n], 0, 0)
			}
		}
	}
	for j := c.nl - 1; j >= 0; j-- {
		if c.write {
			c.s.shards[c.locks[j]].mu.Unlock()
		} else {
			c.s.shards[c.locks[j]].mu.RUnlock()
		}
	}
}

// settleAll forgets what has expired in the call's entries and turns
// charges older than Policy.PendingTimeout into failures, which may block.
func (c *memCall) settleAll() {
	for i := 0; i < c.n; i++ {
		e := c.e[i]
		if e == nil {
			continue
		}
		e.expire(c.now, c.sh[i])
		converted := false
		kept := e.pending[:0]
		var freed int64
		for _, ch := range e.pending {
			if ch.expires >= c.now { // not older than PendingTimeout yet
				kept = append(kept, ch)
				continue
			}
			freed += chargeBytes + int64(len(ch.token))
			if ch.counted {
				continue // counted at Begin already
			}
			// The charge became a failure when it expired: count it then,
			// so that a charge found late slides its counter as it would
			// have if it had been found in time. In a local limiter this
			// counts until the store's next answer: a mirror charge is
			// the store's to count; a charge the limiter made alone that
			// was never settled here had its outcome reported to another
			// gate instance, which counted it if it failed (with the
			// gate service's outcomes sent round robin, keeping such
			// charges as failures refused every busy user after an
			// outage), or was abandoned.
			if c.op.Counters[i].distinct() {
				// a name whose outcome never came: its token stands for it
				c.addMember(i, ch.token, ch.expires)
			} else {
				e.addFailure(ch.expires, &c.s.policy)
			}
			converted = true
		}
		clear(e.pending[len(kept):])
		e.pending = kept
		c.s.grow(c.sh[i], -freed)
		if converted {
			if e.failures > 0 && e.failUntil <= c.now {
				e.failures = 0
			}
			c.maybeBlock(i)
		}
	}
}

// charge adds ch to counter i's charges; a token charged again is
// charged once, as in Redis's set.
func (c *memCall) charge(i int, ch charge) {
	e := c.e[i]
	if j := e.chargeIndex(ch.token); j >= 0 {
		e.pending[j] = ch
		return
	}
	e.pending = append(e.pending, ch)
	c.s.grow(c.sh[i], chargeBytes+int64(len(ch.token)))
}

// uncharge removes token from counter i's charges and reports whether it
// was there.
func (c *memCall) uncharge(i int, token string) bool {
	e := c.e[i]
	j := e.chargeIndex(token)
	if j < 0 {
		return false
	}
	e.pending = slices.Delete(e.pending, j, j+1)
	c.s.grow(c.sh[i], -(chargeBytes + int64(len(token))))
	return true
}

// fail counts a failure now on counter i, which may block its subject.
func (c *memCall) fail(i int) {
	c.count(i, c.now)
	c.maybeBlock(i)
}

// count counts the attempt as a failure at t on counter i: one more, or
// its member for a counter of distinct members.
func (c *memCall) count(i int, t int64) {
	if ct := &c.op.Counters[i]; ct.distinct() {
		c.addMember(i, ct.Member, t)
		return
	}
	c.e[i].addFailure(t, &c.s.policy)
}

// hasMember reports whether m is counted in e now.
func (e *entry) hasMember(m string) bool {
	return e.failures > 0 && slices.Contains(e.members, m)
}

// addMember counts member m at t on counter i, of distinct members: a new
// member is one failure more. Like SADD and PEXPIRE in Redis, a member
// counted already renews the window too.
func (c *memCall) addMember(i int, m string, t int64) {
	e := c.e[i]
	if e.failures > 0 && e.failUntil <= t {
		e.failures = 0
	}
	if e.failures == 0 && len(e.members) > 0 {
		c.dropMembers(i)
	}
	if !slices.Contains(e.members, m) {
		// One name more. (The local limiter's count can be higher than
		// the names it holds: it is the store's count, and its names are
		// those it saw fail itself; see MemoryStore.sync.)
		e.members = append(e.members, m)
		c.s.grow(c.sh[i], memberBytes+int64(len(m)))
		e.failures = min(e.failures, math.MaxInt32-1) + 1
	}
	e.failUntil = forever
	if d := c.s.policy.AttemptCooloff; d > 0 {
		e.failUntil = addDur(t, d)
	}
}

// removeMember forgets member m of counter i: its username logged in.
func (c *memCall) removeMember(i int, m string) {
	e := c.e[i]
	if e.failures == 0 {
		return
	}
	if j := slices.Index(e.members, m); j >= 0 {
		e.members = slices.Delete(e.members, j, j+1)
		c.s.grow(c.sh[i], -(memberBytes + int64(len(m))))
		e.failures--
	}
}

// dropMembers forgets the stale members of counter i.
func (c *memCall) dropMembers(i int) {
	e := c.e[i]
	var n int64
	for _, m := range e.members {
		n += memberBytes + int64(len(m))
	}
	e.members = nil
	c.s.grow(c.sh[i], -n)
}

// maybeBlock blocks counter i's subject if its failures are above the
// limit and it is not blocked yet.
func (c *memCall) maybeBlock(i int) {
	e, ct, p := c.e[i], c.op.Counters[i], &c.s.policy
	if e.blocked || int(e.failures) <= ct.Limit {
		return
	}
	if e.lockouts > 0 && e.lockoutUntil <= c.now {
		e.lockouts = 0
	}
	lockouts := min(e.lockouts, math.MaxInt32-1) + 1
	if p.LockoutMemory > 0 {
		e.lockouts, e.lockoutUntil = lockouts, addDur(c.now, p.LockoutMemory)
	} else {
		e.lockouts = 0 // no memory: every lockout is the first
	}
	d := p.LockoutCooloffs[min(int(lockouts)-1, len(p.LockoutCooloffs)-1)]
	t := Transition{Kind: ct.Kind, Subject: ct.Subject, Blocked: true, Failures: int(e.failures), Lockouts: int(lockouts)}
	e.blockUntil = forever
	if d > 0 {
		e.blockUntil = addDur(c.now, d)
		t.Duration = d
	} else {
		t.Permanent = true
	}
	c.sh[i].markBlocked(e)
	c.trans = append(c.trans, t)
}

// clear forgets counter i's failures and lifts its block (success).
func (c *memCall) clear(i int) {
	e := c.e[i]
	e.failures, e.unconfirmed = 0, 0
	if e.blocked {
		c.sh[i].unmarkBlocked(e)
		ct := c.op.Counters[i]
		c.trans = append(c.trans, Transition{Kind: ct.Kind, Subject: ct.Subject})
	}
}

func (c *memCall) anyBlocked() bool {
	for i := 0; i < c.n; i++ {
		if c.e[i] != nil && c.e[i].blocked && !c.op.Counters[i].ReportOnly {
			return true
		}
	}
	return false
}

// createAll creates the entries of the counters that have none. Only a
// local limiter, full of what nobody else knows, can fail to: it returns
// the kinds left without an entry then.
func (c *memCall) createAll() (full []Kind) {
	for i := 0; i < c.n; i++ {
		if c.e[i] == nil {
			c.e[i] = c.s.insert(c.sh[i], c.ki[i], c.op.Counters[i].Subject, c.now, c.e[:c.n])
			if c.e[i] == nil {
				full = append(full, c.op.Counters[i].Kind)
			}
		}
	}
	return full
}

// refuseFull is the refusal of an attempt the store has no room to count:
// as saturated, on the kinds left without an entry.
func (c *memCall) refuseFull(full []Kind) Result {
	c.s.refused.Add(1)
	res := c.result()
	res.Saturated = full
	return res
}

// result is the state of the call's counters, after settleAll and the
// call's changes; for Begin with the lockout and pending counts.
func (c *memCall) result() Result {
	size := c.n
	if c.begin {
		size *= 3 // one allocation for the three slices
	}
	buf := make([]int, size)
	res := Result{Failures: buf[:c.n:c.n], Transitions: c.trans}
	if c.begin {
		res.Lockouts, res.Pending = buf[c.n:2*c.n:2*c.n], buf[2*c.n:]
	}
	for i := 0; i < c.n; i++ {
		e := c.e[i]
		if e == nil {
			continue
		}
		res.Failures[i] = int(e.failures)
		if c.begin {
			res.Lockouts[i], res.Pending[i] = int(e.lockouts), e.uncounted()
		}
		if e.blocked && !c.op.Counters[i].ReportOnly {
			res.Blocked = append(res.Blocked, e.state(c.op.Counters[i], c.now))
		}
	}
	return res
}

// addDur returns t+d, saturating at forever.
func addDur(t int64, d time.Duration) int64 {
	if int64(d) > forever-t {
		return forever
	}
	return t + int64(d)
}
