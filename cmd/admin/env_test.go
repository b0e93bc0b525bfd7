package main

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

const (
	testUser     = "admin"
	testPassword = "s3cret pässword"
)

// One ClickHouse serves the package; each test gets its own database.
var (
	chOnce   sync.Once
	chServer *testenv.ClickHouseServer
	chErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if chServer != nil {
		chServer.Kill()
		os.RemoveAll(chServer.Dir())
	}
	os.Exit(code)
}

// clickHouseDSN returns the DSN of a fresh defender database made by the
// schema's bootstrap and migrations. Tests share one server and run one
// after the other, each dropping the previous test's database.
func clickHouseDSN(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not starting clickhouse-server")
	}
	chOnce.Do(func() {
		dir, err := os.MkdirTemp("", "admin-clickhouse-")
		if err != nil {
			chErr = err
			return
		}
		chServer, chErr = testenv.StartClickHouse(dir)
	})
	require.NoError(t, chErr, "clickhouse-server")
	conn := chServer.Open(t)
	ctx := context.Background()
	require.NoError(t, conn.Exec(ctx, "DROP DATABASE IF EXISTS defender"))
	_, err := record.Migrate(ctx, conn)
	require.NoError(t, err)
	return chServer.DSN()
}

// env is a running admin with its servers.
type env struct {
	t    *testing.T
	cfg  *Config
	srv  *Server
	http *httptest.Server
	deps *deps
	live *Live
	nats *testenv.NATSServer
	// natsTest is the URL of the test's own connections.
	natsTest string
	redis    *testenv.RedisServer
	gate     *gate.Gate // a separate gate on the same Redis, as a login service would hold
	ch       driver.Conn
	lookup   func(string) (string, bool)
	subjPfx  events.Subjects
}

type envOpts struct {
	noNATS bool
	// readmeNATS runs NATS with the README's users and permissions
	// (testenv.NATSAsREADME), the admin as its user "admin", on the
	// default subject prefix.
	readmeNATS bool
	observe    bool              // DEFENDER_MODE=observe, as the gates
	vars       map[string]string // more settings, as the gates'
}

// newEnv starts Redis, NATS and ClickHouse and an admin server over them.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t}
	e.redis = testenv.Redis(t)
	vars := map[string]string{
		"DEFENDER_REDIS_URL":      e.redis.URL,
		"DEFENDER_CLICKHOUSE_URL": clickHouseDSN(t),
		"DEFENDER_ADMIN_USER":     testUser,
		"DEFENDER_ADMIN_PASSWORD": testPassword,
		"DEFENDER_CACHE_PREFIX":   "t",
		"DEFENDER_SUBJECT_PREFIX": "dt",
		"DEFENDER_HTTP_ADDR":      "127.0.0.1:0",
	}
	if o.observe {
		vars["DEFENDER_MODE"] = "observe"
	}
	maps.Copy(vars, o.vars)
	e.subjPfx = events.Subjects{Prefix: "dt"}
	switch {
	case o.readmeNATS:
		e.nats = testenv.NATSAsREADME(t)
		e.natsTest = e.nats.UserURL(testenv.Inspector)
		vars["DEFENDER_NATS_URL"] = e.nats.UserURL("admin")
		vars["DEFENDER_SUBJECT_PREFIX"] = events.DefaultPrefix
		e.subjPfx = events.Subjects{}
	case !o.noNATS:
		e.nats = testenv.NATS(t)
		e.natsTest = e.nats.URL
		vars["DEFENDER_NATS_URL"] = e.nats.URL
	}
	e.lookup = func(k string) (string, bool) { v, ok := vars[k]; return v, ok }

	fs, cfg := newFlagSet("test", io.Discard, e.lookup)
	require.NoError(t, fs.Parse(nil))
	require.NoError(t, cfg.finish(needs{redis: true, clickhouse: true, http: true}))
	e.cfg = cfg
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	d, err := openDeps(ctx, cfg, needs{redis: true, clickhouse: true, shared: true}, log, reg)
	require.NoError(t, err)
	e.deps = d
	var dead func(context.Context) ([]webhook.DeadLetter, error)
	if d.nc != nil {
		e.live, err = NewLive(d.nc, e.subjPfx, o.observe, log)
		require.NoError(t, err)
		dead, err = deadLettersOf(d.nc)
		require.NoError(t, err)
	}
	e.srv, err = NewServer(ServerOptions{Gate: d.gate, History: d.hist, Live: e.live, DeadLetters: dead, User: testUser,
		Password: testPassword, Logger: log, Registry: reg})
	require.NoError(t, err)
	e.http = httptest.NewServer(e.srv)
	t.Cleanup(func() {
		defer e.srv.Close()
		if e.live != nil {
			e.live.Close()
		}
		e.http.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Close(cctx, log)
	})

	client := e.redis.Client()
	g, err := gate.New(cfg.Gate, gate.NewRedisStore(client, cfg.Gate.KeyPrefix, cfg.Gate.Policy()), gate.WithLogger(log))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	e.gate = g

	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chServer.Addr}, Auth: clickhouse.Auth{Database: "defender"}})
	require.NoError(t, err)
	t.Cleanup(func() { ch.Close() })
	e.ch = ch
	return e
}

