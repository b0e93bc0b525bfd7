package events_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func TestNewAttempt(t *testing.T) {
	r := gate.AttemptRecord{Time: t0, IP: "203.0.113.7", Username: "Alice", Outcome: gate.OutcomeFailure,
		BlockedBy: []gate.Kind{gate.KindIP, gate.KindUsername}, Path: "/login", UserAgent: "curl/8",
		IPFailures: 4, UsernameFailures: 2}
	a := events.NewAttempt(r, "gate-1")
	assert.Equal(t, events.Version, a.V)
	assert.Equal(t, events.TypeAttempt, a.Type)
	assert.Len(t, a.ID, 36)
	assert.Equal(t, t0, a.Time)
	assert.Equal(t, "203.0.113.7", a.IP)
	assert.Equal(t, "Alice", a.Username)
	assert.Equal(t, "failure", a.Result)
	assert.Equal(t, []string{"ip", "username"}, a.BlockedBy)
	assert.Equal(t, "/login", a.Path)
	assert.Equal(t, "curl/8", a.UserAgent)
	assert.Equal(t, "gate-1", a.Gate)
	assert.Equal(t, 4, a.IPFailures)
	assert.Equal(t, 2, a.UsernameFailures)
	assert.Equal(t, 0, a.PairFailures)
	assert.Equal(t, "defender.attempt.failure", a.NATSSubject(events.Subjects{}))
	require.NoError(t, a.Validate())
}

func TestNewBlock(t *testing.T) {
	until := t0.Add(5 * time.Minute)
	tests := []struct {
		name    string
		r       gate.TransitionRecord
		typ     events.Type
		until   *time.Time
		perm    bool
		subject string
	}{
		{"timed block", gate.TransitionRecord{Time: t0, Kind: gate.KindIP, Subject: "203.0.113.7", Blocked: true, Until: until, Failures: 4, Reason: gate.ReasonAuto},
			events.TypeBlock, &until, false, "defender.block.ip"},
		{"permanent block", gate.TransitionRecord{Time: t0, Kind: gate.KindUsername, Subject: "alice", Blocked: true, Permanent: true, Failures: 4, Reason: gate.ReasonAuto},
			events.TypeBlock, nil, true, "defender.block.username"},
		{"pair block", gate.TransitionRecord{Time: t0, Kind: gate.KindPair, Subject: "203.0.113.7|alice", Blocked: true, Until: until, Reason: gate.ReasonAuto},
			events.TypeBlock, &until, false, "defender.block.pair"},
		{"admin unblock", gate.TransitionRecord{Time: t0, Kind: gate.KindIP, Subject: "203.0.113.7", Reason: gate.ReasonAdmin},
			events.TypeUnblock, nil, false, "defender.unblock.ip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := events.NewBlock(tc.r, "g")
			require.NoError(t, b.Validate())
			assert.Equal(t, tc.typ, b.Type)
			assert.Equal(t, tc.until, b.Until)
			assert.Equal(t, tc.perm, b.Permanent)
			assert.Equal(t, string(tc.r.Kind), b.Kind)
			assert.Equal(t, tc.r.Subject, b.Subject)
			assert.Equal(t, string(tc.r.Reason), b.Reason)
			assert.Equal(t, tc.r.Failures, b.Failures)
			assert.Equal(t, tc.subject, b.NATSSubject(events.Subjects{}))
		})
	}
}

func TestIDsUniqueAndOrdered(t *testing.T) {
	const n = 10000
	seen := make(map[string]bool, n)
	prev := ""
	for range n {
		id := events.NewID()
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
		require.Greater(t, id, prev, "ids must increase")
		require.Equal(t, byte('7'), id[14], "UUID version 7: %s", id)
		prev = id
	}
}

