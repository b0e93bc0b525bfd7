package record_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestRunRefusesOldServer: on Debian bookworm's nats-server (2.9), which
// ignores a consumer's several filter subjects, Run ends at once with
// the version error, having created no consumer. It retried for ever,
// logging "multiple consumer filter subjects not supported".
func TestRunRefusesOldServer(t *testing.T) {
	old := testenv.RunNATS(t, testenv.DebianNATS)
	nc, err := nats.Connect(old.URL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := events.EnsureStream(ctx, js, events.StreamConfig{Subjects: subjects})
	require.NoError(t, err)

	// No ClickHouse: the recorder must stop before it writes anything.
	rec, err := record.New(js, nil, record.Options{Subjects: subjects})
	require.NoError(t, err)
	start := time.Now()
	err = rec.Run(ctx)
	require.ErrorIs(t, err, events.ErrServerTooOld)
	assert.Less(t, time.Since(start), 5*time.Second, "refused at once, not retried")
	assert.Contains(t, err.Error(), "NATS server "+old.Version)
	assert.Contains(t, err.Error(), "needs 2.10 or later")

	_, err = s.Consumer(ctx, record.DefaultConsumer)
	assert.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "no consumer left on the old server")
}
