package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// runCLI runs the admin's command line with the environment lookup. The
// buffers are safe for concurrent use: a NATS connection's closing line
// may be logged from its own goroutine as run returns.
func runCLI(t *testing.T, lookup func(string) (string, bool), args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb testenv.SyncBuffer
	code = run(context.Background(), args, &out, &errb, lookup)
	return code, out.String(), errb.String()
}

func TestConfigErrors(t *testing.T) {
	base := map[string]string{
		"DEFENDER_REDIS_URL":      "redis://127.0.0.1:1/0",
		"DEFENDER_ADMIN_PASSWORD": "pw",
	}
	tests := []struct {
		name     string
		args     []string
		set      map[string]string
		unset    []string
		wantCode int
		wantErr  string
	}{
		{"no password", []string{"serve"}, nil, []string{"DEFENDER_ADMIN_PASSWORD"}, 1, "DEFENDER_ADMIN_PASSWORD: required"},
		{"no password, default command", nil, nil, []string{"DEFENDER_ADMIN_PASSWORD"}, 1, "DEFENDER_ADMIN_PASSWORD"},
		{"no redis", []string{"serve"}, nil, []string{"DEFENDER_REDIS_URL"}, 1, "DEFENDER_REDIS_URL: required"},
		{"bad clickhouse", []string{"serve"}, map[string]string{"DEFENDER_CLICKHOUSE_URL": "http://x:8123"}, nil, 1, "DEFENDER_CLICKHOUSE_URL"},
		{"bad subject prefix", []string{"serve"}, map[string]string{"DEFENDER_SUBJECT_PREFIX": "a.>"}, nil, 1, "DEFENDER_SUBJECT_PREFIX"},
		{"bad gate setting", []string{"blocked"}, map[string]string{"DEFENDER_IPV6_PREFIX": "x"}, nil, 1, "DEFENDER_IPV6_PREFIX"},
		{"flag wins", []string{"serve", "--admin-password", ""}, nil, nil, 1, "DEFENDER_ADMIN_PASSWORD"},
		{"gate setting as a flag", []string{"blocked", "--ipv6-prefix", "x"}, nil, nil, 1, "DEFENDER_IPV6_PREFIX"},
		{"event setting as a flag", []string{"unblock", "ip", "192.0.2.1", "--nats-url", "nats://127.0.0.1:1", "--stream-max-age", "soon"}, nil, nil, 1, "DEFENDER_STREAM_MAX_AGE"},
		{"unknown command", []string{"frobnicate"}, nil, nil, 2, `unknown command "frobnicate"`},
		{"unblock without value", []string{"unblock", "ip"}, nil, nil, 2, "unblock KIND VALUE (KIND: ip, username, pair, spray, spray_net, spray_shared or username_familiar)"},
		{"block with both", []string{"block", "ip", "192.0.2.1", "--for", "1h", "--permanent"}, nil, nil, 2, "exclude each other"},
		{"bad duration", []string{"block", "ip", "192.0.2.1", "--for", "soon"}, nil, nil, 2, "--for"},
		{"unknown flag", []string{"blocked", "--nope"}, nil, nil, 2, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.set {
				env[k] = v
			}
			for _, k := range tc.unset {
				delete(env, k)
			}
			code, _, stderr := runCLI(t, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, tc.args...)
			assert.Equal(t, tc.wantCode, code, stderr)
			assert.Contains(t, stderr, tc.wantErr)
		})
	}
	code, stdout, _ := runCLI(t, func(string) (string, bool) { return "", false }, "help")
	assert.Equal(t, 0, code)
	for _, v := range []string{"DEFENDER_REDIS_URL", "DEFENDER_CLICKHOUSE_URL", "DEFENDER_NATS_URL", "DEFENDER_ADMIN_PASSWORD", "DEFENDER_HTTP_ADDR", "admin attempts"} {
		assert.Contains(t, stdout, v)
	}
}

