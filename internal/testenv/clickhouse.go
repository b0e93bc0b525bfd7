package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseServer is a clickhouse-server process with its own ports and
// data directory. Debian ships 18.16; the config written here also suits
// newer servers.
type ClickHouseServer struct {
	// Addr is the native protocol's host:port (the only protocol
	// clickhouse-go speaks with 18.16).
	Addr string
	// HTTPAddr is the HTTP interface's host:port.
	HTTPAddr string

	dir  string
	bin  []string // command and leading arguments
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// ClickHouse starts a clickhouse-server for one test on free ports with a
// temporary data directory, and kills it when the test ends. A start takes
// well under a second on 18.16; tests that need many servers can still
// share one through StartClickHouse.
func ClickHouse(t testing.TB) *ClickHouseServer {
	return ClickHouseInZone(t, "UTC")
}

// ClickHouseInZone is ClickHouse with the server's time zone set to zone
// (an IANA name), for what depends on where the server's hours and days
// start.
func ClickHouseInZone(t testing.TB, zone string) *ClickHouseServer {
	t.Helper()
	skipShort(t, "clickhouse-server")
	s, err := startClickHouse(t.TempDir(), zone)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

// StartClickHouse starts a server in dir (created if missing) on free
// ports and waits until it answers SELECT 1. The caller stops it with Kill
// or Stop. It is for a server shared by a test package (from TestMain or a
// sync.Once), where no testing.TB exists yet.
func StartClickHouse(dir string) (*ClickHouseServer, error) {
	return startClickHouse(dir, "UTC")
}

func startClickHouse(dir, zone string) (*ClickHouseServer, error) {
	bin, err := clickHouseBinary()
	if err != nil {
		return nil, err
	}
	tcp, err := freePort()
	if err != nil {
		return nil, err
	}
	http, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &ClickHouseServer{
		Addr:     "127.0.0.1:" + strconv.Itoa(tcp),
		HTTPAddr: "127.0.0.1:" + strconv.Itoa(http),
		dir:      dir,
		bin:      bin,
	}
	if err := s.writeConfig(tcp, http, zone); err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// DSN is the URL of the server's defender database in the form of
// DEFENDER_CLICKHOUSE_URL. The database need not exist yet.
func (s *ClickHouseServer) DSN() string { return "clickhouse://" + s.Addr + "/defender" }

// Pid is the server's process id (0 when it is not running), for reading
// its CPU time.
func (s *ClickHouseServer) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Dir is the server's directory: config, data and logs (clickhouse.log,
// clickhouse.err.log).
func (s *ClickHouseServer) Dir() string { return s.dir }

// Open returns a connection to the server's default database, closed when
// the test ends.
func (s *ClickHouseServer) Open(t testing.TB) driver.Conn {
	t.Helper()
	c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr}})
	if err != nil {
		t.Fatalf("clickhouse open %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Start starts the server again on the same ports and data after Stop or
// Kill, and waits until it answers (at most 30 s).
func (s *ClickHouseServer) Start() error { return s.start() }

// Stop shuts the server down (SIGTERM), killing it after 3 s: 18.16 waits
// up to 10 s for idle client connections otherwise.
// Safe to call twice.
func (s *ClickHouseServer) Stop() { s.stop(syscall.SIGTERM, 3*time.Second) }

// Kill stops the server at once (SIGKILL to its process group), as a crash
// would. Safe to call twice.
func (s *ClickHouseServer) Kill() { s.stop(syscall.SIGKILL, 0) }

func (s *ClickHouseServer) stop(sig syscall.Signal, grace time.Duration) {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	if grace > 0 {
		select {
		case <-s.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	<-s.done
	s.cmd = nil
}

func (s *ClickHouseServer) start() error {
	if s.cmd != nil {
		return errors.New("clickhouse-server: already running")
	}
	log := filepath.Join(s.dir, "clickhouse.log")
	// A server that exits at once (a port taken) must not be mistaken for
	// ready because something else answers on the port: readiness is
	// "our process lives, answers SELECT 1 and logged Ready".
	before, _ := os.ReadFile(log)
	args := append(append([]string{}, s.bin[1:]...), "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd := exec.Command(s.bin[0], args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("clickhouse-server stdout: %w", err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start clickhouse-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = s.waitReady(ctx, len(before))
	if err != nil {
		s.Kill()
		errLog, _ := os.ReadFile(filepath.Join(s.dir, "clickhouse.err.log"))
		return fmt.Errorf("clickhouse-server on %s: %w\n%s", s.Addr, err, tail(errLog, 2000))
	}
	return nil
}

func (s *ClickHouseServer) waitReady(ctx context.Context, logOffset int) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.Addr},
		DialTimeout: time.Second,
		ReadTimeout: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return errors.New("exited during start")
		case <-ctx.Done():
			return fmt.Errorf("no answer to SELECT 1: %w", ctx.Err())
		case <-tick.C:
		}
		var one uint8
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			continue
		}
		log, _ := os.ReadFile(filepath.Join(s.dir, "clickhouse.log"))
		if len(log) > logOffset && strings.Contains(string(log[logOffset:]), "Ready for connections") {
			return nil
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// clickHouseBinary finds the server: Debian's clickhouse-server (in
// /usr/sbin, often not on a user's PATH) or the single clickhouse binary of
// newer packages, run as "clickhouse server".
func clickHouseBinary() ([]string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return []string{p}, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return []string{p, "server"}, nil
	}
	return nil, errors.New("clickhouse-server not found: install the Debian package clickhouse-server (see .ci/run)")
}

func (s *ClickHouseServer) writeConfig(tcp, http int, zone string) error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return fmt.Errorf("clickhouse dir: %w", err)
		}
	}
	vars := map[string]any{"Dir": s.dir, "TCP": tcp, "HTTP": http, "Zone": zone}
	for name, tmpl := range map[string]*template.Template{"config.xml": configXML, "users.xml": usersXML} {
		f, err := os.Create(filepath.Join(s.dir, name))
		if err != nil {
			return fmt.Errorf("clickhouse %s: %w", name, err)
		}
		err = tmpl.Execute(f, vars)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("clickhouse %s: %w", name, err)
		}
	}
	return nil
}

// configXML is a minimal server config: loopback only, no interserver or
// TLS ports, the time zone given (UTC unless a test asks), small caches (the defaults reserve GiBs), logs in Dir.
// <yandex> is the root 18.16 wants; newer servers accept it too.
var configXML = template.Must(template.New("config").Parse(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{{.Dir}}/clickhouse.log</log>
    <errorlog>{{.Dir}}/clickhouse.err.log</errorlog>
    <size>20M</size>
    <count>1</count>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{{.TCP}}</tcp_port>
  <http_port>{{.HTTP}}</http_port>
  <path>{{.Dir}}/data/</path>
  <tmp_path>{{.Dir}}/tmp/</tmp_path>
  <user_files_path>{{.Dir}}/user_files/</user_files_path>
  <format_schema_path>{{.Dir}}/format_schemas/</format_schema_path>
  <users_config>{{.Dir}}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>{{.Zone}}</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>16777216</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <max_connections>1024</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
</yandex>
`))

var usersXML = template.Must(template.New("users").Parse(`<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`))
