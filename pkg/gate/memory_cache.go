package gate

// The bounded cache of a MemoryStore: its shards and their entries, the
// lists that order them for eviction and for Blocked, what they count
// towards MaxBytes, and the sweeper. The rules that count, block and
// settle are memCall's, in memory.go.

import (
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	numKinds    = 7  // len(Kinds)
	minPerShard = 64 // entries per shard at least, when MaxEntries allows
	// minShardBytes is a shard's byte budget at least, when MaxBytes
	// allows: room for a few of the longest entries.
	minShardBytes = 256 << 10
	// entryBytes is what the store counts for an entry besides its
	// subject: the entry itself, its map slot and the allocator's
	// rounding. chargeBytes is the same for a pending charge besides its
	// token. Measured with TestMemoryBytesTrackHeap.
	entryBytes     = 160
	chargeBytes    = 48
	memberBytes    = 16 // a member of a counter of distinct members, besides its bytes
	evictScan      = 8  // candidates looked at when choosing a victim
	keepScan       = 64 // entries passed over at most, in a local limiter, to find them
	sweepBudget    = 32 // entries looked at per shard, list and round
	sweepMaxRounds = 8  // rounds per shard and tick while many expire
	forever        = math.MaxInt64
)

// entry is what the store knows about one subject. All times are unix
// nanoseconds; forever means never.
type entry struct {
	subject      string
	pending      []charge // in charge order
	failUntil    int64    // when failures are forgotten
	blockUntil   int64    // when the block ends, if blocked
	lockoutUntil int64    // when the lockout count is forgotten
	prev, next   *entry   // in the shard's lru list, or its blocks list when blocked
	failures     int32
	lockouts     int32
	// In a local limiter: the failures counted here that its store has not
	// been told yet, and when it last took a store answer as it was (unix
	// ns). See MemoryStore.sync.
	unconfirmed int32
	synced      int64
	kind        uint8 // index in Kinds
	blocked     bool  // in the blocks list; the block may have expired since
	// members of a counter of distinct members (Counter.Member): valid
	// while failures > 0, when failures is their number; stale otherwise,
	// and dropped by the next addMember.
	members []string
}

// expire forgets what has expired in e by now, except charges.
func (e *entry) expire(now int64, sh *memShard) {
	if e.failures > 0 && e.failUntil <= now {
		e.failures, e.unconfirmed = 0, 0
	}
	if e.lockouts > 0 && e.lockoutUntil <= now {
		e.lockouts = 0
	}
	if e.blocked && e.blockUntil <= now {
		sh.unmarkBlocked(e)
	}
}

// deadline is when everything in e will have expired: after it, e can be
// dropped without changing any answer.
func (e *entry) deadline() int64 {
	var d int64
	if e.failures > 0 {
		d = max(d, e.failUntil)
	}
	if e.blocked {
		d = max(d, e.blockUntil)
	}
	if e.lockouts > 0 {
		d = max(d, e.lockoutUntil)
	}
	for i := range e.pending {
		d = max(d, e.pending[i].keep)
	}
	return d
}

// empty reports whether e holds nothing, once expired parts are forgotten.
func (e *entry) empty() bool {
	return e.failures == 0 && !e.blocked && e.lockouts == 0 && len(e.pending) == 0
}

// chargeIndex returns the index of token in e's charges, or -1.
func (e *entry) chargeIndex(token string) int {
	for i := range e.pending {
		if e.pending[i].token == token {
			return i
		}
	}
	return -1
}

// size is what e counts towards MemoryOptions.MaxBytes.
func (e *entry) size() int64 {
	n := int64(entryBytes + len(e.subject))
	for i := range e.pending {
		n += chargeBytes + int64(len(e.pending[i].token))
	}
	for _, m := range e.members {
		n += memberBytes + int64(len(m))
	}
	return n
}

// entryList is an intrusive doubly linked ring of entries around a
// sentinel.
type entryList struct {
	root entry
}

func (l *entryList) init() { l.root.prev, l.root.next = &l.root, &l.root }

func (l *entryList) front() *entry { return l.next(&l.root) }