func TestCLI(t *testing.T) {
	e := newEnv(t, envOpts{})
	unblocks := e.subscribe("dt.unblock.>")
	blocks := e.subscribe("dt.block.>")

	code, out, errOut := runCLI(t, e.lookup, "block", "ip", "2001:db8::1", "--for", "1h")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^blocked ip 2001:db8::/64 until \d{4}-\d\d-\d\dT`, out)
	assert.Equal(t, "2001:db8::/64", next(t, blocks).Subject)

	code, out, errOut = runCLI(t, e.lookup, "block", "--permanent", "username", "Ann Lee/ops")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "blocked username ann lee/ops permanently\n", out)
	assert.True(t, next(t, blocks).Permanent)

	code, out, errOut = runCLI(t, e.lookup, "blocked")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, regexp.MustCompile(`(?m)^ip\s+2001:db8::/64\s+\S+Z\s+(59m|1h)`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^username\s+ann lee/ops\s+permanent\s+-`), out)
	assert.Contains(t, out, "2 blocked")

	code, out, _ = runCLI(t, e.lookup, "blocked", "--json")
	require.Equal(t, 0, code)
	list := decode[BlockedList](t, out)
	assert.Equal(t, []string{"2001:db8::/64"}, values(list.IPs))

	code, out, errOut = runCLI(t, e.lookup, "unblock", "ip", "2001:db8::/64")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "unblocked ip 2001:db8::/64\n", out)
	ev := next(t, unblocks)
	assert.Equal(t, "2001:db8::/64", ev.Subject)
	assert.Equal(t, "admin", ev.Reason)
	assert.Empty(t, e.blocked(gate.KindIP))

	code, out, _ = runCLI(t, e.lookup, "unblock", "username", "nobody")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "was not blocked")

	code, _, errOut = runCLI(t, e.lookup, "unblock", "ip", "not-an-ip")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "admin:")

	now := time.Now().UTC()
	e.insertAttempts([]attempt{
		{ts: now.Add(-3 * time.Minute), ip: "203.0.113.7", user: "alice", result: "failure", path: "/login"},
		{ts: now.Add(-2 * time.Minute), ip: "203.0.113.7", user: "alice", result: "failure", path: "/login"},
		{ts: now.Add(-1 * time.Minute), ip: "203.0.113.7", user: "alice\x1b[31m", result: "blocked", path: "/login", blockedBy: []string{"ip", "username"}},
		{ts: now.Add(-2 * time.Hour), ip: "203.0.113.7", user: "alice", result: "failure", path: "/login"},
		{ts: now.Add(-time.Minute), ip: "192.0.2.1", user: "bob", result: "success", path: "/login"},
	})
	code, out, errOut = runCLI(t, e.lookup, "attempts", "--ip", "203.0.113.7", "--since", "1h", "--limit", "2")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^TIME\s+RESULT\s+IP\s+USERNAME\s+PATH`, lines[0])
	assert.Regexp(t, `blocked\s+203\.0\.113\.7\s+alice\\x1b\[31m\s+/login\s+blocked_by=ip\+username$`, lines[1], "control characters are escaped")
	assert.Regexp(t, `failure\s+203\.0\.113\.7\s+alice\s+/login\s+-$`, lines[2])
	require.True(t, strings.HasPrefix(lines[3], "next: --cursor "), lines[3])
	cursor := strings.TrimPrefix(lines[3], "next: --cursor ")

	code, out, errOut = runCLI(t, e.lookup, "attempts", "--ip", "203.0.113.7", "--since", "1h", "--limit", "2", "--cursor", cursor)
	require.Equal(t, 0, code, errOut)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	assert.Len(t, lines, 2, out)

	code, out, _ = runCLI(t, e.lookup, "attempts", "--username", "bob", "--result", "success", "--json")
	require.Equal(t, 0, code)
	assert.Len(t, decode[AttemptPage](t, out).Attempts, 1)

	code, _, errOut = runCLI(t, e.lookup, "attempts", "--result", "maybe")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "result")
}

func TestServeAndShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- cmdServe(ctx, nil, io.Discard, e.lookup, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	base := "http://" + addr

	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	req, err := http.NewRequest("GET", base+"/metrics", nil)
	require.NoError(t, err)
	req.SetBasicAuth(testUser, testPassword)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(metrics), "defender_admin_http_requests_total")
	assert.Contains(t, string(metrics), "go_goroutines")

	// An open event stream does not hold the shutdown up.
	req, err = http.NewRequest("GET", base+"/api/v1/events", nil)
	require.NoError(t, err)
	req.SetBasicAuth(testUser, testPassword)
	stream, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer stream.Body.Close()
	first, err := bufio.NewReader(stream.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "retry: 3000\n", first)

	cancel() // as SIGTERM does
	require.NoError(t, <-done)
	_, err = io.ReadAll(stream.Body)
	assert.NoError(t, err, "the stream ends cleanly")
	_, err = http.Get(base + "/healthz")
	assert.Error(t, err, "no longer listening")
}

// A block set by hand in Redis (django-defender's operators' way) is
// listed after `admin reindex`.
func TestCLIReindex(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	client := e.redis.Client()
	defer client.Close()
	require.NoError(t, client.Set(context.Background(), "t:blocked:ip:198.51.100.77", "blocked", time.Hour).Err())

	code, out, errOut := runCLI(t, e.lookup, "blocked")
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "198.51.100.77")

	code, out, errOut = runCLI(t, e.lookup, "reindex")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "1 blocks added to the index\n", out)

	code, out, errOut = runCLI(t, e.lookup, "blocked")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, regexp.MustCompile(`(?m)^ip\s+198\.51\.100\.77\s+\S+Z\s+(59m|1h)`), out)

	code, _, errOut = runCLI(t, e.lookup, "reindex", "extra")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "no arguments")
}
