package gate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigFromEnvDefaults(t *testing.T) {
	c, err := ConfigFromEnv(envOf(nil))
	require.NoError(t, err)
	assert.Equal(t, DefaultConfig(), c)
	assert.Equal(t, 3, c.FailureLimit)
	assert.Equal(t, 300*time.Second, c.AttemptCooloff)
	assert.Equal(t, []time.Duration{300 * time.Second}, c.LockoutCooloffs)
	assert.Equal(t, "defender", c.KeyPrefix)
	assert.Equal(t, FailLocal, c.FailMode, "the default decides locally, never admits uncounted")
	assert.EqualValues(t, 128<<20, c.MemoryMaxBytes)
}

// TestFailModes: the modes by name, the former "open" read as local (it
// keeps working, and no longer lets attempts through uncounted).
func TestFailModes(t *testing.T) {
	for value, want := range map[string]FailMode{"local": FailLocal, "LOCAL": FailLocal, "open": FailLocal, "Open": FailLocal, "closed": FailClosed} {
		c, err := ConfigFromEnv(envOf(map[string]string{"DEFENDER_FAIL_MODE": value}))
		require.NoError(t, err, value)
		assert.Equal(t, want, c.FailMode, value)
	}
	cfg := DefaultConfig()
	cfg.FailMode = FailOpen // set by a program, not read from the environment
	g, err := New(cfg, NewMemoryStore(MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1}))
	require.NoError(t, err)
	assert.Equal(t, FailLocal, g.Config().FailMode)
	c, err := ConfigFromEnv(envOf(map[string]string{"DEFENDER_MEMORY_MAX_BYTES": "64MiB", "DEFENDER_REDIS_MAX_IN_FLIGHT": "32"}))
	require.NoError(t, err)
	assert.EqualValues(t, 64<<20, c.MemoryMaxBytes)
	assert.Equal(t, 32, c.StoreMaxInFlight)
}

func TestConfigFromEnv(t *testing.T) {
	c, err := ConfigFromEnv(envOf(map[string]string{
		"DEFENDER_LOGIN_FAILURE_LIMIT":          "5",
		"DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME": "10",
		"DEFENDER_COOLOFF_TIME":                 "60",
		"DEFENDER_LOCKOUT_COOLOFF_TIME":         "[60, 120, 0]",
		"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME":  "True",
		"DEFENDER_REVERSE_PROXY_HEADER":         "HTTP_X_REAL_IP",
		"DEFENDER_TRUSTED_PROXIES":              "10.0.0.0/8, ::ffff:192.168.0.0/112, fd00::1",
		"DEFENDER_ACCESS_ATTEMPT_EXPIRATION":    "48",
		"DEFENDER_REDIS_TIMEOUT":                "250",
		"DEFENDER_FAIL_MODE":                    "CLOSED",
		"DEFENDER_USERNAME_WHITELIST":           "admin, ops",
	}))
	require.NoError(t, err)
	assert.Equal(t, 5, c.FailureLimit)
	assert.Equal(t, 5, c.IPFailureLimit, "IP limit defaults to the failure limit")
	assert.Equal(t, 10, c.UsernameFailureLimit)
	assert.Equal(t, 60*time.Second, c.AttemptCooloff, "attempt cool-off defaults to the cool-off")
	assert.Equal(t, []time.Duration{time.Minute, 2 * time.Minute, 0}, c.LockoutCooloffs)
	assert.True(t, c.LockOutByIPAndUsername)
	assert.Equal(t, "X-REAL-IP", c.ReverseProxyHeader)
	assert.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::1/128"),
	}, c.TrustedProxies)
	assert.Equal(t, 48*time.Hour, c.AccessAttemptExpiration)
	assert.Equal(t, 250*time.Millisecond, c.StoreTimeout)
	assert.Equal(t, FailClosed, c.FailMode)
	assert.Equal(t, []string{"admin", "ops"}, c.UsernameWhitelist)
}

