package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// gateBin is cmd/gate, built by TestMain ("" in -short mode).
var gateBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithCommands(m, func(dir string) { gateBin = filepath.Join(dir, "gate") },
		"github.com/defender-go/defender/cmd/gate"))
}

// TestNginxExampleIsTheREADMEs: the README shows deploy/nginx.conf as it
// is, so that what it shows is what TestNginxInFrontOfALogin runs.
func TestNginxExampleIsTheREADMEs(t *testing.T) {
	conf, err := os.ReadFile("nginx.conf")
	require.NoError(t, err)
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	// The README's block starts at the first upstream line.
	body := string(conf[strings.Index(string(conf), "upstream login_app"):])
	assert.Contains(t, string(readme), body, "README's nginx example is deploy/nginx.conf from its upstream lines on")
}

// TestNginxInFrontOfALogin runs deploy/nginx.conf in Debian's nginx, in
// front of a login application, with cmd/gate (DEFENDER_FAIL_MODE=closed)
// over a real Redis: an allowed login reaches the application; a blocked
// address gets 429 with the gate's Retry-After and never reaches it; the
// gate's 503 (its store late) refuses the login with a 503; and when the
// gate does not answer at all the login is refused too, unless the
// configuration says "allow".
func TestNginxInFrontOfALogin(t *testing.T) {
	nginx := "/usr/sbin/nginx"
	if testing.Short() || gateBin == "" {
		t.Skip("-short: not starting nginx, Redis and the gate")
	}
	if _, err := os.Stat(nginx); err != nil {
		t.Skip("SKIPPED: nginx is not installed (Debian package nginx; CI installs it, see .ci/run)")
	}
	rs := testenv.Redis(t)
	var reached atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = io.WriteString(w, "login form")
	}))
	defer app.Close()
	gateAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	gate := startGate(t, gateAddr, "DEFENDER_REDIS_URL="+rs.URL, "DEFENDER_FAIL_MODE=closed")

	front := startNginx(t, nginx, "refuse", strings.TrimPrefix(app.URL, "http://"), gateAddr)
	client := &http.Client{Timeout: 10 * time.Second}
	login := func(base string) (*http.Response, string) {
		resp, err := client.Post(base+"/login", "application/x-www-form-urlencoded", strings.NewReader("username=alice&password=x"))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := login(front)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "login form", body)
	require.EqualValues(t, 1, reached.Load(), "an allowed login reaches the application")

	t.Run("the gate refuses: its store is late, closed mode", func(t *testing.T) {
		admin := redis.NewClient(&redis.Options{Addr: rs.Addr})
		defer admin.Close()
		require.NoError(t, admin.Do(context.Background(), "CLIENT", "PAUSE", 1000, "ALL").Err())
		before := reached.Load()
		resp, body := login(front)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
		assert.Equal(t, "5", resp.Header.Get("Retry-After"))
		assert.Equal(t, before, reached.Load(), "refused before the application")
		require.NoError(t, admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err())
	})

	t.Run("the gate does not answer", func(t *testing.T) {
		gate.Process.Signal(syscall.SIGKILL)
		_ = gate.Wait()
		before := reached.Load()
		resp, body := login(front)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
		assert.Equal(t, before, reached.Load(), "refuse: no unguarded login")

		open := startNginx(t, nginx, "allow", strings.TrimPrefix(app.URL, "http://"), gateAddr)
		resp, _ = login(open)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, before+1, reached.Load(), "allow: the login goes on unguarded")
	})

	t.Run("a blocked address", func(t *testing.T) {
		startGate(t, gateAddr, "DEFENDER_REDIS_URL="+rs.URL, "DEFENDER_FAIL_MODE=closed")
		for range 4 { // nginx's clients come from 127.0.0.1
			resp, err := client.Post("http://"+gateAddr+"/v1/attempts", "application/json",
				strings.NewReader(`{"ip":"127.0.0.1","username":"mallory","success":false}`))
			require.NoError(t, err)
			resp.Body.Close()
		}
		before := reached.Load()
		resp, body := login(front)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Contains(t, body, "Account locked")
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err, "the gate's Retry-After")
		assert.InDelta(t, 300, retry, 5)
		assert.Equal(t, before, reached.Load(), "never reaches the application")
	})
}

// startGate runs cmd/gate on addr with env and waits for its /healthz.
func startGate(t *testing.T, addr string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(gateBin)
	cmd.Env = append(os.Environ(), "DEFENDER_HTTP_ADDR="+addr, "DEFENDER_LOG_LEVEL=warn",
		"DEFENDER_NATS_LISTEN=127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), "DEFENDER_NATS_STORE_DIR="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("gate output:\n%s", out.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "the gate never answered /healthz")
	return cmd
}

// startNginx runs nginx in the foreground with deploy/nginx.conf, its
// addresses replaced by the test's and $defender_gate_down set to
// whenDown, and returns its base URL.
func startNginx(t *testing.T, nginx, whenDown, appAddr, gateAddr string) string {
	t.Helper()
	conf, err := os.ReadFile("nginx.conf")
	require.NoError(t, err)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	server := strings.NewReplacer(
		"server 127.0.0.1:8000;", "server "+appAddr+";",
		"server 127.0.0.1:8080;", "server "+gateAddr+";",
		"listen 80;", "listen 127.0.0.1:"+strconv.Itoa(port)+";",
		`default "refuse";`, `default "`+whenDown+`";`,
	).Replace(string(conf))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "defender.conf"), []byte(server), 0o644))
	main := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/defender.conf;
}
`, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644))
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\n%s", out.String(), log)
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 10*time.Second, 20*time.Millisecond, "nginx never listened:\n%s", &out)
	return "http://" + addr
}
