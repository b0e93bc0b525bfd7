package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/envflag/envflagtest"
)

// The admin reads the gate's durations with the one grammar every binary
// uses (envflagtest's table).
func TestDurationsAgree(t *testing.T) {
	read := func(l func(string) (string, bool)) (*Config, error) {
		fs, cfg := newFlagSet("test", io.Discard, l)
		require.NoError(t, fs.Parse(nil))
		return cfg, cfg.finish(needs{})
	}
	envflagtest.CheckDurations(t, read, []envflagtest.Duration[*Config]{
		{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Unit: time.Hour, Least: 1,
			Field: func(c *Config) time.Duration { return c.Gate.AccessAttemptExpiration }},
	})
}
