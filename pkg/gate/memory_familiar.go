package gate

import (
	"slices"
	"sync"
)

// memFamiliar holds, for a MemoryStore, the sources familiar to each user
// (smart lockout): at most Familiar.Max per user, each with the time of
// its latest login, and at most maxUsers users, an arbitrary one dropped
// to make room (an in-memory store serves one instance; its users'
// familiar sources are a small part of its memory, not counted in
// MemoryOptions.MaxBytes).
type memFamiliar struct {
	mu       sync.Mutex
	users    map[string][]famSource
	maxUsers int
}

type famSource struct {
	id string
	at int64 // unix ns of its latest login as the user
}

// familiar reports whether one of f's sources logged in as f.User within
// f.For before now.
func (m *memFamiliar) familiar(f *Familiar, now int64) bool {
	if f == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.users[f.User] {
		if now-s.at <= int64(f.For) && slices.Contains(f.Sources, s.id) {
			return true
		}
	}
	return false
}

// learn makes f's sources familiar to f.User as of now.
func (m *memFamiliar) learn(f *Familiar, now int64) {
	if f == nil || !f.Learn || len(f.Sources) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users == nil {
		m.users = map[string][]famSource{}
	}
	set, known := m.users[f.User]
	if !known && len(m.users) >= m.maxUsers {
		for u := range m.users { // make room: an arbitrary user
			delete(m.users, u)
			break
		}
	}
	set = slices.DeleteFunc(set, func(s famSource) bool {
		return now-s.at > int64(f.For) || slices.Contains(f.Sources, s.id)
	})
	for _, id := range f.Sources {
		set = append(set, famSource{id: id, at: now})
	}
	if len(set) > f.Max { // the least recent go first
		set = slices.Delete(set, 0, len(set)-f.Max)
	}
	m.users[f.User] = set
}

// activeOp is op without the counters whose condition does not hold
// (Counter.When), and the index in op of each counter kept. All are kept
// (idx nil) when none has a condition.
func activeOp(op Op, familiar bool) (Op, []int) {
	if !op.conditional() {
		return op, nil
	}
	kept := make([]Counter, 0, len(op.Counters))
	idx := make([]int, 0, len(op.Counters))
	for i, c := range op.Counters {
		if c.When == Always || (c.When == IfFamiliar) == familiar {
			kept = append(kept, c)
			idx = append(idx, i)
		}
	}
	op.Counters = kept
	return op, idx
}

// expand is r, the result of the active counters idx of an op of n
// counters, as the result of the whole op: the others 0 failures, nothing
// to settle.
func expand(r Result, n int, idx []int, familiar bool) Result {
	r.Familiar = familiar
	if idx == nil {
		return r
	}
	spread := func(in []int, fill int) []int {
		if in == nil {
			return nil
		}
		out := make([]int, n)
		for i := range out {
			out[i] = fill
		}
		for j, i := range idx {
			out[i] = in[j]
		}
		return out
	}
	r.Failures = spread(r.Failures, 0)
	r.Lockouts = spread(r.Lockouts, -1)
	r.Pending = spread(r.Pending, 0)
	if r.Counted != nil {
		out := make([]bool, n)
		for i := range out {
			out[i] = true
		}
		for j, i := range idx {
			out[i] = r.Counted[j]
		}
		r.Counted = out
	}
	return r
}
