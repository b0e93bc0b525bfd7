package record_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
	"github.com/defender-go/defender/schema"
)

// migrateTo applies the bootstrap and the migrations up to version v, and
// records them, as a recorder of that schema did.
func migrateTo(t *testing.T, conn driver.Conn, v uint32) {
	t.Helper()
	ctx := context.Background()
	boot, err := schema.Statements(schema.FS, "bootstrap.sql")
	require.NoError(t, err)
	for _, stmt := range boot {
		require.NoError(t, conn.Exec(ctx, stmt))
	}
	ms, err := record.Migrations()
	require.NoError(t, err)
	for _, m := range ms {
		if m.Version > v {
			break
		}
		for _, stmt := range m.Statements {
			require.NoError(t, conn.Exec(ctx, stmt), m.Name)
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO defender.schema_migrations (version, name, applied_at)")
		require.NoError(t, err)
		require.NoError(t, b.Append(m.Version, m.Name, time.Now()))
		require.NoError(t, b.Send())
	}
}

// oldAttempt and oldBlock are rows of the first schema (001_init.sql),
// every column of it, in the order of their time (each its own).
type oldAttempt struct {
	ID                                         uuid.UUID
	TS                                         time.Time
	MS                                         uint16
	IP, Username, Result                       string
	BlockedBy                                  []string
	Path, UserAgent, Gate                      string
	IPFailures, UsernameFailures, PairFailures uint32
}

type oldBlock struct {
	ID                  uuid.UUID
	TS                  time.Time
	MS                  uint16
	Type, Kind, Subject string
	Until               time.Time
	Permanent           uint8
	Failures            uint32
	Reason, Gate        string
}

const (
	oldAttemptColumns = "id, ts, ts_ms, ip, username, result, blocked_by, path, user_agent, gate, ip_failures, username_failures, pair_failures"
	oldBlockColumns   = "id, ts, ts_ms, type, kind, subject, until, permanent, failures, reason, gate"
)

func readOld[T any](t *testing.T, conn driver.Conn, table, cols string, scan func(driver.Rows) (T, error)) []T {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT "+cols+" FROM defender."+table+" ORDER BY ts, ts_ms")
	require.NoError(t, err)
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		require.NoError(t, err)
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	return out
}

func scanOldAttempt(rows driver.Rows) (oldAttempt, error) {
	var a oldAttempt
	err := rows.Scan(&a.ID, &a.TS, &a.MS, &a.IP, &a.Username, &a.Result, &a.BlockedBy, &a.Path, &a.UserAgent, &a.Gate,
		&a.IPFailures, &a.UsernameFailures, &a.PairFailures)
	a.TS = a.TS.UTC()
	return a, err
}

func scanOldBlock(rows driver.Rows) (oldBlock, error) {
	var b oldBlock
	err := rows.Scan(&b.ID, &b.TS, &b.MS, &b.Type, &b.Kind, &b.Subject, &b.Until, &b.Permanent, &b.Failures, &b.Reason, &b.Gate)
	b.TS, b.Until = b.TS.UTC(), b.Until.UTC()
	return b, err
}

// TestMigrateKeepsRowsOfTheFirstSchema: rows written under the first
// schema read back unchanged once 002 (new kinds and reason, observe,
// shared, familiar) is applied, with the new columns at their defaults;
// again from a migration that stopped halfway; a second run changes
// nothing.
func TestMigrateKeepsRowsOfTheFirstSchema(t *testing.T) {
	_, conn := sharedClickHouse(t)
	ctx := context.Background()
	ms, err := record.Migrations()
	require.NoError(t, err)
	var second record.Migration
	for _, m := range ms {
		if m.Version == 2 {
			second = m
		}
	}
	require.NotEmpty(t, second.Statements, "migration 002")

	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	var attempts []oldAttempt
	for i, r := range []string{"success", "failure", "blocked", "blocked", "failure"} {
		a := oldAttempt{ID: uuid.Must(uuid.NewV7()), TS: base.Add(time.Duration(i) * 7 * time.Hour), MS: uint16(i * 111),
			IP: "192.0.2." + string(rune('1'+i)), Username: "user" + string(rune('a'+i)), Result: r, BlockedBy: []string{},
			Path: "/login", UserAgent: "ua/1", Gate: "gate-a", IPFailures: uint32(i), UsernameFailures: uint32(2 * i), PairFailures: uint32(3 * i)}
		if r == "blocked" {
			a.BlockedBy = []string{"ip", "username", "pair"}[:i-1]
		}
		attempts = append(attempts, a)
	}
	var blocks []oldBlock
	for i, k := range []string{"ip", "username", "pair"} {
		for j, reason := range []string{"auto", "admin", "blacklist"} {
			b := oldBlock{ID: uuid.Must(uuid.NewV7()), TS: base.Add(time.Duration(3*i+j) * 5 * time.Hour), MS: uint16(j),
				Type: "block", Kind: k, Subject: "s" + k, Until: base.Add(100 * time.Hour), Failures: uint32(4 + j), Reason: reason, Gate: "g"}
			if j == 1 {
				b.Type, b.Until = "unblock", time.Unix(0, 0).UTC()
			}
			if j == 2 {
				b.Permanent, b.Until = 1, time.Unix(0, 0).UTC()
			}
			blocks = append(blocks, b)
		}
	}

	for _, halfway := range []int{0, 1, 3, len(second.Statements) - 1} {
		t.Run(fmt.Sprintf("after %d statements", halfway), func(t *testing.T) {
			require.NoError(t, conn.Exec(ctx, "DROP DATABASE IF EXISTS defender"))
			migrateTo(t, conn, 1)
			ab, err := conn.PrepareBatch(ctx, "INSERT INTO defender.attempts ("+oldAttemptColumns+")")
			require.NoError(t, err)
			for _, a := range attempts {
				require.NoError(t, ab.Append(a.ID, a.TS, a.MS, a.IP, a.Username, a.Result, a.BlockedBy, a.Path, a.UserAgent, a.Gate,
					a.IPFailures, a.UsernameFailures, a.PairFailures))
			}
			require.NoError(t, ab.Send())
			bb, err := conn.PrepareBatch(ctx, "INSERT INTO defender.blocks ("+oldBlockColumns+")")
			require.NoError(t, err)
			for _, b := range blocks {
				require.NoError(t, bb.Append(b.ID, b.TS, b.MS, b.Type, b.Kind, b.Subject, b.Until, b.Permanent, b.Failures, b.Reason, b.Gate))
			}
			require.NoError(t, bb.Send())
			// A recorder that died in the middle of 002.
			for _, stmt := range second.Statements[:halfway] {
				require.NoError(t, conn.Exec(ctx, stmt))
			}

			ran, err := record.Migrate(ctx, conn)
			require.NoError(t, err)
			var want []uint32
			for _, m := range ms[1:] {
				want = append(want, m.Version)
			}
			assert.Equal(t, want, ran, "every migration after the first")

			assert.Equal(t, attempts, readOld(t, conn, "attempts", oldAttemptColumns, scanOldAttempt), "attempts unchanged")
			assert.Equal(t, blocks, readOld(t, conn, "blocks", oldBlockColumns, scanOldBlock), "blocks unchanged")
			var marked uint64
			require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM defender.attempts WHERE observe != 0 OR shared != '' OR familiar != 0").Scan(&marked))
			assert.Zero(t, marked, "old attempts read unmarked")
			require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM defender.blocks WHERE observe != 0").Scan(&marked))
			assert.Zero(t, marked, "old blocks read as real ones")

			// Through the query helpers too.
			got, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{Limit: record.MaxLimit})
			require.NoError(t, err)
			require.Len(t, got, len(attempts))
			for _, a := range got {
				assert.False(t, a.Observe || a.Familiar || a.Shared != "", a.ID)
			}
			gotB, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{Kinds: []string{"pair"}})
			require.NoError(t, err)
			assert.Len(t, gotB, 3)

			// The new values go in beside the old ones.
			nb, err := conn.PrepareBatch(ctx, "INSERT INTO defender.blocks ("+oldBlockColumns+", observe)")
			require.NoError(t, err)
			require.NoError(t, nb.Append(uuid.Must(uuid.NewV7()), time.Now(), uint16(0), "unblock", "username_familiar", "alice",
				time.Unix(0, 0), uint8(0), uint32(0), "user", "", uint8(1)))
			require.NoError(t, nb.Send())

			before := schemaState(t, conn)
			ran, err = record.Migrate(ctx, conn)
			require.NoError(t, err)
			assert.Empty(t, ran, "a second run applies nothing")
			assert.Equal(t, before, schemaState(t, conn))
		})
	}
}

