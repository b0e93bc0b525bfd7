package testenv

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Inspector is the user NATSAsREADME adds beside the README's, allowed
// everything, for a test's own setup and checks.
const Inspector = "inspector"

// NATSAsREADME starts an embedded NATS server with JetStream whose users
// and permissions are those of the README's example authorization block
// ("Only the gates may publish blocks"), read from README.md as an
// operator would copy it, each user with the password "<user>-pass"
// (UserURL), plus Inspector. The server keeps the permission violations
// it logs (Violations).
func NATSAsREADME(t testing.TB) *NATSServer {
	t.Helper()
	skipShort(t, "nats-server")
	conf := READMENATSAuthorization(t)
	// The README's passwords are variables ($GATE_PASS): defined here.
	var vars strings.Builder
	for _, m := range regexp.MustCompile(`\$([A-Z]+)_PASS\b`).FindAllStringSubmatch(conf, -1) {
		fmt.Fprintf(&vars, "%s_PASS = %q\n", m[1], strings.ToLower(m[1])+"-pass")
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(vars.String()+conf+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the README's NATS authorization block: %v", err)
	}
	if len(opts.Users) == 0 {
		t.Fatal("the README's NATS authorization block has no users")
	}
	opts.Users = append(opts.Users, &server.User{Username: Inspector, Password: Inspector + "-pass"})
	opts.Host, opts.Port = "127.0.0.1", FreePort(t)
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	n := &NATSServer{opts: opts, t: t, violations: &violationLog{}}
	n.Start()
	t.Cleanup(n.Shutdown)
	return n
}

// READMENATSAuthorization is the README's example authorization block,
// from "authorization {" to its closing brace.
func READMENATSAuthorization(t testing.TB) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(moduleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?ms)^```\n(authorization \\{\n.*?\n\\})\n```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ``` block starting with \"authorization {\"")
	}
	return string(m[1])
}

// UserURL is the server's URL with user's credentials, as DEFENDER_NATS_URL
// carries them.
func (n *NATSServer) UserURL(user string) string {
	u, err := url.Parse(n.URL)
	if err != nil {
		n.t.Fatal(err)
	}
	u.User = url.UserPassword(user, user+"-pass")
	return u.String()
}

// JetStreamAs connects to the server as user (UserURL) until the test
// ends.
func (n *NATSServer) JetStreamAs(user string) jetstream.JetStream {
	n.t.Helper()
	nc, err := nats.Connect(n.UserURL(user), nats.Name(user))
	if err != nil {
		n.t.Fatalf("nats connect as %s: %v", user, err)
	}
	n.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		n.t.Fatal(err)
	}
	return js
}

// Violations are the permission violations the server has logged so far
// (a server of NATSAsREADME; none for the others).
func (n *NATSServer) Violations() []string {
	if n.violations == nil {
		return nil
	}
	return n.violations.all()
}

// violationLog is a server.Logger that keeps the permission violations.
type violationLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *violationLog) Errorf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	if !strings.Contains(line, "Violation") {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *violationLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (*violationLog) Noticef(string, ...any) {}
func (*violationLog) Warnf(string, ...any)   {}
func (*violationLog) Fatalf(string, ...any)  {}
func (*violationLog) Debugf(string, ...any)  {}
func (*violationLog) Tracef(string, ...any)  {}

// moduleRoot is the directory of go.mod, above the test's.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