func (l *entryList) next(e *entry) *entry {
	if e.next == &l.root {
		return nil
	}
	return e.next
}

func (l *entryList) pushBack(e *entry) {
	e.prev, e.next = l.root.prev, &l.root
	e.prev.next, l.root.prev = e, e
}

func unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// memShard is one independently locked part of a MemoryStore.
type memShard struct {
	mu    sync.RWMutex
	m     [numKinds]map[string]*entry
	n     int   // entries in m
	bytes int64 // their size, as entry.size counts it
	// lru holds the entries that are not blocked, least recently written
	// first: the eviction candidates.
	lru entryList
	// blocks holds, per kind, the blocked entries in block order.
	blocks [numKinds]entryList
	_      [64]byte // keep neighbouring shards' locks on different cache lines
}

func (sh *memShard) init() {
	for i := range sh.m {
		sh.m[i] = make(map[string]*entry)
		sh.blocks[i].init()
	}
	sh.lru.init()
}

func (sh *memShard) markBlocked(e *entry) {
	unlink(e)
	e.blocked = true
	sh.blocks[e.kind].pushBack(e)
}

func (sh *memShard) unmarkBlocked(e *entry) {
	unlink(e)
	e.blocked = false
	e.blockUntil = 0
	sh.lru.pushBack(e)
}

// touch marks e as just written, for eviction order.
func (sh *memShard) touch(e *entry) {
	if !e.blocked {
		unlink(e)
		sh.lru.pushBack(e)
	}
}

func kindIndex(k Kind) (uint8, error) {
	switch k {
	case KindIP:
		return 0, nil
	case KindUsername:
		return 1, nil
	case KindPair:
		return 2, nil
	case KindSpray:
		return 3, nil
	case KindSprayNet:
		return 4, nil
	case KindSprayShared:
		return 5, nil
	case KindUsernameFamiliar:
		return 6, nil
	}
	return 0, fmt.Errorf("gate: memory store: unknown kind %q", k)
}

func (s *MemoryStore) shardIndex(ki uint8, subject string) int {
	h := maphash.String(s.seed, subject)
	h ^= uint64(ki+1) * 0x9e3779b97f4a7c15
	h ^= h >> 29
	return int(h & s.mask)
}

func (s *MemoryStore) shardFor(ki uint8, subject string) *memShard {
	return &s.shards[s.shardIndex(ki, subject)]
}

// insert adds an empty entry for subject to sh, locked, making room first
// if sh is full. It never evicts an entry of protect.
func (s *MemoryStore) insert(sh *memShard, ki uint8, subject string, now int64, protect []*entry) *entry {
	if !s.makeRoom(sh, ki, now, protect, 1, int64(entryBytes+len(subject))) && s.keepLocal {
		return nil
	}
	e := &entry{subject: strings.Clone(subject), kind: ki}
	sh.m[ki][e.subject] = e
	sh.lru.pushBack(e)
	sh.n++
	s.entries.Add(1)
	s.grow(sh, e.size())
	return e
}

// makeRoom evicts entries of sh, locked, but those of protect, until
// entries more entries of bytes more bytes fit in its bounds, and reports
// whether they fit.
func (s *MemoryStore) makeRoom(sh *memShard, ki uint8, now int64, protect []*entry, entries int, bytes int64) bool {
	for sh.n+entries > s.perShard || sh.bytes+bytes > s.perShardBytes {
		v := s.victim(sh, ki, now, protect)
		if v == nil {
			return false // only protected entries left: one op may exceed the bound a little
		}
		if v.deadline() <= now {
			s.expired.Add(1)
		} else {
			s.evictions.Add(1)
			if v.blocked && v.blockUntil > now {
				s.evictedBlocks.Add(1)
			}
		}
		s.remove(sh, v)
	}
	return true
}

// grow counts delta more bytes in sh, locked.
func (s *MemoryStore) grow(sh *memShard, delta int64) {
	sh.bytes += delta
	s.bytes.Add(delta)
}