// TestRecorderStoresKindsAndMarks: from a publisher fed as the gate feeds
// it to the tables and back: blocks of every kind, observe mode's
// would-be blocks and unblocks (from their own subjects), an unblock by
// the user, attempts marked observe, shared and familiar, refused by the
// new kinds.
func TestRecorderStoresKindsAndMarks(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	rec, _ := runRecorder(t, js, conn, record.Options{})
	p, err := events.NewPublisher(js, events.PublisherOptions{Gate: "gate-k"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(ctx) })

	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	var trs []gate.TransitionRecord
	at := func() time.Time { return base.Add(time.Duration(len(trs)) * time.Millisecond) }
	for _, k := range gate.Kinds {
		subject := "192.0.2.7"
		switch k {
		case gate.KindUsername, gate.KindUsernameFamiliar:
			subject = "alice"
		case gate.KindPair:
			subject = "192.0.2.7|alice"
		case gate.KindSprayNet:
			subject = "2001:db8:1::/48"
		}
		for _, observe := range []bool{false, true} {
			trs = append(trs, gate.TransitionRecord{Time: at(), Kind: k, Subject: subject, Blocked: true,
				Until: base.Add(time.Hour).Truncate(time.Second), Failures: 20, Reason: gate.ReasonAuto, Observe: observe})
			trs = append(trs, gate.TransitionRecord{Time: at(), Kind: k, Subject: subject, Reason: gate.ReasonAdmin, Observe: observe})
		}
	}
	trs = append(trs, gate.TransitionRecord{Time: at(), Kind: gate.KindUsernameFamiliar, Subject: "alice", Reason: "user"})
	ars := []gate.AttemptRecord{
		{Time: base.Add(time.Second), IP: "100.64.1.2", Username: "bob", Outcome: gate.OutcomeBlocked,
			BlockedBy: []gate.Kind{gate.KindSprayShared, gate.KindSpray}, Observe: true, Shared: "cgnat"},
		{Time: base.Add(2 * time.Second), IP: "192.0.2.7", Username: "alice", Outcome: gate.OutcomeBlocked,
			BlockedBy: []gate.Kind{gate.KindUsernameFamiliar}, Familiar: true},
		{Time: base.Add(3 * time.Second), IP: "2001:db8:1:2::/64", Username: "carol", Outcome: gate.OutcomeFailure, Shared: "icloud-relay"},
	}
	for _, tr := range trs {
		p.EmitTransition(tr)
	}
	for _, ar := range ars {
		p.EmitAttempt(ar)
	}
	require.Eventually(t, func() bool {
		s := rec.Stats()
		return s.Blocks == uint64(len(trs)) && s.Attempts == uint64(len(ars))
	}, time.Minute, 20*time.Millisecond, "recorded %+v", rec.Stats())
	assert.Zero(t, rec.Stats().DeadLetters)

	gotB, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{Limit: record.MaxLimit})
	require.NoError(t, err)
	require.Len(t, gotB, len(trs))
	for i, b := range gotB { // newest first
		tr := trs[len(trs)-1-i]
		want := events.NewBlock(tr, "gate-k")
		want.ID, want.Time = b.ID, tr.Time.UTC()
		if want.Until != nil {
			u := want.Until.UTC()
			want.Until = &u
		}
		assert.Equal(t, want, b, "%s %s observe=%t", tr.Kind, tr.Subject, tr.Observe)
	}
	for _, k := range gate.Kinds {
		bs, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{Kinds: []string{string(k)}, Type: "block"})
		require.NoError(t, err)
		require.Len(t, bs, 2, k)
		assert.True(t, bs[0].Observe, "the observe block came second")
		assert.False(t, bs[1].Observe)
	}
	_, _, err = record.QueryBlocks(ctx, conn, record.BlockFilter{Kinds: []string{"asn"}})
	assert.Error(t, err)

	got, _, err := record.QueryAttempts(ctx, conn, record.AttemptFilter{})
	require.NoError(t, err)
	require.Len(t, got, len(ars))
	for i, a := range got {
		ar := ars[len(ars)-1-i]
		want := events.NewAttempt(ar, "gate-k")
		want.ID, want.Time = a.ID, ar.Time.UTC()
		assert.Equal(t, want, a)
	}
}

