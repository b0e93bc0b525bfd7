package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// client is the load-generating side: HTTP load, embedded NATS, recorder.
type client struct {
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	conn driver.Conn // ClickHouse, once opRecorder came

	transports map[string]*http.Transport // one per server, kept warm

	rec     *record.Recorder
	flush   time.Duration // the recorders' Flush; 0 for the default
	recStop context.CancelFunc
	recDone chan error
}

// clientMain runs the client role until stdin closes or opQuit.
func clientMain() int {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	dir, err := os.MkdirTemp("", "defender-bench-nats-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench client:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	out := json.NewEncoder(os.Stdout)
	c, err := newClient(dir)
	if err != nil {
		_ = out.Encode(reply{Err: err.Error()})
		return 1
	}
	defer c.close()
	_ = out.Encode(reply{NATSURL: c.ns.ClientURL()})

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			_ = out.Encode(reply{Err: "bad command: " + err.Error()})
			continue
		}
		if cmd.Op == opQuit {
			return 0
		}
		r, err := c.do(cmd)
		if err != nil {
			r = &reply{Err: err.Error()}
		}
		_ = out.Encode(r)
	}
	return 0
}

func newClient(dir string) (*client, error) {
	ns, err := events.StartEmbedded(events.EmbeddedOptions{Port: -1, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, ns.ClientURL(), "bench-client")
	if err != nil {
		ns.Shutdown()
		return nil, err
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{}); err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, err
	}
	return &client{ns: ns, nc: nc, js: js, transports: map[string]*http.Transport{}}, nil
}

func (c *client) close() {
	c.stopRecorder()
	if c.conn != nil {
		c.conn.Close()
	}
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
	c.nc.Close()
	c.ns.Shutdown()
	c.ns.WaitForShutdown()
}

func (c *client) do(cmd command) (*reply, error) {
	switch cmd.Op {
	case opLoad:
		if cmd.Load == nil {
			return nil, errors.New("load: no spec")
		}
		res := c.load(*cmd.Load)
		return &reply{Load: &res}, nil
	case opRecorder:
		c.flush = cmd.Flush
		return &reply{}, c.startRecorder(cmd.ClickHouse, record.DefaultConsumer)
	case opCaughtUp:
		cu, err := c.caughtUp(2 * time.Minute)
		return &reply{Caught: cu}, err
	case opRecorderRun:
		rr, err := c.recorderRun(cmd.Events, cmd.Probes)
		return &reply{Recorder: rr}, err
	}
	return nil, fmt.Errorf("unknown op %q", cmd.Op)
}

