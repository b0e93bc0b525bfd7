package storetest_test

import (
	"testing"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/gate/storetest"
)

// TestMemoryStore checks the suite itself against the store that needs no
// server: a MemoryStore per subtest, as each applies its own policy.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, p gate.Policy) gate.Store {
		s := gate.NewMemoryStore(gate.MemoryOptions{Policy: p})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
