package events_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFromEnvDefaults(t *testing.T) {
	c, err := events.FromEnv(env(nil))
	require.NoError(t, err)
	assert.Equal(t, events.DefaultConfig(), c)
	assert.Equal(t, "defender", c.SubjectPrefix)
	assert.Equal(t, 65536, c.EventBuffer)
	assert.Equal(t, 7*24*time.Hour, c.StreamMaxAge)
	assert.Equal(t, int64(1<<30), c.StreamMaxBytes)
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c events.Config)
	}{
		{"prefix and url", map[string]string{"DEFENDER_SUBJECT_PREFIX": "acme.auth", "DEFENDER_NATS_URL": "nats://a:4222, nats://b:4222"},
			func(t *testing.T, c events.Config) {
				assert.Equal(t, "acme.auth.block.ip", c.Subjects().Block("ip"))
				assert.Equal(t, "nats://a:4222, nats://b:4222", c.NATSURL)
			}},
		{"buffer", map[string]string{"DEFENDER_EVENT_BUFFER": "1000"}, func(t *testing.T, c events.Config) { assert.Equal(t, 1000, c.EventBuffer) }},
		{"age go duration", map[string]string{"DEFENDER_STREAM_MAX_AGE": "36h"}, func(t *testing.T, c events.Config) { assert.Equal(t, 36*time.Hour, c.StreamMaxAge) }},
		{"age days", map[string]string{"DEFENDER_STREAM_MAX_AGE": "30d"}, func(t *testing.T, c events.Config) { assert.Equal(t, 30*24*time.Hour, c.StreamMaxAge) }},
		{"age seconds", map[string]string{"DEFENDER_STREAM_MAX_AGE": "3600"}, func(t *testing.T, c events.Config) { assert.Equal(t, time.Hour, c.StreamMaxAge) }},
		{"age unlimited", map[string]string{"DEFENDER_STREAM_MAX_AGE": "0"}, func(t *testing.T, c events.Config) { assert.Equal(t, time.Duration(0), c.StreamMaxAge) }},
		{"bytes plain", map[string]string{"DEFENDER_STREAM_MAX_BYTES": "1048576"}, func(t *testing.T, c events.Config) { assert.Equal(t, int64(1<<20), c.StreamMaxBytes) }},
		{"bytes MiB", map[string]string{"DEFENDER_STREAM_MAX_BYTES": "512MiB"}, func(t *testing.T, c events.Config) { assert.Equal(t, int64(512<<20), c.StreamMaxBytes) }},
		{"bytes GB", map[string]string{"DEFENDER_STREAM_MAX_BYTES": "2GB"}, func(t *testing.T, c events.Config) { assert.Equal(t, int64(2e9), c.StreamMaxBytes) }},
		{"empty keeps default", map[string]string{"DEFENDER_EVENT_BUFFER": " "}, func(t *testing.T, c events.Config) { assert.Equal(t, 65536, c.EventBuffer) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := events.FromEnv(env(tc.env))
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestFromEnvErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name, key, value, msg string
	}{
		{"buffer text", "DEFENDER_EVENT_BUFFER", "abc", `DEFENDER_EVENT_BUFFER: "abc" is not a whole number`},
		{"buffer zero", "DEFENDER_EVENT_BUFFER", "0", `DEFENDER_EVENT_BUFFER: 0 is not a positive integer`},
		{"age", "DEFENDER_STREAM_MAX_AGE", "soon", `DEFENDER_STREAM_MAX_AGE: "soon"`},
		{"age negative", "DEFENDER_STREAM_MAX_AGE", "-1h", `DEFENDER_STREAM_MAX_AGE: "-1h"`},
		{"age below dup window", "DEFENDER_STREAM_MAX_AGE", "30s", `DEFENDER_STREAM_MAX_AGE: 30s is shorter`},
		{"bytes", "DEFENDER_STREAM_MAX_BYTES", "lots", `DEFENDER_STREAM_MAX_BYTES: "lots"`},
		{"bytes negative", "DEFENDER_STREAM_MAX_BYTES", "-5", `DEFENDER_STREAM_MAX_BYTES: "-5"`},
		{"prefix wildcard", "DEFENDER_SUBJECT_PREFIX", "a.*", `DEFENDER_SUBJECT_PREFIX: "a.*"`},
		{"prefix space", "DEFENDER_SUBJECT_PREFIX", "a b", `DEFENDER_SUBJECT_PREFIX: "a b"`},
		{"prefix empty token", "DEFENDER_SUBJECT_PREFIX", "a..b", `DEFENDER_SUBJECT_PREFIX: "a..b"`},
		{"nats url", "DEFENDER_NATS_URL", "nats://127.0.0.1:4222,nats://[::1", `DEFENDER_NATS_URL: nats://[::1 is not a valid URL: missing ']' in host`},
		{"nats url with password", "DEFENDER_NATS_URL", "nats://u:s3cr%zz@[::1", `DEFENDER_NATS_URL: nats://xxxxx@[::1 is not a valid URL`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.FromEnv(env(map[string]string{tc.key: tc.value}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotContains(t, err.Error(), "s3cr", "no password in the message")
		})
	}
}

func TestSubjects(t *testing.T) {
	s := events.Subjects{}
	got := []string{s.Attempt("success"), s.Attempt("failure"), s.Attempt("blocked"),
		s.Block("ip"), s.Block("username"), s.Block("pair"),
		s.Unblock("ip"), s.Unblock("username"), s.Unblock("pair"),
		s.All(), s.Attempts(), s.Blocks(), s.Unblocks(), s.DLQ()}
	want := []string{"defender.attempt.success", "defender.attempt.failure", "defender.attempt.blocked",
		"defender.block.ip", "defender.block.username", "defender.block.pair",
		"defender.unblock.ip", "defender.unblock.username", "defender.unblock.pair",
		"defender.>", "defender.attempt.>", "defender.block.>", "defender.unblock.>", "defender.dlq"}
	assert.Equal(t, want, got)
	assert.Equal(t, "x.y.block.ip", events.Subjects{Prefix: "x.y"}.Block("ip"))
	assert.Equal(t, []string{"p.attempt.>", "p.block.>", "p.unblock.>", "p.observe.block.>", "p.observe.unblock.>"},
		events.Subjects{Prefix: "p"}.Events())

	for _, bad := range []string{".", "a.", ".a", "a..b", "a.>", "*", "a b", "a\tb", "a\x00"} {
		assert.ErrorIs(t, events.Subjects{Prefix: bad}.Validate(), events.ErrInvalidPrefix, bad)
	}
	for _, good := range []string{"", "defender", "acme.defender", "a-b_c", "ü"} {
		assert.NoError(t, events.Subjects{Prefix: good}.Validate(), good)
	}
}