// TestRecorderWidensAnOldConsumer: a recorder consumer made before observe
// mode's subjects existed (its filters attempt.>, block.>, unblock.>) is
// updated when the recorder starts, so would-be blocks already waiting in
// the stream are recorded.
func TestRecorderWidensAnOldConsumer(t *testing.T) {
	_, conn := sharedClickHouse(t)
	_, js := natsStream(t)
	ctx := context.Background()
	r, err := record.New(js, conn, record.Options{Flush: 200 * time.Millisecond})
	require.NoError(t, err)
	old := r.ConsumerConfig()
	old.FilterSubjects = []string{subjects.Attempts(), subjects.Blocks(), subjects.Unblocks()}
	_, err = js.CreateOrUpdateConsumer(ctx, events.StreamName, old)
	require.NoError(t, err)

	b := events.NewBlock(gate.TransitionRecord{Time: time.Now(), Kind: gate.KindSpray, Subject: "192.0.2.8", Blocked: true,
		Until: time.Now().Add(time.Hour), Failures: 30, Reason: gate.ReasonAuto, Observe: true}, "g")
	data, err := b.Encode()
	require.NoError(t, err)
	publishRaw(t, js, b.NATSSubject(subjects), data, b.ID)
	a := newAttempt(0, time.Now())
	publishAttempts(t, js, []events.Attempt{a})

	rec, _ := runRecorder(t, js, conn, record.Options{})
	require.Eventually(t, func() bool { s := rec.Stats(); return s.Blocks == 1 && s.Attempts == 1 }, time.Minute, 20*time.Millisecond)
	bs, _, err := record.QueryBlocks(ctx, conn, record.BlockFilter{})
	require.NoError(t, err)
	require.Len(t, bs, 1)
	assert.Equal(t, b.ID, bs[0].ID)
	assert.True(t, bs[0].Observe)

	c, err := js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
	require.NoError(t, err)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, subjects.Events(), info.Config.FilterSubjects)
	assert.Equal(t, jetstream.AckExplicitPolicy, info.Config.AckPolicy)
}
