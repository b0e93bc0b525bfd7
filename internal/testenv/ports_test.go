package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFreePortsNeverRepeat: a process never hands out one port twice, and
// a port another process holds (its lock file locked through another
// open file, as another process's would be) is not handed out.
func TestFreePortsNeverRepeat(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		p := FreePort(t)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
	}

	var held int
	ports.Lock()
	for p := 20000; p < 20100; p++ {
		if _, taken := ports.taken[p]; !taken {
			held = p
			break
		}
	}
	ports.Unlock()
	require.NotZero(t, held)
	dir := filepath.Join(os.TempDir(), "defender-test-ports")
	require.NoError(t, os.MkdirAll(dir, 0o777))
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(held)), os.O_CREATE|os.O_RDWR, 0o666)
	require.NoError(t, err)
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Skipf("port %d is held by another test process right now", held)
	}
	assert.False(t, reserve(held), "held by another")
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_UN))
	assert.True(t, reserve(held), "free once released")
	assert.False(t, reserve(held), "and then this process's, once")
}
