package stacktest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

const adminPassword = "stacktest-password"

// TestStack starts scripts/stack.sh on free ports with its data in a
// temporary directory, locks a user out of the example login site, finds
// the block in the admin API and the attempts in ClickHouse, then stops
// the stack with SIGTERM and checks that nothing is left behind.
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not starting the whole stack")
	}
	path := os.Getenv("PATH") + ":/usr/sbin:/sbin"
	for _, bin := range []string{"redis-server", "redis-cli", "clickhouse-server", "curl", "setsid", "bash"} {
		if _, err := lookPath(bin, path); err != nil {
			t.Skipf("%s is not installed, so scripts/stack.sh would try to install it: skipping the stack test (CI installs redis-server and clickhouse-server, see .ci/run)", bin)
		}
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	data := t.TempDir()

	ports := map[string]int{}
	for _, name := range []string{"SITE", "GATE", "ADMIN", "RECORDER", "NATS", "REDIS", "CLICKHOUSE", "CLICKHOUSE_HTTP", "MAIL", "SMTP", "NOTIFIER", "UNLOCK"} {
		ports[name] = freePort(t, ports)
	}
	env := []string{"PATH=" + path, "DEFENDER_DATA=" + data, "DEFENDER_ADMIN_PASSWORD=" + adminPassword, "STACK_WAIT=90"}
	for name, port := range ports {
		env = append(env, fmt.Sprintf("STACK_%s_PORT=%d", name, port))
	}
	for _, kv := range os.Environ() { // the defaults, whatever the caller's shell says
		if !strings.HasPrefix(kv, "DEFENDER_") && !strings.HasPrefix(kv, "STACK_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}

	var out testenv.SyncBuffer
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "stack.sh"))
	cmd.Dir = root
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped { // a failed check: still stop everything the script started
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
			}
			for pid := range processesUsing(t, data) { // whatever the script could not stop
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("scripts/stack.sh output:\n%s", out.String())
			logs, _ := filepath.Glob(filepath.Join(data, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s (last 3000 bytes):\n%s", filepath.Base(l), tail(b, 3000))
			}
		}
	})

	// Ready: the script writes $DEFENDER_DATA/ready once every service answers
	// (it builds the binaries first).
	readyBy := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(data, "ready")); err == nil {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("scripts/stack.sh exited before it was ready: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		require.True(t, time.Now().Before(readyBy), "scripts/stack.sh not ready after 3 minutes")
	}
	assert.Contains(t, out.String(), fmt.Sprintf("http://127.0.0.1:%d/login", ports["SITE"]), "the site's URL is printed")
	assert.Contains(t, out.String(), "admin / "+adminPassword, "the admin credentials are printed")

	site := fmt.Sprintf("http://127.0.0.1:%d", ports["SITE"])
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports["ADMIN"])
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	login := func(user, password string) int {
		t.Helper()
		resp, err := client.PostForm(site+"/login", url.Values{"username": {user}, "password": {password}})
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}

	adminGet := func(path string, v any) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, admin+path, nil)
		require.NoError(t, err)
		req.SetBasicAuth("admin", adminPassword)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
		}
		return resp.StatusCode
	}
	type attempt struct {
		Username string `json:"username"`
		Result   string `json:"result"`
		Path     string `json:"path"`
	}
	// The login site: a good password signs in; with the default limit of
	// 3, the fourth failure is answered as locked, and so is the right
	// password afterwards.
	require.Equal(t, http.StatusFound, login("bob", "builder"), "bob signs in")
	// The middleware writes an outcome after the response, and a success
	// resets the address's failures: wait until bob's is written (his
	// attempt is published once it is) so that, on a loaded machine, it
	// cannot land after alice's first failure and wipe it.
	waitFor(t, 60*time.Second, "bob's success in ClickHouse, through the admin API", func() bool {
		var page struct{ Attempts []attempt }
		return adminGet("/api/v1/attempts?username=bob&limit=50", &page) == http.StatusOK &&
			len(page.Attempts) == 1 && page.Attempts[0].Result == "success"
	})
	for i := 1; i <= 3; i++ {
		require.Equal(t, http.StatusOK, login("alice", "guess"+strconv.Itoa(i)), "failure %d is an ordinary failure", i)
	}
	require.Equal(t, http.StatusTooManyRequests, login("alice", "guess4"), "the failure past the limit blocks")
	require.Equal(t, http.StatusTooManyRequests, login("alice", "wonderland"), "blocked, even with the password")

	// The admin API shows the block, and the demo attack stack.sh replays.
	resp, err := client.Get(admin + "/api/v1/blocked")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the admin API needs its credentials")

	var blocked struct {
		IPs       []struct{ Value string } `json:"ips"`
		Usernames []struct{ Value string } `json:"usernames"`
	}
	require.Equal(t, http.StatusOK, adminGet("/api/v1/blocked", &blocked))
	values := func(es []struct{ Value string }) []string {
		var vs []string
		for _, e := range es {
			vs = append(vs, e.Value)
		}
		return vs
	}
	assert.Contains(t, values(blocked.IPs), "127.0.0.1")
	assert.Contains(t, values(blocked.Usernames), "alice")
	assert.Contains(t, values(blocked.IPs), "203.0.113.66", "the demo attack's IP")
	assert.Contains(t, values(blocked.Usernames), "root", "the demo attack's username")

	// The admin CLI line the banner prints works as it is, pasted into a
	// shell with none of the stack's settings.
	_, cli, ok := strings.Cut(out.String(), "\n  admin CLI")
	require.True(t, ok, "the banner prints the admin CLI line")
	cli, _, _ = strings.Cut(strings.TrimSpace(cli), "\n")
	cliCmd := exec.Command("bash", "-c", cli)
	cliCmd.Env = []string{"PATH=" + path, "HOME=" + data}
	cliOut, err := cliCmd.CombinedOutput()
	require.NoError(t, err, "%s:\n%s", cli, cliOut)
	assert.Contains(t, string(cliOut), "203.0.113.66", "the CLI lists the demo attack's IP")
	assert.Contains(t, string(cliOut), "alice")

	// The attempts reach ClickHouse through NATS and the recorder: the
	// admin reads them back, newest first.
	var results map[string]int
	waitFor(t, 60*time.Second, "alice's 5 attempts in ClickHouse, through the admin API", func() bool {
		var page struct{ Attempts []attempt }
		if adminGet("/api/v1/attempts?username=alice&limit=50", &page) != http.StatusOK {
			return false
		}
		results = map[string]int{}
		for _, a := range page.Attempts {
			results[a.Result]++
		}
		return results["failure"]+results["blocked"] >= 5
	})
	assert.Equal(t, map[string]int{"failure": 4, "blocked": 1}, results)

	// And in ClickHouse itself, when its client is installed: bob's
	// success; alice's 4 failures and 1 refusal; the demo's 4 failures and
	// 1 refusal of root.
	if ch, err := lookPath("clickhouse-client", path); err == nil {
		var got string
		waitFor(t, 30*time.Second, "the attempts in ClickHouse", func() bool {
			q := exec.Command(ch, "--host", "127.0.0.1", "--port", strconv.Itoa(ports["CLICKHOUSE"]), "--query",
				"SELECT result, uniqExact(id) FROM defender.attempts WHERE username IN ('alice', 'bob', 'root') GROUP BY result ORDER BY result FORMAT TSV")
			b, err := q.CombinedOutput()
			require.NoError(t, err, "%s", b)
			got = string(b)
			return got == "success\t1\nfailure\t8\nblocked\t2\n"
		})
		assert.Equal(t, "success\t1\nfailure\t8\nblocked\t2\n", got)
	}

	// The notifier mailed alice once, to the stack's mail catcher (read
	// back through mailpit's API), with a link that lifts her username's
	// block, not the address's; the admin shows the unblock as the user's.
	assert.Contains(t, out.String(), fmt.Sprintf("http://127.0.0.1:%d/", ports["MAIL"]), "the mail catcher's URL is printed")
	link := aliceUnlockLink(t, fmt.Sprintf("http://127.0.0.1:%d", ports["MAIL"]))
	resp, err = client.Get(link)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the link opens the unlock page")
	u, err := url.Parse(link)
	require.NoError(t, err)
	resp, err = client.PostForm(u.Scheme+"://"+u.Host+u.Path, url.Values{"t": {u.Query().Get("t")}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "its button unlocks")
	blocked.IPs, blocked.Usernames = nil, nil
	require.Equal(t, http.StatusOK, adminGet("/api/v1/blocked", &blocked))
	assert.NotContains(t, values(blocked.Usernames), "alice", "alice's username is unlocked")
	assert.Contains(t, values(blocked.IPs), "127.0.0.1", "the address that failed stays blocked")
	waitFor(t, 60*time.Second, "the user's unblock in alice's history", func() bool {
		req, err := http.NewRequest(http.MethodGet, admin+"/username/alice", nil)
		require.NoError(t, err)
		req.SetBasicAuth("admin", adminPassword)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var page bytes.Buffer
		_, _ = page.ReadFrom(resp.Body)
		return strings.Contains(page.String(), "<td>user</td>")
	})
	// And as an admin sees it, in a browser: the unblock row of alice's
	// history says the user lifted it.
	bctx := testenv.Chromium(t)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminPassword))
	_, err = chromedp.Call(bctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(bctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(admin+"/username/alice"), chromedp.WaitReady(chromedp.CSS("body"))))
	reasons, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("tr")].filter(r => r.textContent.includes("unblock")).map(r => r.lastElementChild.textContent.trim())`))
	require.NoError(t, err)
	assert.Contains(t, reasons, "user", "the admin's browser shows the unblock as the user's")

	// SIGTERM stops every service, in order, and the script exits 0.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err = <-exited:
		stopped = true
	case <-time.After(60 * time.Second):
		t.Fatal("scripts/stack.sh still running 60 s after SIGTERM")
	}
	require.NoError(t, err, "exit status of scripts/stack.sh after SIGTERM")
	for _, name := range []string{"notifier", "mailpit", "loginapp", "admin", "recorder", "gate", "clickhouse", "redis"} {
		assert.Contains(t, out.String(), "  "+name+" stopped\n")
	}
	for name, port := range ports {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		assert.Error(t, err, "port of %s (%d) still open after the stop", name, port)
	}
	assert.Empty(t, processesUsing(t, data), "processes left running from %s", data)
	assert.NoFileExists(t, filepath.Join(data, "ready"))
}

// aliceUnlockLink waits for the notifier's mail to alice in mailpit (its
// HTTP API at base), checks it is the only one, and returns its unlock
// link.
func aliceUnlockLink(t *testing.T, base string) string {
	t.Helper()
	var ids []string
	waitFor(t, 60*time.Second, "the notifier's mail to alice in mailpit", func() bool {
		resp, err := http.Get(base + "/api/v1/messages")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var list struct {
			Messages []struct {
				ID string
				To []struct{ Address string }
			}
		}
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return false
		}
		ids = nil
		for _, m := range list.Messages {
			if len(m.To) == 1 && m.To[0].Address == "alice@example.com" {
				ids = append(ids, m.ID)
			}
		}
		return len(ids) > 0
	})
	require.Len(t, ids, 1, "one mail for one block")
	resp, err := http.Get(base + "/api/v1/message/" + ids[0])
	require.NoError(t, err)
	defer resp.Body.Close()
	var msg struct{ Text string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&msg))
	link := regexp.MustCompile(`http://127\.0\.0\.1:\d+/unlock\?t=[A-Za-z0-9_\-.]+`).FindString(msg.Text)
	require.NotEmpty(t, link, "the mail carries an unlock link:\n%s", msg.Text)
	return link
}

// freePort returns a free loopback port not among taken.
func freePort(t *testing.T, taken map[string]int) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		dup := false
		for _, p := range taken {
			dup = dup || p == port
		}
		if !dup {
			return port
		}
	}
}

// lookPath finds bin in the directories of path.
func lookPath(bin, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, bin)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", bin, exec.ErrNotFound)
}

// processesUsing returns the processes started for dir, by pid: their
// command line names it, or their environment holds STACK_OWNER=dir, the
// mark scripts/stack.sh gives its services.
func processesUsing(t *testing.T, dir string) map[int]string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	require.NoError(t, err)
	found := map[int]string{}
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(p + "/cmdline")
		if err != nil {
			continue // gone meanwhile
		}
		environ, _ := os.ReadFile(p + "/environ")
		marked := slices.Contains(strings.Split(string(environ), "\x00"), "STACK_OWNER="+dir)
		if marked || bytes.Contains(cmdline, []byte(dir)) {
			found[pid] = string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
	return found
}

// waitFor polls cond until it holds or the deadline passes; the checks
// after it say what is wrong.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("waited %s for %s", d, what)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
