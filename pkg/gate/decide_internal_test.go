package gate

import (
	"testing"
	"time"

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

// One Retry-After rule for the middleware and the gate service: rounded
// up, never 0 for a refusal that ends, 5 s when the store is down.
func TestRetryAfterSeconds(t *testing.T) {
	for _, c := range []struct {
		d    Decision
		want int
	}{
		{Decision{RetryAfter: 1500 * time.Millisecond}, 2},
		{Decision{RetryAfter: 300 * time.Second}, 300},
		{Decision{}, 1},
		{Decision{Permanent: true}, 0},
		{Decision{Allowed: true}, 0},
		{Decision{Unavailable: true}, 5},
	} {
		assert.Equal(t, c.want, c.d.RetryAfterSeconds(), "%+v", c.d)
	}
}
