package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// composeConfig is the part of `docker-compose config` the test reads.
type composeConfig struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
			Target     string `yaml:"target"`
		} `yaml:"build"`
		Command     any               `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Volumes []any `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// compose runs docker-compose on compose.yml with only the given DEFENDER_*
// variables set.
func compose(t *testing.T, env []string, args ...string) ([]byte, []byte, error) {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed (Debian package docker-compose; CI installs it, see .ci/run)")
	}
	cmd := exec.Command(bin, append([]string{"-f", "compose.yml"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEFENDER_") && !strings.HasPrefix(kv, "CLICKHOUSE_") && !strings.HasPrefix(kv, "COMPOSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.Bytes(), stderr.Bytes(), err
}

func TestComposeConfig(t *testing.T) {
	out, stderr, err := compose(t, []string{"DEFENDER_ADMIN_PASSWORD=compose-test"}, "config")
	require.NoError(t, err, "docker-compose config:\n%s", stderr)
	var cfg composeConfig
	require.NoError(t, yaml.Unmarshal(out, &cfg))

	var names []string
	for name := range cfg.Services {
		names = append(names, name)
	}
	assert.ElementsMatch(t, []string{"redis", "nats", "clickhouse", "gate", "recorder", "admin", "notifier", "mailpit"}, names)
	for name, s := range cfg.Services {
		assert.NotEmpty(t, s.Healthcheck.Test, "%s has a health check", name)
	}

	// The servers come from their official images, ClickHouse a current one.
	assert.True(t, strings.HasPrefix(cfg.Services["redis"].Image, "redis:"), cfg.Services["redis"].Image)
	assert.True(t, strings.HasPrefix(cfg.Services["nats"].Image, "nats:"), cfg.Services["nats"].Image)
	assert.Contains(t, cfg.Services["nats"].Command, "--jetstream")
	assert.Regexp(t, `^clickhouse/clickhouse-server:2[0-9]\.`, cfg.Services["clickhouse"].Image)
	for _, name := range []string{"redis", "nats", "clickhouse"} {
		assert.NotEmpty(t, cfg.Services[name].Volumes, "%s keeps its data in a volume", name)
	}

	// The four services are built from the repository's Dockerfile, one
	// target each, and wired per DESIGN.md.
	dockerfile, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+(\S+)`).FindAllSubmatch(dockerfile, -1) {
		targets[string(m[1])] = true
	}
	root, err := os.Getwd()
	require.NoError(t, err)
	for _, name := range []string{"gate", "recorder", "admin", "notifier"} {
		s := cfg.Services[name]
		require.NotNil(t, s.Build, "%s is built", name)
		assert.Equal(t, strings.TrimSuffix(root, "/deploy"), s.Build.Context, name)
		assert.Equal(t, name, s.Build.Target, name)
		assert.True(t, targets[name], "the Dockerfile has a %s target", name)
		assert.Equal(t, "nats://nats:4222", s.Environment["DEFENDER_NATS_URL"], name)
		assert.NotEmpty(t, s.Environment["DEFENDER_HTTP_ADDR"], name)
	}
	assert.Equal(t, "redis://redis:6379/0", cfg.Services["gate"].Environment["DEFENDER_REDIS_URL"])
	assert.Equal(t, "redis://redis:6379/0", cfg.Services["admin"].Environment["DEFENDER_REDIS_URL"])
	assert.Equal(t, "compose-test", cfg.Services["admin"].Environment["DEFENDER_ADMIN_PASSWORD"])
	for _, name := range []string{"recorder", "admin"} {
		assert.Regexp(t, `^clickhouse://[^@]+@clickhouse:9000/defender$`, cfg.Services[name].Environment["DEFENDER_CLICKHOUSE_URL"], name)
		assert.Equal(t, "service_healthy", cfg.Services[name].DependsOn["clickhouse"].Condition, name)
	}
	assert.Equal(t, "service_healthy", cfg.Services["gate"].DependsOn["redis"].Condition)
	assert.Equal(t, "3", cfg.Services["gate"].Environment["DEFENDER_LOGIN_FAILURE_LIMIT"], "django-defender's default")
	assert.True(t, slices.Contains(cfg.Services["gate"].Healthcheck.Test, "/probe"), "the gate's image checks itself with /probe")
	assert.Empty(t, cfg.Services["notifier"].Environment["DEFENDER_UNLOCK_ADDR"], "the public unlock page is off by default")
}

// TestComposeMailsIntoMailpit: out of the box the notifier mails into the
// mailpit service, where mailpit listens; an operator who names a relay
// gets the relay's port and STARTTLS, not the catcher's settings, and the
// settings they give are kept.
func TestComposeMailsIntoMailpit(t *testing.T) {
	notifier := func(env ...string) map[string]string {
		t.Helper()
		out, stderr, err := compose(t, append([]string{"DEFENDER_ADMIN_PASSWORD=compose-test"}, env...), "config")
		require.NoError(t, err, "docker-compose config:\n%s", stderr)
		var cfg composeConfig
		require.NoError(t, yaml.Unmarshal(out, &cfg))
		if len(env) == 0 {
			assert.Equal(t, []any{"--smtp", "0.0.0.0:587"}, cfg.Services["mailpit"].Command, "mailpit's SMTP on 587")
			assert.Contains(t, cfg.Services["notifier"].DependsOn, "mailpit")
		}
		return cfg.Services["notifier"].Environment
	}
	catcher := notifier()
	assert.Equal(t, "mailpit", catcher["DEFENDER_SMTP_HOST"])
	assert.Empty(t, catcher["DEFENDER_SMTP_PORT"], "the TLS mode's port: 587, mailpit's")
	assert.Equal(t, "opportunistic", catcher["DEFENDER_SMTP_TLS"], "plain text to mailpit, which offers no STARTTLS; never a login in clear")
	assert.Equal(t, "true", catcher["DEFENDER_MAIL_TO_USERNAME"], "an address to mail without a site to look it up")

	relay := notifier("DEFENDER_SMTP_HOST=smtp.example.com")
	assert.Equal(t, "smtp.example.com", relay["DEFENDER_SMTP_HOST"])
	assert.Empty(t, relay["DEFENDER_SMTP_PORT"], "no catcher's port left behind: 587 for STARTTLS")
	assert.NotEqual(t, "none", relay["DEFENDER_SMTP_TLS"], "STARTTLS whenever the relay offers it")

	set := notifier("DEFENDER_SMTP_HOST=smtp.example.com", "DEFENDER_SMTP_TLS=tls", "DEFENDER_SMTP_PORT=2465", "DEFENDER_MAIL_TO_USERNAME=false")
	assert.Equal(t, "tls", set["DEFENDER_SMTP_TLS"])
	assert.Equal(t, "2465", set["DEFENDER_SMTP_PORT"])
	assert.Equal(t, "false", set["DEFENDER_MAIL_TO_USERNAME"])
}

// The admin never runs without a password: compose refuses to start
// without one instead of running an open admin.
func TestComposeNeedsAdminPassword(t *testing.T) {
	_, stderr, err := compose(t, nil, "config", "--quiet")
	require.Error(t, err)
	assert.Contains(t, string(stderr), "DEFENDER_ADMIN_PASSWORD")
}
