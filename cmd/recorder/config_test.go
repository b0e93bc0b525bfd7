package main

import (
	"flag"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/envflag/envflagtest"
	"github.com/defender-go/defender/pkg/events"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		needNATS bool
		check    func(t *testing.T, c Config)
		bad      []string // variables the error must name
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c Config) {
				assert.Equal(t, DefaultConfig().ClickHouseURL, c.ClickHouseURL)
				assert.Equal(t, 10000, c.Batch)
				assert.Equal(t, time.Second, c.Flush)
				assert.Equal(t, 24*time.Hour, c.Expiration)
				assert.Equal(t, ":9102", c.HTTPAddr)
				assert.Equal(t, "defender", c.Events.SubjectPrefix)
			},
		},
		{
			name: "all set",
			env: map[string]string{
				"DEFENDER_NATS_URL":                  "nats://a:4222,nats://b:4222",
				"DEFENDER_CLICKHOUSE_URL":            "clickhouse://ch:9000/defender",
				"DEFENDER_SUBJECT_PREFIX":            "acme.defender",
				"DEFENDER_RECORD_BATCH":              "500",
				"DEFENDER_RECORD_FLUSH":              "250ms",
				"DEFENDER_RECORD_ACK_WAIT":           "30",
				"DEFENDER_ACCESS_ATTEMPT_EXPIRATION": "48",
				"DEFENDER_HTTP_ADDR":                 "127.0.0.1:0",
			},
			needNATS: true,
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "nats://a:4222,nats://b:4222", c.Events.NATSURL)
				assert.Equal(t, "clickhouse://ch:9000/defender", c.ClickHouseURL)
				assert.Equal(t, "acme.defender", c.Events.SubjectPrefix)
				assert.Equal(t, 500, c.Batch)
				assert.Equal(t, 250*time.Millisecond, c.Flush)
				assert.Equal(t, 30*time.Second, c.AckWait)
				assert.Equal(t, 48*time.Hour, c.Expiration)
				assert.Equal(t, "127.0.0.1:0", c.HTTPAddr)
			},
		},
		{
			name: "flag wins over variable",
			env:  map[string]string{"DEFENDER_RECORD_BATCH": "500"},
			args: []string{"-record-batch", "700", "-access-attempt-expiration", "1.5"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, 700, c.Batch)
				assert.Equal(t, 90*time.Minute, c.Expiration)
			},
		},
		{name: "nats required to run", needNATS: true, bad: []string{"DEFENDER_NATS_URL"}},
		{
			name: "bad values",
			env: map[string]string{
				"DEFENDER_RECORD_BATCH":              "0",
				"DEFENDER_RECORD_FLUSH":              "soon",
				"DEFENDER_ACCESS_ATTEMPT_EXPIRATION": "-1",
				"DEFENDER_CLICKHOUSE_URL":            "http://ch:8123/defender",
				"DEFENDER_SUBJECT_PREFIX":            "a.>",
			},
			bad: []string{"DEFENDER_RECORD_BATCH", "DEFENDER_RECORD_FLUSH", "DEFENDER_ACCESS_ATTEMPT_EXPIRATION",
				"DEFENDER_CLICKHOUSE_URL", "DEFENDER_SUBJECT_PREFIX"},
		},
		{name: "other database", env: map[string]string{"DEFENDER_CLICKHOUSE_URL": "clickhouse://ch:9000/other"}, bad: []string{"DEFENDER_CLICKHOUSE_URL"}},
		{name: "ack wait below flush", env: map[string]string{"DEFENDER_RECORD_FLUSH": "10s", "DEFENDER_RECORD_ACK_WAIT": "20s"}, bad: []string{"DEFENDER_RECORD_ACK_WAIT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			lookup := envflag.Bind(fs, vars, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			require.NoError(t, fs.Parse(tc.args))
			c, err := FromEnv(lookup, tc.needNATS)
			if len(tc.bad) > 0 {
				require.Error(t, err)
				for _, name := range tc.bad {
					assert.Contains(t, err.Error(), name+":")
				}
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestMainBadConfig(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "DEFENDER_RECORD_BATCH" {
			return "many", true
		}
		return "", false
	}
	assert.Equal(t, exitConfig, Main(nil, env))
	assert.Equal(t, exitConfig, Main([]string{"frobnicate"}, env))
}

// `recorder help` lists the commands and every setting on stdout and
// exits 0, as -h does; an unknown command names the known ones.
func TestMainHelp(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout := os.Stdout
	os.Stdout = w
	code := Main([]string{"help"}, func(string) (string, bool) { return "", false })
	os.Stdout = stdout
	require.NoError(t, w.Close())
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, exitOK, code)
	for _, want := range []string{"run ", "migrate ", "cleanup ", "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", "DEFENDER_CLICKHOUSE_URL", "DEFENDER_RECORD_FLUSH"} {
		assert.Contains(t, string(out), want)
	}
}

// The recorder reads its durations with the one grammar every binary uses
// (envflagtest's table): DEFENDER_ACCESS_ATTEMPT_EXPIRATION=1.5 is 90
// minutes here as in the gates.
func TestDurationsAgree(t *testing.T) {
	read := func(l func(string) (string, bool)) (Config, error) { return FromEnv(l, false) }
	envflagtest.CheckDurations(t, read, []envflagtest.Duration[Config]{
		{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Unit: time.Hour, Least: 1,
			Field: func(c Config) time.Duration { return c.Expiration }},
		// At least 3 × DEFENDER_RECORD_FLUSH (1s).
		{Name: "DEFENDER_RECORD_ACK_WAIT", Unit: time.Second, Least: 3 * time.Second,
			Field: func(c Config) time.Duration { return c.AckWait }},
		{Name: "DEFENDER_STREAM_MAX_AGE", Unit: time.Second, Zero: true, Least: events.DefaultDuplicates,
			Field: func(c Config) time.Duration { return c.Events.StreamMaxAge }},
	})
}
