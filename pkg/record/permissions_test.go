package record_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestRecorderUnderREADMEPermissions: as the README's recorder user
// (testenv.NATSAsREADME), the recorder stores the events a gate publishes
// as the gate user, and sends one it cannot store to the dead-letter
// subject, with no permission violation.
func TestRecorderUnderREADMEPermissions(t *testing.T) {
	_, conn := sharedClickHouse(t)
	ns := testenv.NATSAsREADME(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gate := ns.JetStreamAs("gate")
	_, err := events.EnsureStream(ctx, gate, events.StreamConfig{Subjects: subjects})
	require.NoError(t, err)
	rec, _ := runRecorder(t, ns.JetStreamAs("recorder"), conn, record.Options{})

	good := make([]events.Attempt, 10)
	for i := range good {
		good[i] = newAttempt(i, time.Now().UTC())
	}
	publishAttempts(t, gate, good)
	publishRaw(t, gate, subjects.Attempt("failure"), []byte("{not json"), "bad")
	require.Eventually(t, func() bool {
		s := rec.Stats()
		return s.Attempts == uint64(len(good)) && s.DeadLetters == 1
	}, time.Minute, 50*time.Millisecond, "the recorder stores the events and dead-letters the bad one")
	assert.EqualValues(t, len(good), countAttempts(t, conn))
	st, err := ns.JetStreamAs(testenv.Inspector).Stream(ctx, events.StreamName)
	require.NoError(t, err)
	dl, err := st.GetLastMsgForSubject(ctx, subjects.DLQ())
	require.NoError(t, err, "the dead letter is on the DLQ subject")
	assert.Equal(t, "{not json", string(dl.Data))
	assert.Empty(t, ns.Violations(), "the recorder stays within its permissions")
}
