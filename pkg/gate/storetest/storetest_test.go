package storetest_test

import (
	"testing"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/gate/storetest"
)

// TestMemoryStore checks the suite itself against the store that needs no
// server: one MemoryStore shared by every subtest.
func TestMemoryStore(t *testing.T) {
	s := gate.NewMemoryStore(gate.MemoryOptions{})
	t.Cleanup(func() { s.Close() })
	storetest.Run(t, func(*testing.T) gate.Store { return s })
}
