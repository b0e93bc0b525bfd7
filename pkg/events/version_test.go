package events_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

var need210 = events.ServerNeed{Min: "2.10", Who: "the test", For: "a feature of 2.10"}

// TestServerNeedCheck: Debian bookworm's nats-server (2.9) is refused
// with one line naming its version, its address without the password,
// the version needed and why; the embedded server (go.mod's) passes.
func TestServerNeedCheck(t *testing.T) {
	old := testenv.RunNATS(t, testenv.DebianNATS, "--user", "u", "--pass", "secret-pw")
	require.True(t, strings.HasPrefix(old.Version, "2.9."), "Debian bookworm's nats-server is 2.9, got %s", old.Version)
	nc, _, err := events.Connect(t.Context(), strings.Replace(old.URL, "://", "://u:secret-pw@", 1), "version-test")
	require.NoError(t, err)
	defer nc.Close()

	err = need210.Check(nc)
	require.ErrorIs(t, err, events.ErrServerTooOld)
	var tooOld *events.TooOldError
	require.ErrorAs(t, err, &tooOld)
	assert.Equal(t, old.Version, tooOld.Version)
	assert.Equal(t, fmt.Sprintf("NATS server %s at %s is too old: the test needs 2.10 or later (a feature of 2.10);"+
		" install a current nats-server (%s)", old.Version, strings.Replace(old.URL, "://", "://xxxxx@", 1), events.InstallServer),
		err.Error())
	assert.NotContains(t, err.Error(), "secret-pw")
	assert.NoError(t, events.ServerNeed{Min: "2.9", Who: "the test", For: "JetStream"}.Check(nc))

	current := testenv.NATS(t)
	nc2, err := nats.Connect(current.URL)
	require.NoError(t, err)
	defer nc2.Close()
	assert.NoError(t, need210.Check(nc2), "embedded server %s", nc2.ConnectedServerVersion())

	nc2.Close()
	assert.NoError(t, need210.Check(nc2), "no server to check")
}

// TestOldServerServesGateAndAdmin: what the gate and the admin use works
// on Debian bookworm's nats-server 2.9, so they must not refuse it: the
// stream, the publisher, core subscriptions (the admin's live view) and a
// durable consumer with one filter subject (ConsumeBlocks).
func TestOldServerServesGateAndAdmin(t *testing.T) {
	old := testenv.RunNATS(t, testenv.DebianNATS)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, old.URL, "old-server-test")
	require.NoError(t, err)
	defer nc.Close()
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)

	live := make(chan events.Block, 1)
	_, err = events.SubscribeBlocks(ctx, nc, events.Subjects{}, func(b events.Block) { live <- b })
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	p, err := events.NewPublisher(js, events.PublisherOptions{Gate: "old"})
	require.NoError(t, err)
	stop := runPublisher(t, p)
	p.EmitAttempt(attemptRecord(1))
	p.EmitTransition(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindIP, Subject: "10.0.0.1",
		Blocked: true, Until: time.Now().Add(time.Minute), Failures: 4, Reason: gate.ReasonAuto})
	require.Eventually(t, func() bool { return p.Stats().Published == 2 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	select {
	case b := <-live:
		assert.Equal(t, "10.0.0.1", b.Subject)
	case <-time.After(10 * time.Second):
		t.Fatal("the block never reached the core subscription")
	}
	assert.Len(t, streamMsgs(t, js, "", 2), 2)

	durable := make(chan events.Block, 1)
	_, err = events.ConsumeBlocks(ctx, js, events.Subjects{}, "audit", func(_ context.Context, b events.Block) error {
		durable <- b
		return nil
	})
	require.NoError(t, err)
	select {
	case b := <-durable:
		assert.Equal(t, "10.0.0.1", b.Subject)
	case <-time.After(10 * time.Second):
		t.Fatal("ConsumeBlocks delivered nothing")
	}
	c, err := js.Consumer(ctx, events.StreamName, "audit")
	require.NoError(t, err)
	assert.Equal(t, events.Subjects{}.Blocks(), c.CachedInfo().Config.FilterSubject, "2.9 keeps a single filter")
}