// victim chooses the entry of sh least worth keeping: an expired one if
// one is found, else the failure counter (no charge, no lockout history
// preferred) that expires first among the least recently written, and a
// block, ending first, only when sh holds no other entry. A local
// limiter (keepLocal) never evicts what only it knows (entry.localOnly):
// nil when nothing else is found.
func (s *MemoryStore) victim(sh *memShard, ki uint8, now int64, protect []*entry) *entry {
	var best *entry
	var bestRich bool
	var bestDeadline int64
	keep := func(e *entry) bool {
		return slices.Contains(protect, e) || s.keepLocal && e.localOnly() && e.deadline() > now
	}
	seen, looked := 0, 0
	for e := sh.lru.front(); e != nil && seen < evictScan && looked < keepScan; e = sh.lru.next(e) {
		looked++
		if keep(e) {
			continue
		}
		seen++
		d := e.deadline()
		if d <= now {
			return e
		}
		rich := len(e.pending) > 0 || e.lockouts > 0
		if best == nil || (!rich && bestRich) || (rich == bestRich && d < bestDeadline) {
			best, bestRich, bestDeadline = e, rich, d
		}
	}
	// Expired entries may hide behind long-lived ones: sample a few more.
	seen = 0
	for _, e := range sh.m[ki] {
		if seen++; seen > evictScan {
			break
		}
		if e.deadline() <= now && !keep(e) {
			return e
		}
	}
	if best != nil {
		return best
	}
	for k := range sh.blocks {
		seen = 0
		looked = 0
		for e := sh.blocks[k].front(); e != nil && seen < evictScan && looked < keepScan; e = sh.blocks[k].next(e) {
			looked++
			if keep(e) {
				continue
			}
			seen++
			if d := e.deadline(); best == nil || d < bestDeadline {
				best, bestDeadline = e, d
			}
		}
	}
	return best
}

// remove drops e from sh, locked.
func (s *MemoryStore) remove(sh *memShard, e *entry) {
	delete(sh.m[e.kind], e.subject)
	unlink(e)
	sh.n--
	s.entries.Add(-1)
	s.grow(sh, -e.size())
}

// unblockExpired handles an entry found in a blocks list whose block
// has ended: it is dropped if nothing else in it is live, else it goes
// back among the counters.
func (s *MemoryStore) unblockExpired(sh *memShard, e *entry, now int64) {
	sh.unmarkBlocked(e)
	if e.deadline() <= now {
		s.remove(sh, e)
		s.expired.Add(1)
	}
}

// sweeper removes expired entries every interval until Close.
func (s *MemoryStore) sweeper(interval time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.sweep()
		}
	}
}

// sweep looks, in every shard, at the least recently written entries, at
// the oldest blocks and at a sample of the others, and drops what has
// expired; it repeats in a shard while much of what it saw had expired.
func (s *MemoryStore) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		for round := 0; round < sweepMaxRounds; round++ {
			sh.mu.Lock()
			seen, gone := s.sweepShard(sh, s.clock().UnixNano())
			sh.mu.Unlock()
			if gone*4 <= seen {
				break
			}
		}
	}
}

func (s *MemoryStore) sweepShard(sh *memShard, now int64) (seen, gone int) {
	for e, k := sh.lru.front(), 0; e != nil && k < sweepBudget; k++ {
		next := sh.lru.next(e)
		seen++
		if e.deadline() <= now {
			s.remove(sh, e)
			s.expired.Add(1)
			gone++
		}
		e = next
	}
	for ki := range sh.blocks {
		l := &sh.blocks[ki]
		for e, k := l.front(), 0; e != nil && k < sweepBudget; k++ {
			next := l.next(e)
			seen++
			if e.blockUntil <= now {
				s.unblockExpired(sh, e, now)
				gone++
			}
			e = next
		}
	}
	for ki := range sh.m {
		k := 0
		for _, e := range sh.m[ki] {
			if k++; k > sweepBudget {
				break
			}
			seen++
			if e.deadline() <= now {
				s.remove(sh, e)
				s.expired.Add(1)
				gone++
			}
		}
	}
	return seen, gone
}
