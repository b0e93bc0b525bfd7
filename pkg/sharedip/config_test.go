package sharedip_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/sharedip"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigFromEnvDefaults(t *testing.T) {
	c, err := sharedip.ConfigFromEnv(envOf(nil))
	require.NoError(t, err)
	assert.Equal(t, sharedip.DefaultConfig(), c)
	assert.True(t, c.CGNAT)
	assert.Equal(t, 24*time.Hour, c.Refresh)
	assert.Empty(t, c.RelayURL, "nothing is fetched unless asked")
	assert.Empty(t, c.TorURL)
}

func TestConfigFromEnv(t *testing.T) {
	c, err := sharedip.ConfigFromEnv(envOf(map[string]string{
		"DEFENDER_SHARED_CGNAT":      "off",
		"DEFENDER_SHARED_RELAY_FILE": "/etc/defender/relay.csv",
		"DEFENDER_SHARED_RELAY_URL":  sharedip.RelayURL,
		"DEFENDER_SHARED_TOR_FILE":   " /etc/defender/tor.txt ",
		"DEFENDER_SHARED_TOR_URL":    sharedip.TorURL,
		"DEFENDER_SHARED_CIDR_FILES": "office=/etc/defender/a.txt, /etc/defender/vpn-exits.list ,, /srv/partners",
		"DEFENDER_SHARED_REFRESH":    "6h",
		"DEFENDER_SHARED_CACHE_DIR":  "/var/cache/defender",
	}))
	require.NoError(t, err)
	want := sharedip.DefaultConfig()
	want.CGNAT = false
	want.RelayFile, want.RelayURL = "/etc/defender/relay.csv", sharedip.RelayURL
	want.TorFile, want.TorURL = "/etc/defender/tor.txt", sharedip.TorURL
	want.CIDRFiles = []sharedip.CIDRFile{{Name: "office", Path: "/etc/defender/a.txt"},
		{Name: "vpn-exits", Path: "/etc/defender/vpn-exits.list"}, {Name: "partners", Path: "/srv/partners"}}
	want.Refresh = 6 * time.Hour
	want.CacheDir = "/var/cache/defender"
	assert.Equal(t, want, c)
}

// Refresh takes pkg/gate's forms of a duration: seconds or a Go duration.
func TestConfigRefreshForms(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": 0, "3600": time.Hour, "90m": 90 * time.Minute, "1m": time.Minute, " 48h ": 48 * time.Hour, "": 24 * time.Hour} {
		c, err := sharedip.ConfigFromEnv(envOf(map[string]string{"DEFENDER_SHARED_REFRESH": v}))
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Refresh, v)
	}
	for v, want := range map[string]bool{"true": true, "1": true, "YES": true, "on": true, "false": false, "0": false, "No": false, "off": false} {
		c, err := sharedip.ConfigFromEnv(envOf(map[string]string{"DEFENDER_SHARED_CGNAT": v}))
		require.NoError(t, err, v)
		assert.Equal(t, want, c.CGNAT, v)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"DEFENDER_SHARED_CGNAT", "maybe", `DEFENDER_SHARED_CGNAT: "maybe" is not a boolean`},
		{"DEFENDER_SHARED_REFRESH", "daily", `DEFENDER_SHARED_REFRESH: "daily" is not`},
		{"DEFENDER_SHARED_REFRESH", "-1h", `DEFENDER_SHARED_REFRESH: "-1h" is not`},
		{"DEFENDER_SHARED_REFRESH", "24", "DEFENDER_SHARED_REFRESH: 24s is neither 0 (never) nor at least 1m0s"},
		{"DEFENDER_SHARED_RELAY_URL", "mask-api.icloud.com/egress-ip-ranges.csv", "DEFENDER_SHARED_RELAY_URL: \"mask-api.icloud.com/egress-ip-ranges.csv\" is not an http(s) URL"},
		{"DEFENDER_SHARED_TOR_URL", "ftp://example.org/list", "DEFENDER_SHARED_TOR_URL:"},
		{"DEFENDER_SHARED_TOR_URL", "https://", "DEFENDER_SHARED_TOR_URL:"},
		{"DEFENDER_SHARED_CIDR_FILES", "a=/x, a=/y", `DEFENDER_SHARED_CIDR_FILES: the name "a" is taken`},
		{"DEFENDER_SHARED_CIDR_FILES", "/etc/tor.txt", `DEFENDER_SHARED_CIDR_FILES: the name "tor" is taken; give /etc/tor.txt another as name=/etc/tor.txt`},
		{"DEFENDER_SHARED_CIDR_FILES", "cgnat=/x", `the name "cgnat" is taken`},
		{"DEFENDER_SHARED_CIDR_FILES", "my list=/x", `DEFENDER_SHARED_CIDR_FILES: "my list" is not a list name`},
		{"DEFENDER_SHARED_CIDR_FILES", "/etc/.hidden", `DEFENDER_SHARED_CIDR_FILES: "" is not a list name`},
		{"DEFENDER_SHARED_CIDR_FILES", "office=", `DEFENDER_SHARED_CIDR_FILES: "office=" has no path`},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := sharedip.ConfigFromEnv(envOf(map[string]string{tc.name: tc.value}))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// EnvVars lists exactly the variables ConfigFromEnv reads, once each,
// each with a description, as the binaries' flags need.
func TestEnvVarsListWhatIsRead(t *testing.T) {
	read := map[string]bool{}
	_, err := sharedip.ConfigFromEnv(func(name string) (string, bool) { read[name] = true; return "", false })
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, v := range sharedip.EnvVars {
		assert.False(t, listed[v.Name], "%s listed twice", v.Name)
		listed[v.Name] = true
		assert.NotEmpty(t, v.Usage, v.Name)
	}
	assert.Equal(t, read, listed)
}

func TestValidateProgramSettings(t *testing.T) {
	c := sharedip.DefaultConfig()
	c.HTTPTimeout, c.MaxBytes = 0, -1
	err := c.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Config.HTTPTimeout")
	assert.Contains(t, err.Error(), "Config.MaxBytes")
}
