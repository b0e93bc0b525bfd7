package record_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// TestHostileEvents publishes what an attacker with publish rights on the
// event subjects could send, between good events: every bad one is
// dead-lettered (even one as large as NATS allows, whose copy on the DLQ
// would not fit with its headers), every good one is stored, and the
// recorder keeps going.
func TestHostileEvents(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	base := time.Now().UTC()
	maxPayload := int(js.Conn().MaxPayload())
	require.Positive(t, maxPayload)

	// An otherwise valid attempt whose result is a huge string: refused
	// with an error quoting it.
	huge := newAttempt(900, base)
	huge.Result = strings.Repeat("x", maxPayload-600)
	hugeBad := mustJSON(t, huge)
	require.Less(t, len(hugeBad), maxPayload)
	// Garbage filling the whole payload.
	fullGarbage := bytes.Repeat([]byte{0xff}, maxPayload-64)
	nested := []byte(`{"v":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`)
	wrongKind := events.Block{V: 1, Type: events.TypeBlock, ID: events.NewID(), Time: base,
		Kind: "user*name", Subject: "*", Reason: "auto"}

	bad := []struct {
		name, subject string
		data          []byte
	}{
		{"empty", subjects.Attempt("failure"), nil},
		{"binary", subjects.Attempt("failure"), []byte("\x00\x01\xff\xfe{\"v\":1}")},
		{"deeply nested", subjects.Attempt("success"), nested},
		{"JSON array", subjects.Attempt("blocked"), []byte(`[{"v":1,"type":"attempt"}]`)},
		{"attempt on a block subject", subjects.Block("username"), mustJSON(t, newAttempt(901, base))},
		{"unknown kind", subjects.Block("username"), mustJSON(t, wrongKind)},
		{"huge field quoted in the error", subjects.Attempt("failure"), hugeBad},
		{"garbage of the largest size", subjects.Attempt("failure"), fullGarbage},
		{"time out of range", subjects.Attempt("failure"), []byte(`{"v":1,"type":"attempt","id":"` + events.NewID() +
			`","time":"9999-12-31T23:59:59Z","result":"failure"}`)},
	}

	// Good events that look odd but are valid: stored as they are.
	oddGood := []events.Attempt{newAttempt(902, base), newAttempt(903, base), newAttempt(904, base)}
	oddGood[0].Username = "*"
	oddGood[0].UserAgent = strings.Repeat("A", maxPayload/2) // large but fits
	oddGood[1].Username = "<script>alert(1)</script>\x00\u202e"
	oddGood[2].Username = "a:b{c}[d]?"
	good := make([]events.Attempt, 20)
	for i := range good {
		good[i] = newAttempt(i, base)
	}

	rec, _ := runRecorder(t, js, conn, record.Options{})
	publishAttempts(t, js, good[:10])
	for i, b := range bad {
		publishRaw(t, js, b.subject, b.data, "hostile-"+string(rune('a'+i)))
	}
	// Invalid UTF-8 inside a JSON string of a valid event: the decoder
	// replaces it, the event is stored.
	badUTF8 := newAttempt(905, base)
	raw := mustJSON(t, badUTF8)
	raw = bytes.Replace(raw, []byte(`"user5"`), []byte("\"us\xffer\""), 1)
	publishRaw(t, js, subjects.Attempt("failure"), raw, badUTF8.ID)
	publishAttempts(t, js, oddGood)
	publishAttempts(t, js, good[10:])
	stored := len(good) + len(oddGood) + 1

	require.Eventually(t, func() bool {
		s := rec.Stats()
		return s.Attempts == uint64(stored) && s.DeadLetters == uint64(len(bad))
	}, time.Minute, 50*time.Millisecond, "stats %+v", rec.Stats())
	assert.EqualValues(t, stored, countAttempts(t, conn))
	ids := storedAttemptIDs(t, conn)
	for _, a := range append(append([]events.Attempt{badUTF8}, oddGood...), good...) {
		assert.Equal(t, 1, ids[a.ID], "attempt %s (%.20q)", a.ID, a.Username)
	}
	page, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Usernames: []string{"*"}, Limit: 10})
	require.NoError(t, err)
	require.Len(t, page, 1, "a glob-like username matches itself only")
	assert.Equal(t, oddGood[0].ID, page[0].ID)

	// Each bad event is on the DLQ with its reason, in order.
	got := readDLQ(t, js, len(bad)+1)
	require.Len(t, got, len(bad))
	for i, m := range got {
		assert.Equal(t, bad[i].subject, m.Headers().Get(record.HeaderSubject), bad[i].name)
		assert.NotEmpty(t, m.Headers().Get(record.HeaderReason), bad[i].name)
		assert.LessOrEqual(t, len(m.Headers().Get(record.HeaderReason)), 1024, bad[i].name)
		if len(bad[i].data) < maxPayload/2 {
			assert.Equal(t, string(bad[i].data), string(m.Data()), bad[i].name)
			assert.Empty(t, m.Headers().Get(record.HeaderOriginalSize), bad[i].name)
		} else {
			assert.True(t, bytes.HasPrefix(bad[i].data, m.Data()), "%s: the copy is a prefix of the event", bad[i].name)
			assert.Equal(t, strconv.Itoa(len(bad[i].data)), m.Headers().Get(record.HeaderOriginalSize), bad[i].name)
		}
	}

	// The recorder still works: one more good event after all that.
	last := newAttempt(999, base)
	publishAttempts(t, js, []events.Attempt{last})
	require.Eventually(t, func() bool { return storedAttemptIDs(t, conn)[last.ID] == 1 }, time.Minute, 50*time.Millisecond)
}

// readDLQ reads up to n messages of the dead-letter subject from the start.
func readDLQ(t *testing.T, js jetstream.JetStream, n int) []jetstream.Msg {
	t.Helper()
	cons, err := js.CreateOrUpdateConsumer(context.Background(), events.StreamName, jetstream.ConsumerConfig{
		FilterSubject: subjects.DLQ(), AckPolicy: jetstream.AckNonePolicy,
	})
	require.NoError(t, err)
	mb, err := cons.Fetch(n, jetstream.FetchMaxWait(time.Second))
	require.NoError(t, err)
	var got []jetstream.Msg
	for m := range mb.Messages() {
		got = append(got, m)
	}
	return got
}