func TestDecodeAttempt(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want events.Attempt
		err  bool
	}{
		{"full", `{"v":1,"type":"attempt","id":"0195","time":"2025-03-01T12:00:00Z","ip":"::1","username":"bob","result":"blocked","blocked_by":["ip"],"path":"/login","user_agent":"ua","gate":"g1","ip_failures":3,"username_failures":1,"pair_failures":0}`,
			events.Attempt{V: 1, Type: events.TypeAttempt, ID: "0195", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), IP: "::1", Username: "bob", Result: "blocked", BlockedBy: []string{"ip"}, Path: "/login", UserAgent: "ua", Gate: "g1", IPFailures: 3, UsernameFailures: 1}, false},
		{"minimal", `{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","result":"success"}`,
			events.Attempt{V: 1, Type: events.TypeAttempt, ID: "x", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Result: "success"}, false},
		{"unknown fields ignored", `{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","result":"failure","new":42}`,
			events.Attempt{V: 1, Type: events.TypeAttempt, ID: "x", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Result: "failure"}, false},
		{"not json", `{`, events.Attempt{}, true},
		{"wrong version", `{"v":2,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","result":"success"}`, events.Attempt{}, true},
		{"block as attempt", `{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","result":"success"}`, events.Attempt{}, true},
		{"no id", `{"v":1,"type":"attempt","time":"2025-03-01T12:00:00Z","result":"success"}`, events.Attempt{}, true},
		{"no time", `{"v":1,"type":"attempt","id":"x","result":"success"}`, events.Attempt{}, true},
		{"bad result", `{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","result":"maybe"}`, events.Attempt{}, true},
		{"bad time", `{"v":1,"type":"attempt","id":"x","time":"yesterday","result":"success"}`, events.Attempt{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := events.DecodeAttempt([]byte(tc.in))
			if tc.err {
				require.Error(t, err)
				assert.True(t, errors.Is(err, events.ErrMalformed), "%v wraps ErrMalformed", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestDecodeBlock(t *testing.T) {
	until := time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want events.Block
		err  bool
	}{
		{"block", `{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"ip","subject":"1.2.3.4","until":"2025-03-01T12:05:00Z","permanent":false,"failures":4,"reason":"auto","gate":"g"}`,
			events.Block{V: 1, Type: events.TypeBlock, ID: "x", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Kind: "ip", Subject: "1.2.3.4", Until: &until, Failures: 4, Reason: "auto", Gate: "g"}, false},
		{"unblock", `{"v":1,"type":"unblock","id":"x","time":"2025-03-01T12:00:00Z","kind":"username","subject":"bob","permanent":false,"failures":0,"reason":"admin"}`,
			events.Block{V: 1, Type: events.TypeUnblock, ID: "x", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Kind: "username", Subject: "bob", Reason: "admin"}, false},
		{"attempt as block", `{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","kind":"ip","subject":"1.2.3.4"}`, events.Block{}, true},
		{"bad kind", `{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"asn","subject":"1"}`, events.Block{}, true},
		{"no subject", `{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"ip"}`, events.Block{}, true},
		{"with the address", `{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"username","subject":"bob","permanent":true,"failures":5,"reason":"auto","ip":"2001:db8::7"}`,
			events.Block{V: 1, Type: events.TypeBlock, ID: "x", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Kind: "username", Subject: "bob", Permanent: true, Failures: 5, Reason: "auto", IP: "2001:db8::7"}, false},
		{"ip not an address", `{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"username","subject":"bob","ip":"<b>x</b>"}`, events.Block{}, true},
		{"array", `[]`, events.Block{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := events.DecodeBlock([]byte(tc.in))
			if tc.err {
				require.ErrorIs(t, err, events.ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	a := events.NewAttempt(gate.AttemptRecord{Time: t0, IP: "::1", Username: "ü\"<>", Outcome: gate.OutcomeBlocked, BlockedBy: []gate.Kind{gate.KindPair}}, "")
	data, err := a.Encode()
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(data, &raw))
	for _, k := range []string{"v", "type", "id", "time", "ip", "username", "result", "blocked_by", "ip_failures", "username_failures", "pair_failures"} {
		assert.Contains(t, raw, k)
	}
	assert.NotContains(t, raw, "gate", "empty gate is left out")
	got, err := events.DecodeAttempt(data)
	require.NoError(t, err)
	assert.Equal(t, a, got)

	b := events.NewBlock(gate.TransitionRecord{Time: t0, Kind: gate.KindIP, Subject: "::1", Blocked: true, Until: t0.Add(time.Hour), Reason: gate.ReasonAuto}, "g")
	data, err = b.Encode()
	require.NoError(t, err)
	gotB, err := events.DecodeBlock(data)
	require.NoError(t, err)
	assert.Equal(t, b, gotB)

	bad := events.Attempt{V: 1}
	_, err = bad.Encode()
	require.ErrorIs(t, err, events.ErrMalformed)
}

// reencode checks that an accepted event encodes and decodes to an equal
// event (times compared as instants).
func FuzzDecodeAttempt(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","result":"success"}`))
	f.Add([]byte(`{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00+02:00","ip":"::1","username":"\u00fc","result":"blocked","blocked_by":["ip","pair"],"ip_failures":-1}`))
	f.Add([]byte(`{"v":1,"type":"attempt","id":"x","time":"0000-01-01T00:00:00Z","result":"failure","blocked_by":[]}`))
	f.Add([]byte(`{"v":1,"type":"attempt","id":"x","time":"2025-03-01T12:00:00Z","result":"blocked","blocked_by":["spray_shared","username_familiar"],"observe":true,"shared":"cgnat","familiar":true}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := events.DecodeAttempt(data)
		if err != nil {
			return
		}
		enc, err := a.Encode()
		require.NoError(t, err)
		b, err := events.DecodeAttempt(enc)
		require.NoError(t, err)
		require.True(t, a.Time.Equal(b.Time))
		b.Time = a.Time
		require.Equal(t, a, b)
	})
}

func FuzzDecodeBlock(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"ip","subject":"1.2.3.4","until":"2025-03-01T12:05:00Z","failures":4,"reason":"auto"}`))
	f.Add([]byte(`{"v":1,"type":"unblock","id":"x","time":"2025-03-01T12:00:00-07:00","kind":"pair","subject":"a|b","until":null}`))
	f.Add([]byte(`{"v":1,"type":"block","id":"x","time":"2025-03-01T12:00:00Z","kind":"spray_net","subject":"2001:db8:1::/48","reason":"auto","observe":true}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := events.DecodeBlock(data)
		if err != nil {
			return
		}
		enc, err := a.Encode()
		require.NoError(t, err)
		b, err := events.DecodeBlock(enc)
		require.NoError(t, err)
		require.True(t, a.Time.Equal(b.Time))
		b.Time = a.Time
		require.Equal(t, a.Until == nil, b.Until == nil)
		if a.Until != nil {
			require.True(t, a.Until.Equal(*b.Until))
			b.Until = a.Until
		}
		require.Equal(t, a, b)
	})
}
