package main

import (
	"testing"
	"time"

	"github.com/defender-go/defender/internal/envflag/envflagtest"
)

// The service reads its durations, and the gate library's, with the one
// grammar every binary uses (envflagtest's table).
func TestDurationsAgree(t *testing.T) {
	envflagtest.CheckDurations(t, loadConfig, []envflagtest.Duration[Config]{
		{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Unit: time.Hour, Least: 1,
			Field: func(c Config) time.Duration { return c.Gate.AccessAttemptExpiration }},
		{Name: "DEFENDER_SHUTDOWN_TIMEOUT", Unit: time.Second, Least: 1,
			Field: func(c Config) time.Duration { return c.ShutdownTimeout }},
		{Name: "DEFENDER_EVENT_FLUSH_TIMEOUT", Unit: time.Second, Least: 1,
			Field: func(c Config) time.Duration { return c.FlushTimeout }},
	})
}
