package gate

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A block read in its last millisecond (Redis answers PTTL 0) is not
// permanent: its Retry-After is 1 s, not the 0 that means "never".
func TestDecideBlockInItsLastMillisecond(t *testing.T) {
	id := identity{n: 1}
	id.counters[0] = Counter{Kind: KindIP, Subject: "192.0.2.1", Limit: 3}
	d := decide(&id, &Result{Blocked: []BlockState{{Kind: KindIP, Subject: "192.0.2.1", TTL: 0}}})
	assert.False(t, d.Allowed)
	assert.False(t, d.Permanent)
	assert.Equal(t, 1, d.RetryAfterSeconds())

	d = decide(&id, &Result{Blocked: []BlockState{{Kind: KindIP, Subject: "192.0.2.1", Permanent: true}}})
	assert.True(t, d.Permanent)
	assert.Equal(t, 0, d.RetryAfterSeconds(), "permanent: no Retry-After")
}
