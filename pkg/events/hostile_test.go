package events_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
)

// TestPublisherHugeFields: a login's path and user agent come from the
// client (a net/http server accepts headers up to 1 MB by default). An
// attempt carrying them at that size is still published, with those
// fields cut, and the events after it are not held up.
func TestPublisherHugeFields(t *testing.T) {
	env := newNATSEnv(t)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{})
	require.NoError(t, err)
	runPublisher(t, p)

	huge := attemptRecord(1)
	huge.UserAgent = strings.Repeat("é", 600<<10) // 1.2 MB
	huge.Path = "/" + strings.Repeat("p", int(env.nc.MaxPayload()))
	p.EmitAttempt(huge)
	const n = 50
	for i := range n {
		p.EmitAttempt(attemptRecord(100 + i))
	}

	msgs := streamMsgs(t, env.js, events.Subjects{}.Attempts(), n+1)
	require.Len(t, msgs, n+1)
	a, err := events.DecodeAttempt(msgs[0].Data())
	require.NoError(t, err)
	assert.Equal(t, huge.Username, a.Username)
	assert.LessOrEqual(t, len(a.UserAgent), events.MaxInfoBytes)
	assert.LessOrEqual(t, len(a.Path), events.MaxInfoBytes)
	assert.True(t, strings.HasPrefix(huge.UserAgent, a.UserAgent) && utf8.ValidString(a.UserAgent), "cut at a character boundary")
	assert.True(t, strings.HasPrefix(huge.Path, a.Path))
	for i, m := range msgs[1:] {
		b, err := events.DecodeAttempt(m.Data())
		require.NoError(t, err)
		assert.Equal(t, attemptRecord(100+i).Username, b.Username)
	}
}
