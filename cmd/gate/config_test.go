package main_test

import (
	"net"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/pkg/gate"
)

// exitCode runs the binary to completion.
func exitCode(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd, out := command(t, env, args...)
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), out.String()
	}
	require.NoError(t, err)
	return 0, out.String()
}

// A bad setting stops the gate at start, with status 2 and a message
// naming the variable, whether it came from the environment or a flag.
func TestBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      []string
		args     []string
		variable string
	}{
		{"limit not a number", []string{"DEFENDER_LOGIN_FAILURE_LIMIT=three"}, nil, "DEFENDER_LOGIN_FAILURE_LIMIT"},
		{"limit from a flag", nil, []string{"--login-failure-limit", "-4"}, "DEFENDER_LOGIN_FAILURE_LIMIT"},
		{"fail mode", []string{"DEFENDER_FAIL_MODE=sometimes"}, nil, "DEFENDER_FAIL_MODE"},
		{"cool-off", []string{"DEFENDER_COOLOFF_TIME=soon"}, nil, "DEFENDER_COOLOFF_TIME"},
		{"whitelist", []string{"DEFENDER_IP_WHITELIST=10.0.0.0/33"}, nil, "DEFENDER_IP_WHITELIST"},
		{"redis url", []string{"DEFENDER_REDIS_URL=http://nope"}, nil, "DEFENDER_REDIS_URL"},
		{"redis url with password", []string{"DEFENDER_REDIS_URL=redis://:s3cret-password@[redis.internal:6379/0"}, nil, "DEFENDER_REDIS_URL"},
		{"short secret", []string{"DEFENDER_TOKEN_SECRET=abc"}, nil, "DEFENDER_TOKEN_SECRET"},
		{"short API key", []string{"DEFENDER_API_KEY=abc"}, nil, "DEFENDER_API_KEY"},
		{"http addr", []string{"DEFENDER_HTTP_ADDR=8080"}, nil, "DEFENDER_HTTP_ADDR"},
		{"nats listen", []string{"DEFENDER_NATS_LISTEN=localhost:http"}, nil, "DEFENDER_NATS_LISTEN"},
		{"event buffer", []string{"DEFENDER_EVENT_BUFFER=-1"}, nil, "DEFENDER_EVENT_BUFFER"},
		{"nats url", []string{"DEFENDER_NATS_URL=nats://gate:s3cret-password@[nats.internal:4222"}, nil, "DEFENDER_NATS_URL"},
		{"subject prefix", []string{"DEFENDER_SUBJECT_PREFIX=a.>"}, nil, "DEFENDER_SUBJECT_PREFIX"},
		{"shutdown timeout", []string{"DEFENDER_SHUTDOWN_TIMEOUT=-1s"}, nil, "DEFENDER_SHUTDOWN_TIMEOUT"},
		{"log level", []string{"DEFENDER_LOG_LEVEL=loud"}, nil, "DEFENDER_LOG_LEVEL"},
		{"both lockouts off", []string{"DEFENDER_DISABLE_IP_LOCKOUT=1", "DEFENDER_DISABLE_USERNAME_LOCKOUT=yes"}, nil, "DEFENDER_DISABLE_IP_LOCKOUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := exitCode(t, tc.env, tc.args...)
			assert.Equal(t, 2, code, out)
			assert.Contains(t, out, tc.variable)
			assert.NotContains(t, out, "s3cret", "no secret in the message")
		})
	}
	t.Run("unknown flag", func(t *testing.T) {
		code, out := exitCode(t, nil, "--no-such-flag=1")
		assert.Equal(t, 2, code)
		assert.Contains(t, out, "no-such-flag")
	})
	t.Run("stray argument", func(t *testing.T) {
		code, _ := exitCode(t, nil, "serve")
		assert.Equal(t, 2, code)
	})
}

// -h lists a flag for every variable, with the variable's name.
func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	code, out := exitCode(t, nil, "-h")
	assert.Equal(t, 0, code)
	var names []string
	for _, v := range gate.EnvVars {
		names = append(names, v.Name)
	}
	names = append(names, "DEFENDER_HTTP_ADDR", "DEFENDER_NATS_URL", "DEFENDER_NATS_LISTEN", "DEFENDER_NATS_STORE_DIR",
		"DEFENDER_TOKEN_SECRET", "DEFENDER_API_KEY", "DEFENDER_SUBJECT_PREFIX", "DEFENDER_EVENT_BUFFER", "DEFENDER_SHUTDOWN_TIMEOUT")
	for _, name := range names {
		assert.Contains(t, out, "-"+envflag.FlagName(name)+" ", name)
		assert.Contains(t, out, "env "+name+")", name)
	}
}

// A flag wins over the environment.
func TestFlagOverridesEnvironment(t *testing.T) {
	t.Parallel()
	g := startGateArgs(t, []string{"DEFENDER_LOGIN_FAILURE_LIMIT=3"}, "--login-failure-limit", "1")
	assertAllowed(t, g.attempt(t, "203.0.113.40", "alice", false))
	assertBlocked(t, g.attempt(t, "203.0.113.40", "alice", false), []string{"ip", "username"})
}

// An address in use is a runtime failure (status 1), named in the log.
func TestListenFailure(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	code, out := exitCode(t, []string{"DEFENDER_HTTP_ADDR=" + l.Addr().String(), "DEFENDER_NATS_LISTEN=127.0.0.1:0",
		"DEFENDER_NATS_STORE_DIR=" + t.TempDir()})
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "DEFENDER_HTTP_ADDR")
}
