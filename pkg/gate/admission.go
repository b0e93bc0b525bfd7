package gate

import (
	"sync/atomic"
	"time"
)

// admission bounds the store calls that logins of this process wait for
// at once. A login whose call cannot start before its deadline is told
// so at once, and decided by the fail mode, instead of queueing behind
// the others past its deadline: under a burst, the calls queued in the
// client and ran late, and every late call was taken for an outage.
//
// The gate's background work (settling outcomes, replaying the local
// limiter's backlog) has its own few goroutines and does not pass here.
type admission struct {
	slots   chan struct{} // one token per call in flight
	waiting atomic.Int64  // calls waiting for a slot
	maxWait int64
	// service is a moving average of how long a call holds its slot, in
	// nanoseconds: what a waiter expects to wait per turn.
	service atomic.Int64
	// Peaks since the gate started, for tests.
	peakInFlight, peakWaiting atomic.Int64
}

// waitFactor bounds the calls waiting for a slot, in slots.
const waitFactor = 4

func newAdmission(slots int) *admission {
	return &admission{slots: make(chan struct{}, slots), maxWait: int64(waitFactor * slots)}
}

// acquire takes a slot, waiting until deadline at most (less the time a
// call takes). It gives up at once when waitFactor times the slots are
// waiting already, or when the calls ahead, at the recent pace, would
// not let this one start and end before its deadline.
func (a *admission) acquire(deadline time.Time) bool {
	select {
	case a.slots <- struct{}{}:
		peak(&a.peakInFlight, int64(len(a.slots)))
		return true
	default:
	}
	w := a.waiting.Add(1)
	defer a.waiting.Add(-1)
	// Waiting is worth it only for a call that can also end in time: it
	// needs its turn, then a call's time, before the deadline.
	service := time.Duration(a.service.Load())
	remaining := time.Until(deadline) - service
	ahead := time.Duration(w * int64(service) / int64(cap(a.slots)))
	if w > a.maxWait || remaining <= 0 || ahead >= remaining {
		return false
	}
	peak(&a.peakWaiting, w)
	t := time.NewTimer(remaining)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		peak(&a.peakInFlight, int64(len(a.slots)))
		return true
	case <-t.C:
		return false
	}
}

// release gives back the slot of a call that took took.
func (a *admission) release(took time.Duration) {
	<-a.slots
	old := a.service.Load()
	a.service.Store(old + (int64(took)-old)/8) // a lost update only smooths more
}

// inFlight is the number of calls holding a slot now.
func (a *admission) inFlight() int { return len(a.slots) }

// peak raises p to v if v is higher.
func peak(p *atomic.Int64, v int64) {
	for old := p.Load(); v > old && !p.CompareAndSwap(old, v); old = p.Load() {
	}
}
