package record_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

func TestDeadLetters(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	base := time.Now().UTC()

	good := make([]events.Attempt, 20)
	for i := range good {
		good[i] = newAttempt(i, base)
	}
	badID := newAttempt(100, base)
	badID.ID = "not-a-uuid"
	blockWrongType := events.Block{V: 1, Type: events.TypeUnblock, ID: events.NewID(), Time: base,
		Kind: events.KindIP, Subject: "10.1.1.1", Reason: "admin"}
	blockBadReason := events.Block{V: 1, Type: events.TypeBlock, ID: events.NewID(), Time: base,
		Kind: events.KindIP, Subject: "10.1.1.1", Reason: "whim"}
	// Observe mode's would-be blocks travel on subjects of their own: one
	// on a real block subject, or a real one on an observe subject, is
	// refused rather than stored as what it is not.
	observeOnReal := events.Block{V: 1, Type: events.TypeBlock, ID: events.NewID(), Time: base,
		Kind: "spray", Subject: "10.1.1.1", Reason: "auto", Observe: true}
	realOnObserve := events.Block{V: 1, Type: events.TypeUnblock, ID: events.NewID(), Time: base,
		Kind: "spray", Subject: "10.1.1.1", Reason: "auto"}
	unknownKind := newAttempt(101, base)
	unknownKind.Result, unknownKind.BlockedBy = events.ResultBlocked, []string{"asn"}
	bad := []struct {
		subject string
		data    []byte
		reason  string
	}{
		{subjects.Attempt("failure"), []byte("{not json"), "malformed"},
		{subjects.Attempt("failure"), mustJSON(t, badID), "not a UUID"},
		{subjects.Block("ip"), mustJSON(t, blockWrongType), "unblock event on a block subject"},
		{subjects.Block("ip"), mustJSON(t, blockBadReason), `reason "whim"`},
		{subjects.Attempt("success"), mustJSON(t, map[string]any{"v": 1, "type": "attempt"}), "missing id"},
		{subjects.Block("spray"), mustJSON(t, observeOnReal), "observe true event on subject defender.block.spray"},
		{subjects.ObserveUnblock("spray"), mustJSON(t, realOnObserve), "observe false event on subject defender.observe.unblock.spray"},
		{subjects.Attempt("blocked"), mustJSON(t, unknownKind), `blocked_by kind "asn"`},
	}

	reg := prometheus.NewRegistry()
	rec, _ := runRecorder(t, js, conn, record.Options{Registerer: reg})
	// Bad events among good ones, in the same batches.
	publishAttempts(t, js, good[:10])
	for i, b := range bad {
		publishRaw(t, js, b.subject, b.data, "bad-"+string(rune('a'+i)))
	}
	publishAttempts(t, js, good[10:])

	require.Eventually(t, func() bool {
		s := rec.Stats()
		return s.Attempts == uint64(len(good)) && s.DeadLetters == uint64(len(bad))
	}, time.Minute, 50*time.Millisecond)
	assert.EqualValues(t, len(good), countAttempts(t, conn))
	assert.EqualValues(t, len(bad), testenv.Metric(t, reg, "defender_recorder_dead_letters_total"))

	// The dead letters wait on the DLQ subject with their reason and
	// origin.
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		FilterSubject: subjects.DLQ(), AckPolicy: jetstream.AckNonePolicy,
	})
	require.NoError(t, err)
	mb, err := cons.Fetch(len(bad)+1, jetstream.FetchMaxWait(time.Second))
	require.NoError(t, err)
	var got []jetstream.Msg
	for m := range mb.Messages() {
		got = append(got, m)
	}
	require.Len(t, got, len(bad))
	for i, m := range got {
		assert.Equal(t, bad[i].data, m.Data())
		assert.Equal(t, bad[i].subject, m.Headers().Get(record.HeaderSubject))
		assert.Contains(t, m.Headers().Get(record.HeaderReason), bad[i].reason)
		assert.NotEmpty(t, m.Headers().Get(record.HeaderStreamSeq))
	}

	// Terminated: nothing left for the recorder consumer.
	info, err := js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ci, err := info.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	}, 10*time.Second, 50*time.Millisecond)
}