// block blocks a subject through the separate gate, as a login would. A
// pair, which the default configuration does not check, is blocked by a
// gate in combo mode on the same Redis (another application, or an
// earlier configuration): the admin lists and lifts it all the same.
func (e *env) block(kind gate.Kind, value string, d time.Duration) {
	e.t.Helper()
	g := e.gate
	if !g.Checks(kind) {
		cfg := e.cfg.Gate
		cfg.LockOutByIPAndUsername = true
		var err error
		g, err = gate.New(cfg, gate.NewRedisStore(e.redis.Client(), e.cfg.Gate.KeyPrefix, cfg.Policy()),
			gate.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(e.t, err)
		defer g.Close(context.Background())
	}
	require.NoError(e.t, g.Block(context.Background(), kind, value, d))
}

// storeBlock blocks a subject of any kind in the store, as the gate's
// own counting does for the kinds no one blocks by hand (spray,
// spray_net, spray_shared, username_familiar): gate.Block refuses them.
func (e *env) storeBlock(kind gate.Kind, subject string, d time.Duration) {
	e.t.Helper()
	client := e.redis.Client()
	defer client.Close()
	_, err := gate.NewRedisStore(client, e.cfg.Gate.KeyPrefix, e.cfg.Gate.Policy()).Block(context.Background(), kind, subject, d)
	require.NoError(e.t, err)
}

// blocked lists the subjects of one kind blocked now, from the store.
func (e *env) blocked(kind gate.Kind) []string {
	e.t.Helper()
	bs, err := e.gate.Blocked(context.Background(), kind, 0)
	require.NoError(e.t, err)
	var out []string
	for _, b := range bs {
		out = append(out, b.Subject)
	}
	return out
}

// do sends a request with the admin's credentials (unless the header
// says otherwise) and returns the response with its body read.
func (e *env) do(method, path string, body io.Reader, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, body)
	require.NoError(e.t, err)
	req.SetBasicAuth(testUser, testPassword)
	for k, v := range hdr {
		req.Header[k] = v
	}
	if hdr.Get("Authorization") == "none" {
		req.Header.Del("Authorization")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, string(b)
}

// attempt is a row for insertAttempts.
type attempt struct {
	id                uuid.UUID // zero: a new UUIDv7
	ts                time.Time // millisecond precision
	ip, user, result  string
	path, userAgent   string
	observe, familiar bool
	shared            string
	blockedBy         []string
}

// insertAttempts writes rows as the recorder would (naming the columns,
// which ClickHouse 18.16 needs).
func (e *env) insertAttempts(rows []attempt) {
	e.t.Helper()
	ctx := context.Background()
	batch, err := e.ch.PrepareBatch(ctx, "INSERT INTO attempts (id, ts, ts_ms, ip, username, result, blocked_by, path, user_agent, observe, shared, familiar)")
	require.NoError(e.t, err)
	u8 := func(b bool) uint8 {
		if b {
			return 1
		}
		return 0
	}
	for _, r := range rows {
		if r.id == (uuid.UUID{}) {
			r.id = uuid.Must(uuid.NewV7())
		}
		ms := uint16(r.ts.Nanosecond() / int(time.Millisecond))
		if r.blockedBy == nil {
			r.blockedBy = []string{}
		}
		require.NoError(e.t, batch.Append(r.id, r.ts.Truncate(time.Second), ms, r.ip, r.user, r.result, r.blockedBy, r.path, r.userAgent,
			u8(r.observe), r.shared, u8(r.familiar)))
	}
	require.NoError(e.t, batch.Send())
}

// insertBlock writes a block or unblock row.
func (e *env) insertBlock(ts time.Time, kind, subject string, blocked bool, until time.Time, failures int) {
	e.t.Helper()
	e.insertBlockOf(ts, kind, subject, blocked, until, failures, false)
}

// insertBlockOf writes a block or unblock row, of observe mode or not.
func (e *env) insertBlockOf(ts time.Time, kind, subject string, blocked bool, until time.Time, failures int, observe bool) {
	e.t.Helper()
	typ := "unblock"
	if blocked {
		typ = "block"
	}
	var obs uint8
	if observe {
		obs = 1
	}
	batch, err := e.ch.PrepareBatch(context.Background(), "INSERT INTO blocks (id, ts, ts_ms, type, kind, subject, until, permanent, failures, reason, observe)")
	require.NoError(e.t, err)
	require.NoError(e.t, batch.Append(uuid.Must(uuid.NewV7()), ts.Truncate(time.Second), uint16(ts.Nanosecond()/int(time.Millisecond)),
		typ, kind, subject, until, uint8(0), uint32(failures), "auto", obs))
	require.NoError(e.t, batch.Send())
}

// subscribe collects block and unblock events published on NATS.
func (e *env) subscribe(subject string) chan *nats.Msg {
	e.t.Helper()
	nc, err := nats.Connect(e.natsTest)
	require.NoError(e.t, err)
	e.t.Cleanup(nc.Close)
	ch := make(chan *nats.Msg, 64)
	_, err = nc.ChanSubscribe(subject, ch)
	require.NoError(e.t, err)
	require.NoError(e.t, nc.Flush())
	return ch
}

// next waits for a message; the deadline only bounds a broken test.
func next(t *testing.T, ch chan *nats.Msg) events.Block {
	t.Helper()
	select {
	case m := <-ch:
		b, err := events.DecodeBlock(m.Data)
		require.NoError(t, err)
		return b
	case <-time.After(30 * time.Second):
		t.Fatal("no event published")
	}
	return events.Block{}
}