func TestConfigFromEnvErrorsNameTheVariable(t *testing.T) {
	tests := []struct{ name, value string }{
		{"DEFENDER_LOGIN_FAILURE_LIMIT", "three"},
		{"DEFENDER_LOGIN_FAILURE_LIMIT", "-1"},
		{"DEFENDER_COOLOFF_TIME", "soon"},
		{"DEFENDER_COOLOFF_TIME", "-5"},
		{"DEFENDER_LOCKOUT_COOLOFF_TIME", "60,x"},
		{"DEFENDER_DISABLE_IP_LOCKOUT", "maybe"},
		{"DEFENDER_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"DEFENDER_IP_BLACKLIST", "example.com"},
		{"DEFENDER_IPV6_PREFIX", "129"},
		{"DEFENDER_FAIL_MODE", "sideways"},
		{"DEFENDER_MEMORY_MAX_BYTES", "lots"},
		{"DEFENDER_MEMORY_MAX_BYTES", "1000"},
		{"DEFENDER_REDIS_MAX_IN_FLIGHT", "-1"},
		{"DEFENDER_REDIS_TIMEOUT", "0"},
		{"DEFENDER_CACHE_PREFIX", "a b"},
		{"DEFENDER_ACCESS_ATTEMPT_EXPIRATION", "0"},
		{"DEFENDER_REVERSE_PROXY_HEADER", "forwarded"},
		{"DEFENDER_REVERSE_PROXY_HEADER", "HTTP_FORWARDED"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := ConfigFromEnv(envOf(map[string]string{tc.name: tc.value}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.name)
		})
	}
}

func TestConfigBothSidesDisabled(t *testing.T) {
	_, err := ConfigFromEnv(envOf(map[string]string{
		"DEFENDER_DISABLE_IP_LOCKOUT": "1", "DEFENDER_DISABLE_USERNAME_LOCKOUT": "1",
	}))
	require.Error(t, err)
}

// Every bad variable is named at once, with its value, so that an
// operator fixes them in one go.
func TestConfigFromEnvNamesEveryBadVariable(t *testing.T) {
	_, err := ConfigFromEnv(envOf(map[string]string{
		"DEFENDER_LOGIN_FAILURE_LIMIT":       "three",
		"DEFENDER_ACCESS_ATTEMPT_EXPIRATION": "1,5",
		"DEFENDER_TRUSTED_PROXIES":           "10.0.0.0/8, proxy.internal",
		"DEFENDER_COOLOFF_TIME":              "soon",
	}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `DEFENDER_LOGIN_FAILURE_LIMIT: "three" is not a whole number`)
	assert.Contains(t, err.Error(), `DEFENDER_ACCESS_ATTEMPT_EXPIRATION: "1,5" is not a duration like 90s, 1h30m, 7d or a number of hours`)
	assert.Contains(t, err.Error(), `DEFENDER_COOLOFF_TIME: "soon" is not a duration like 90s, 1h30m, 7d or a number of seconds: bad syntax`, "as the README shows it")
	assert.Contains(t, err.Error(), `DEFENDER_TRUSTED_PROXIES: "10.0.0.0/8, proxy.internal" is not a comma list of addresses or CIDR prefixes: "proxy.internal"`)
}

// DEFENDER_ACCESS_ATTEMPT_EXPIRATION is hours, decimals allowed, or a Go
// duration: as the recorder reads it.
func TestAccessAttemptExpirationGrammar(t *testing.T) {
	for value, want := range map[string]time.Duration{"48": 48 * time.Hour, "1.5": 90 * time.Minute, "90m": 90 * time.Minute, "2d": 48 * time.Hour} {
		c, err := ConfigFromEnv(envOf(map[string]string{"DEFENDER_ACCESS_ATTEMPT_EXPIRATION": value}))
		require.NoError(t, err, value)
		assert.Equal(t, want, c.AccessAttemptExpiration, value)
	}
}