// load sends spec's workload with a fixed number of workers, each on its
// own keep-alive connection, for spec.Duration, and reports every answer's
// latency. A request started before the deadline is waited for.
func (c *client) load(spec loadSpec) loadResult {
	tr := c.transports[spec.URL]
	if tr == nil {
		tr = &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			MaxConnsPerHost:     0,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		}
		c.transports[spec.URL] = tr
	}
	hc := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       time.Minute,
	}
	type worker struct {
		lat    []time.Duration
		status map[int]int
		errs   int
		first  error
		last   time.Duration // from start to the latest answer
	}
	ws := make([]worker, spec.Concurrency)
	start := time.Now()
	deadline := start.Add(spec.Duration)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.status = map[int]int{}
		w.lat = make([]time.Duration, 0, 1024)
		rng := rand.New(rand.NewPCG(spec.Seed, uint64(i)))
		wg.Go(func() {
			for time.Now().Before(deadline) {
				a := nextAttempt(spec.Workload, rng)
				req, err := http.NewRequest(http.MethodPost, spec.URL, strings.NewReader(a.body))
				if err != nil {
					w.errs++
					w.first = cmp(w.first, err)
					continue
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Forwarded-For", a.ip)
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					w.errs++
					w.first = cmp(w.first, err)
					time.Sleep(time.Millisecond)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				now := time.Now()
				w.lat = append(w.lat, now.Sub(t0))
				w.last = now.Sub(start)
				w.status[resp.StatusCode]++
			}
		})
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Status: map[int]int{}}
	var all []time.Duration
	for i := range ws {
		all = append(all, ws[i].lat...)
		for s, n := range ws[i].status {
			res.Status[s] += n
		}
		res.Errors += ws[i].errs
		if ws[i].last > 0 {
			res.Rate += float64(len(ws[i].lat)) / ws[i].last.Seconds()
		}
		if ws[i].first != nil && res.FirstError == "" {
			res.FirstError = ws[i].first.Error()
		}
	}
	res.Requests = len(all)
	slices.Sort(all)
	res.P50, res.P99, res.P999 = quantile(all, 0.5), quantile(all, 0.99), quantile(all, 0.999)
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	return res
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// quantile is the q-quantile of sorted samples (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// startRecorder runs a recorder with the defaults of cmd/recorder under
// the durable consumer name.
func (c *client) startRecorder(dsn, consumer string) error {
	if c.conn == nil {
		conn, err := record.Open(dsn)
		if err != nil {
			return err
		}
		c.conn = conn
	}
	// A flush longer than the default needs an ack wait of 3 flushes.
	rec, err := record.New(c.js, c.conn, record.Options{Consumer: consumer, Flush: c.flush,
		AckWait: max(record.DefaultAckWait, 3*c.flush)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	c.rec, c.recStop, c.recDone = rec, cancel, done
	return nil
}

func (c *client) stopRecorder() {
	if c.rec == nil {
		return
	}
	c.recStop()
	if err := <-c.recDone; err != nil {
		slog.Warn("recorder", "err", err)
	}
	c.rec = nil
}

// caughtUp waits until the recorder's consumer has nothing pending or
// unacknowledged, at most timeout.
func (c *client) caughtUp(timeout time.Duration) (*caughtUp, error) {
	if c.rec == nil {
		return nil, errors.New("no recorder running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	var pending uint64
	for {
		cons, err := c.js.Consumer(ctx, events.StreamName, record.DefaultConsumer)
		if err == nil {
			var info *jetstream.ConsumerInfo
			info, err = cons.Info(ctx)
			if err == nil {
				pending = info.NumPending + uint64(info.NumAckPending)
				if pending == 0 {
					break
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := c.rec.Stats()
	return &caughtUp{Attempts: s.Attempts, Blocks: s.Blocks, Pending: pending, Waited: time.Since(start)}, nil
}

// recorderRun measures the recorder alone: n events wait in a purged
// stream, a fresh recorder starts, and the time until it has written them
// all gives its sustained rate. Then, with events still flowing at a
// steady background rate, probe events are published one at a time and
// ClickHouse is polled until each one's row appears: the publish-to-row lag.
func (c *client) recorderRun(n, probes int) (*recorderResult, error) {
	if c.conn == nil {
		return nil, errors.New("no ClickHouse connection: send opRecorder first")
	}
	ctx := context.Background()
	c.stopRecorder()
	stream, err := c.js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	if err := stream.Purge(ctx); err != nil {
		return nil, fmt.Errorf("purge: %w", err)
	}
	_ = c.js.DeleteConsumer(ctx, events.StreamName, record.DefaultConsumer)

	subjects := events.Subjects{}
	base := time.Now().UTC()
	for i := 0; i < n; i++ {
		a := benchEvent(i, base, "")
		data, err := a.Encode()
		if err != nil {
			return nil, err
		}
		if _, err := c.js.PublishAsync(a.NATSSubject(subjects), data, jetstream.WithMsgID(a.ID)); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		if i%2000 == 1999 || i == n-1 { // stay below the context's pending limit
			select {
			case <-c.js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return nil, errors.New("publish acks did not come")
			}
		}
	}

	// cmd/recorder runs with a GC target of 400 unless GOGC is set: the
	// drain is measured the same way (this process also hosts NATS).
	if _, set := os.LookupEnv("GOGC"); !set {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	const consumer = "bench-drain"
	start := time.Now()
	if err := c.startRecorder("", consumer); err != nil {
		return nil, err
	}
	for c.rec.Stats().Attempts < uint64(n) {
		if time.Since(start) > 5*time.Minute {
			return nil, fmt.Errorf("recorder wrote %d of %d events in 5 min", c.rec.Stats().Attempts, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res := &recorderResult{Events: n, Elapsed: time.Since(start), Batch: record.DefaultBatch, Flush: recordFlush(c.flush)}

	// Lag, under a steady background of events.
	const background = 10000 // events per second: the flow the lag is specified at
	bgCtx, stopBg := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	var bgSent int
	bgStart := time.Now()
	bgWG.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		i := n
		for {
			select {
			case <-bgCtx.Done():
				return
			case <-tick.C:
			}
			for range background / 100 {
				a := benchEvent(i, time.Now().UTC(), "")
				i++
				if data, err := a.Encode(); err == nil {
					_, _ = c.js.PublishAsync(a.NATSSubject(subjects), data, jetstream.WithMsgID(a.ID))
					bgSent++
				}
			}
		}
	})
	defer func() { stopBg(); bgWG.Wait() }()
	for p := 0; p < probes; p++ {
		name := fmt.Sprintf("lag-probe-%d-%d", time.Now().UnixNano(), p)
		t0 := time.Now()
		a := benchEvent(p, t0.UTC(), name)
		data, err := a.Encode()
		if err != nil {
			return nil, err
		}
		if _, err := c.js.Publish(ctx, a.NATSSubject(subjects), data, jetstream.WithMsgID(a.ID)); err != nil {
			return nil, fmt.Errorf("publish probe: %w", err)
		}
		for {
			got, err := record.CountAttempts(ctx, c.conn, record.AttemptFilter{Usernames: []string{name}})
			if err != nil {
				return nil, err
			}
			if got > 0 {
				res.Lags = append(res.Lags, time.Since(t0))
				break
			}
			if time.Since(t0) > time.Minute {
				return nil, fmt.Errorf("probe %d not stored after 1 min", p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stopBg()
	bgWG.Wait()
	res.Background = float64(bgSent) / time.Since(bgStart).Seconds()
	slices.Sort(res.Lags)
	return res, nil
}

// benchEvent is a realistic failed attempt for the recorder's own test.
func benchEvent(i int, t time.Time, username string) events.Attempt {
	if username == "" {
		username = fmt.Sprintf("user%d", i%numUsers)
	}
	return events.Attempt{
		V:                events.Version,
		Type:             events.TypeAttempt,
		ID:               events.NewID(),
		Time:             t.Truncate(time.Millisecond),
		IP:               sourceIP(i % numIPs),
		Username:         username,
		Result:           events.ResultFailure,
		Path:             "/login/cheap",
		UserAgent:        "defender-bench",
		Gate:             "bench",
		IPFailures:       i % 7,
		UsernameFailures: i % 5,
	}
}
