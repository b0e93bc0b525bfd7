package storetest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/gate/storetest"
)

// TestMemoryStore checks the suite itself against the store that needs no
// server: a MemoryStore per subtest, as each applies its own policy, on a
// clock of its own that the suite's waits move.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, p gate.Policy) (gate.Store, storetest.Clock) {
		clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		s := gate.NewMemoryStore(gate.MemoryOptions{Policy: p, Clock: clock.Now})
		t.Cleanup(func() { s.Close() })
		return s, clock
	})
}

// fakeClock is a clock whose Sleep moves it at once.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
