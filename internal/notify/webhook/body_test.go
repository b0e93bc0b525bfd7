package webhook_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/events"
)

// Hostile usernames reach Slack as inert text: no mention, no link, no
// line or code span of their own, and a bounded length.
func TestSlackBodyHostileSubjects(t *testing.T) {
	rc := newReceiver(t, nil)
	o := options(prometheus.NewRegistry(),
		webhook.Endpoint{URL: rc.srv.URL + "/services/T000/B000/XXXX", Format: webhook.FormatSlack})
	o.Interval = 100 * time.Millisecond // the five blocks in one message
	s, _ := start(t, o)

	subjects := []string{"<!channel>", "<https://evil|x>", "a\nb", "`code` ```block```", strings.Repeat("n", 10_000)}
	var wg sync.WaitGroup
	for i, subject := range subjects {
		b := block(i)
		b.Subject = subject
		wg.Go(func() { assert.NoError(t, s.Deliver(context.Background(), b)) })
	}
	wg.Wait()

	var lines []string
	for _, c := range rc.accepted() {
		assert.Equal(t, "application/json", c.header.Get("Content-Type"))
		require.True(t, json.Valid(c.body), "body %s", c.body)
		var msg map[string]string
		require.NoError(t, json.Unmarshal(c.body, &msg))
		require.Len(t, msg, 1, "only text")
		text := msg["text"]
		assert.NotContains(t, text, "<", "an unescaped < reaches Slack")
		assert.NotContains(t, text, ">", "an unescaped > reaches Slack")
		lines = append(lines, strings.Split(text, "\n")...)
	}
	require.Len(t, lines, len(subjects), "one line per block: a subject broke a line")
	text := strings.Join(lines, "\n")
	assert.Contains(t, text, "`&lt;!channel&gt;`")
	assert.Contains(t, text, "`&lt;https://evil|x&gt;`")
	assert.Contains(t, text, "`a\\nb`")
	for _, l := range lines {
		assert.True(t, strings.HasPrefix(l, "defender: username `"), "line %q", l)
		assert.Equal(t, 2, strings.Count(l, "`"), "a subject broke its code span: %q", l)
		assert.Less(t, len(l), 400, "a long subject is cut")
	}
}

// The generic body carries the blocks as events.Block writes them.
func TestJSONBody(t *testing.T) {
	rc := newReceiver(t, nil)
	s, _ := start(t, options(prometheus.NewRegistry(), webhook.Endpoint{URL: rc.srv.URL}))
	b := block(1)
	b.Subject = "<!channel>\n"
	b.IP = "203.0.113.7"
	require.NoError(t, s.Deliver(context.Background(), b))
	calls := rc.accepted()
	require.Len(t, calls, 1)
	var got struct {
		Blocks []json.RawMessage `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(calls[0].body, &got))
	require.Len(t, got.Blocks, 1)
	decoded, err := events.DecodeBlock(got.Blocks[0])
	require.NoError(t, err)
	assert.Equal(t, b, decoded)
}
