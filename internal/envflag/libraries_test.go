package envflag_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/defender-go/defender/internal/envflag"
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
