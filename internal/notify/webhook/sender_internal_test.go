package webhook

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
)

// A block whose Deliver gave up before its call leaves the queues: the
// caller will have it redelivered, so it must not be sent now as well.
func TestDeliverWithdraws(t *testing.T) {
	s, err := New(Options{
		Endpoints: []Endpoint{{URL: "https://a.example/x"}, {URL: "https://b.example/y", Format: FormatSlack}},
		Secrets:   [][]byte{[]byte("0123456789abcdef")},
		Log:       slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	// No Run: the blocks wait in the queues until their Deliver gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	b := events.Block{ID: "one"}
	assert.ErrorIs(t, s.Deliver(ctx, b), context.DeadlineExceeded)
	for _, e := range s.endpoints {
		_, waiting := e.due(time.Second)
		assert.False(t, waiting, "%s still holds the block", e.host)
	}
}

func TestBackoff(t *testing.T) {
	s := &Sender{o: Options{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	tests := []struct {
		attempt    int
		retryAfter time.Duration
		low, high  time.Duration
	}{
		{attempt: 1, low: 100 * time.Millisecond, high: 120 * time.Millisecond},
		{attempt: 2, low: 200 * time.Millisecond, high: 240 * time.Millisecond},
		{attempt: 3, low: 400 * time.Millisecond, high: 480 * time.Millisecond},
		{attempt: 4, low: 800 * time.Millisecond, high: time.Second},
		{attempt: 5, low: time.Second, high: time.Second},
		{attempt: 60, low: time.Second, high: time.Second},
		{attempt: 1, retryAfter: 300 * time.Millisecond, low: 300 * time.Millisecond, high: 300 * time.Millisecond},
		{attempt: 1, retryAfter: time.Hour, low: time.Second, high: time.Second},
	}
	for _, tc := range tests {
		for range 20 {
			d := s.backoff(tc.attempt, tc.retryAfter)
			assert.GreaterOrEqual(t, d, tc.low, "attempt %d", tc.attempt)
			assert.LessOrEqual(t, d, tc.high, "attempt %d", tc.attempt)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "-5": 0, "soon": 0, "Wed, 21 Oct 2015 07:28:00 GMT": 0,
		"1": time.Second, "120": 2 * time.Minute, "99999999999999999999": 0, "999999999": 24 * time.Hour,
	} {
		assert.Equal(t, want, retryAfter(in), "Retry-After %q", in)
	}
}
