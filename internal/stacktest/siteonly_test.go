package stacktest

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestSiteOnly starts `scripts/run.sh --site-only` on a free port, signs
// in, then sends SIGTERM to the script's process alone, as a supervisor
// or `kill PID` would (Ctrl-C signals the whole process group): the site
// must stop, free its port and exit 0.
func TestSiteOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building and starting the login site")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	port := freePort(t, nil)
	env := []string{"DEFENDER_DATA=" + t.TempDir(), fmt.Sprintf("STACK_SITE_PORT=%d", port)}
	for _, kv := range os.Environ() { // the defaults, whatever the caller's shell says
		if !strings.HasPrefix(kv, "DEFENDER_") && !strings.HasPrefix(kv, "STACK_") {
			env = append(env, kv)
		}
	}

	var out testenv.SyncBuffer
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "run.sh"), "--site-only")
	cmd.Dir = root
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) // whatever is left

	site := fmt.Sprintf("http://127.0.0.1:%d/login", port)
	waitFor(t, 3*time.Minute, "the login site", func() bool {
		resp, err := http.Get(site)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(site, url.Values{"username": {"bob"}, "password": {"builder"}})
	require.NoError(t, err, "output:\n%s", out.String())
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("scripts/run.sh --site-only still running 30 s after SIGTERM")
	}
	assert.NoError(t, err, "exit status after SIGTERM; output:\n%s", tail([]byte(out.String()), 2000))
	waitFor(t, 5*time.Second, "the site's port to close", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}
