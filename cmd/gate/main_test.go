package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// gateBin is the cmd/gate binary built once by TestMain ("" in -short mode).
var gateBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCommands(m, func(dir string) { gateBin = filepath.Join(dir, "gate") },
		"github.com/defender-go/defender/cmd/gate"))
}

// gateProc is a cmd/gate process started for one test.
type gateProc struct {
	URL  string
	Addr string
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan struct{}
	err  error // Wait's result, after done
}

// baseEnv is the environment without any DEFENDER_ variable of the caller.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEFENDER_") {
			env = append(env, kv)
		}
	}
	return env
}

// command returns the gate binary as a command with env over baseEnv.
func command(t *testing.T, env []string, args ...string) (*exec.Cmd, *testenv.SyncBuffer) {
	t.Helper()
	if gateBin == "" {
		t.Skip("-short: not starting the gate process")
	}
	cmd := exec.Command(gateBin, args...)
	cmd.Env = append(baseEnv(), env...)
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// startGate starts the gate on a free port with the memory store and an
// embedded NATS server unless env says otherwise, waits until /healthz
// answers 200, and stops it (SIGTERM) when the test ends.
func startGate(t *testing.T, env ...string) *gateProc {
	t.Helper()
	return startGateArgs(t, env)
}

// startGateArgs is startGate with command-line arguments.
func startGateArgs(t *testing.T, env []string, args ...string) *gateProc {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	full := append([]string{
		"DEFENDER_NATS_LISTEN=127.0.0.1:0",
		"DEFENDER_NATS_STORE_DIR=" + t.TempDir(),
		"DEFENDER_TOKEN_SECRET=test-secret-0123456789",
		"DEFENDER_LOG_LEVEL=warn",
	}, env...)
	p := spawnGate(t, addr, full, args...)
	require.Eventually(t, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond)
	select {
	case <-p.done:
		t.Fatalf("gate exited at start: %v\n%s", p.err, p.out.String())
	default:
	}
	return p
}

// spawnGate starts the gate listening on addr (DEFENDER_HTTP_ADDR) with env
// over baseEnv, without
// waiting for it to serve, and stops it (SIGTERM) when the test ends.
func spawnGate(t *testing.T, addr string, env []string, args ...string) *gateProc {
	t.Helper()
	cmd, out := command(t, append([]string{"DEFENDER_HTTP_ADDR=" + addr}, env...), args...)
	require.NoError(t, cmd.Start())
	p := &gateProc{URL: "http://" + addr, Addr: addr, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("gate output:\n%s", p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the process, killing it if it hangs.
func (p *gateProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("gate did not stop within 30s of SIGTERM")
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *gateProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("gate did not exit")
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	require.NoError(t, p.err)
	return 0
}

var client = &http.Client{Timeout: 20 * time.Second}

// reply is an answer of the service.
type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// do sends a request and decodes the JSON answer (which every answer must be).
func (p *gateProc) do(t *testing.T, method, path, contentType string, body io.Reader, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, p.URL+path, body)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if path != "/metrics" || resp.StatusCode != http.StatusOK {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "answer %d %s", resp.StatusCode, raw)
		require.NoError(t, json.Unmarshal(raw, &r.Body), "answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return r
}

// post sends a JSON body.
func (p *gateProc) post(t *testing.T, path string, body any, headers ...string) reply {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	return p.do(t, http.MethodPost, path, "application/json", bytes.NewReader(b), headers...)
}

// attempt reports a finished attempt (one call).
func (p *gateProc) attempt(t *testing.T, ip, username string, success bool) reply {
	t.Helper()
	return p.post(t, "/v1/attempts", map[string]any{"ip": ip, "username": username, "success": success})
}

// check asks without counting.
func (p *gateProc) check(t *testing.T, ip, username string) reply {
	t.Helper()
	return p.post(t, "/v1/check", map[string]any{"ip": ip, "username": username})
}

// num reads a number field of a reply.
func (r reply) num(field string) int {
	f, _ := r.Body[field].(float64)
	return int(f)
}

// blockedBy reads blocked_by.
func (r reply) blockedBy() []string {
	out := []string{}
	list, _ := r.Body["blocked_by"].([]any)
	for _, k := range list {
		s, _ := k.(string)
		out = append(out, s)
	}
	return out
}

// assertAllowed checks a 200 answer.
func assertAllowed(t *testing.T, r reply, msgAndArgs ...any) {
	t.Helper()
	assert.Equal(t, http.StatusOK, r.Status, append([]any{"answer %s"}, r.Raw)...)
	assert.Equal(t, true, r.Body["allowed"], msgAndArgs...)
	assert.Empty(t, r.Header.Get("Retry-After"), msgAndArgs...)
}

// assertBlocked checks a 429 answer with its Retry-After.
func assertBlocked(t *testing.T, r reply, by []string, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, r.Status, "answer %s", r.Raw)
	assert.Equal(t, false, r.Body["allowed"], msgAndArgs...)
	assert.ElementsMatch(t, by, r.blockedBy(), msgAndArgs...)
	if r.Body["permanent"] == true {
		assert.Empty(t, r.Header.Get("Retry-After"), "no Retry-After for a permanent block")
		assert.Equal(t, 0, r.num("retry_after"))
		return
	}
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After header %q", r.Header.Get("Retry-After"))
	assert.Positive(t, ra)
	assert.Equal(t, ra, r.num("retry_after"))
}

// slowRedis gives store calls time on a loaded test machine (the default
// 100 ms bound is for production).
const slowRedis = "DEFENDER_REDIS_TIMEOUT=3000"

// stores runs f against the memory store and against a real Redis.
func stores(t *testing.T, f func(t *testing.T, env ...string)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		f(t)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		r := testenv.Redis(t)
		f(t, "DEFENDER_REDIS_URL="+r.URL, slowRedis)
	})
}
