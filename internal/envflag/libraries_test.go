package envflag_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/envflag/envflagtest"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/sharedip"
)

// The libraries' EnvVars, which the binaries bind as flags, list exactly
// the variables their FromEnv reads, once each, each with a description.
func TestLibraryVarsListWhatTheyRead(t *testing.T) {
	tests := []struct {
		name string
		vars []envflag.Var
		read func(lookup func(string) (string, bool)) error
	}{
		{"gate", gate.EnvVars, func(l func(string) (string, bool)) error { _, err := gate.ConfigFromEnv(l); return err }},
		{"events", events.EnvVars, func(l func(string) (string, bool)) error { _, err := events.FromEnv(l); return err }},
		{"sharedip", sharedip.EnvVars, func(l func(string) (string, bool)) error { _, err := sharedip.ConfigFromEnv(l); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			read := map[string]bool{}
			assert.NoError(t, tc.read(func(name string) (string, bool) { read[name] = true; return "", false }))
			listed := map[string]bool{}
			for _, v := range tc.vars {
				assert.False(t, listed[v.Name], "%s listed twice", v.Name)
				listed[v.Name] = true
				assert.NotEmpty(t, v.Usage, v.Name)
			}
			assert.Equal(t, read, listed)
		})
	}
}

// The libraries read every duration with the one grammar: the values of
// envflagtest's table mean the same in each (the binaries run the table
// too, on their own settings).
func TestLibraryDurationsAgree(t *testing.T) {
	envflagtest.CheckDurations(t, gate.ConfigFromEnv, []envflagtest.Duration[gate.Config]{
		{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Unit: time.Hour, Least: 1,
			Field: func(c gate.Config) time.Duration { return c.AccessAttemptExpiration }},
		{Name: "DEFENDER_COOLOFF_TIME", Unit: time.Second, Zero: true, Least: 1,
			Field: func(c gate.Config) time.Duration { return c.AttemptCooloff }},
		{Name: "DEFENDER_PENDING_TIMEOUT", Unit: time.Second, Least: 1,
			Field: func(c gate.Config) time.Duration { return c.PendingTimeout }},
		{Name: "DEFENDER_REDIS_TIMEOUT", Unit: time.Millisecond, Least: 1,
			Field: func(c gate.Config) time.Duration { return c.StoreTimeout }},
		{Name: "DEFENDER_FAMILIAR_DAYS", Unit: envflag.Day, Least: envflag.Day,
			Field: func(c gate.Config) time.Duration { return c.FamiliarFor }},
	})
	envflagtest.CheckDurations(t, events.FromEnv, []envflagtest.Duration[events.Config]{
		{Name: "DEFENDER_STREAM_MAX_AGE", Unit: time.Second, Zero: true, Least: events.DefaultDuplicates,
			Field: func(c events.Config) time.Duration { return c.StreamMaxAge }},
	})
	envflagtest.CheckDurations(t, sharedip.ConfigFromEnv, []envflagtest.Duration[sharedip.Config]{
		{Name: "DEFENDER_SHARED_REFRESH", Unit: time.Second, Zero: true, Least: sharedip.MinRefresh,
			Field: func(c sharedip.Config) time.Duration { return c.Refresh }},
	})
}
