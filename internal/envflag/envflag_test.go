package envflag_test

import (
	"bytes"
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/envflag"
)

func TestFlagName(t *testing.T) {
	tests := []struct{ env, flag string }{
		{"DEFENDER_LOGIN_FAILURE_LIMIT", "login-failure-limit"},
		{"DEFENDER_HTTP_ADDR", "http-addr"},
		{"OTHER_VAR", "other-var"},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			assert.Equal(t, tc.flag, envflag.FlagName(tc.env))
		})
	}
}

func TestBind(t *testing.T) {
	env := map[string]string{
		"DEFENDER_A":     "env-a",
		"DEFENDER_B":     "env-b",
		"DEFENDER_OTHER": "env-other",
	}
	envLookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	tests := []struct {
		name   string
		args   []string
		lookup string
		want   string
		wantOK bool
	}{
		{"flag wins over env", []string{"--a", "flag-a"}, "DEFENDER_A", "flag-a", true},
		{"single dash works", []string{"-a=flag-a"}, "DEFENDER_A", "flag-a", true},
		{"env when no flag", nil, "DEFENDER_B", "env-b", true},
		{"empty flag is set", []string{"--b="}, "DEFENDER_B", "", true},
		{"neither", nil, "DEFENDER_C", "", false},
		{"flag for unset env", []string{"--c", "x"}, "DEFENDER_C", "x", true},
		{"unlisted name reads env", nil, "DEFENDER_OTHER", "env-other", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			lookup := envflag.Bind(fs, envflag.Names("DEFENDER_A", "DEFENDER_B", "DEFENDER_C", "DEFENDER_A"), envLookup)
			require.NoError(t, fs.Parse(tc.args))
			got, ok := lookup(tc.lookup)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestUsageNamesVariables(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	envflag.Bind(fs, []envflag.Var{{Name: "DEFENDER_HTTP_ADDR", Usage: "listen address (default :8080)"}, {Name: "DEFENDER_X"}}, nil)
	err := fs.Parse([]string{"-h"})
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, out.String(), "-http-addr")
	assert.Contains(t, out.String(), "listen address (default :8080) (env DEFENDER_HTTP_ADDR)")
	assert.Contains(t, out.String(), "env DEFENDER_X")
}

func TestUnknownFlag(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	envflag.Bind(fs, envflag.Names("DEFENDER_A"), nil)
	assert.Error(t, fs.Parse([]string{"--nope", "1"}))
}

// A variable listed twice keeps its first description: a binary rewords a
// library's variable by listing its own first.
func TestFirstDescriptionWins(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	lookup := envflag.Bind(fs, []envflag.Var{{Name: "DEFENDER_A", Usage: "the binary's"}, {Name: "DEFENDER_A", Usage: "the library's"}}, nil)
	assert.Equal(t, "the binary's (env DEFENDER_A)", fs.Lookup("a").Usage)
	require.NoError(t, fs.Parse([]string{"--a", "x"}))
	v, ok := lookup("DEFENDER_A")
	assert.True(t, ok)
	assert.Equal(t, "x", v)
}
