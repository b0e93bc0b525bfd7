package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/defender-go/defender/bench/evload"
	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// The events pass measures what an event costs in CPU on its whole path,
// the gate's publisher, NATS JetStream, the recorder and ClickHouse, each
// a process of its own so that each part's CPU is read apart, against a
// floor that does the least such a path can (bench/eventsfloor), in the
// same run, at the same offered rates with the same events. A throughput
// pass cannot show it: on two shared cores the pipeline's CPU hides in
// the login server's.
const passEvents = "events"

// The events pass's contenders.
const (
	evDefender = "defender" // bench/eventsnode built from this tree
	evFloor    = "floor"    // bench/eventsfloor
	evBefore   = "before"   // bench/eventsnode built against -events-before
)

// The programs the pass builds (go build), by package.
const (
	natsServerPkg  = "github.com/nats-io/nats-server/v2"
	eventsNodePkg  = "github.com/defender-go/defender/bench/eventsnode"
	eventsFloorPkg = "github.com/defender-go/defender/bench/eventsfloor"
)

// eventsNodeSource is what -events-before copies into the older tree:
// the defender contender's program and the package it shares with the
// floor, paths from the module root.
var eventsNodeSource = []string{"bench/eventsnode", "bench/evload"}

// eventsCell is one contender at one offered rate in one round.
type eventsCell struct {
	Round     int
	Rate      int // offered events per second
	Contender string
	Events    int
	// Elapsed is the publisher's wall time from its first event to its
	// last acknowledgement.
	Elapsed time.Duration
	// The CPU time (user + system) of each part over the cell: the
	// publisher's from its first event to its last acknowledgement (the
	// floor's events encoded before); nats-server's and
	// clickhouse-server's from before the consumer starts until it exits;
	// the consumer's whole life, idle fetches included.
	Publisher, NATS, Consumer, ClickHouse time.Duration
	// NATSSyscalls is nats-server's read and write system calls over the
	// same span as NATS (0 in results from before it was counted).
	NATSSyscalls uint64 `json:",omitempty"`
	// Rows and Unique are defender.attempts' rows and distinct ids after
	// the cell, and Stored the stream's messages.
	Rows, Unique, Stored uint64
	// Wall is the cell's wall time, from the consumer's start to its
	// exit, and Machine the busy time of all cores meanwhile: what the
	// parts leave of it is other programs, which slow every part.
	Wall, Machine time.Duration
}

// othersCores is the cores other programs kept busy during the cell
// (NaN in results from before it was measured).
func (c *eventsCell) othersCores() float64 {
	if c.Wall <= 0 {
		return math.NaN()
	}
	own := c.Publisher + c.NATS + c.Consumer + c.ClickHouse
	return float64(max(0, c.Machine-own)) / float64(c.Wall)
}

// parts are the cell's CPU times in µs per event: publisher, nats-server,
// consumer, clickhouse-server, and their sum.
func (c *eventsCell) parts() [numEventParts]float64 {
	n := float64(c.Events)
	pub, ns, cons, ch := usPer(c.Publisher, n), usPer(c.NATS, n), usPer(c.Consumer, n), usPer(c.ClickHouse, n)
	return [numEventParts]float64{pub, ns, cons, ch, pub + ns + cons + ch}
}

// The parts of an events cell, in the order of parts().
const numEventParts = 5

var eventPartNames = [numEventParts]string{"publisher", "nats-server", "consumer", "clickhouse-server", "total"}

// eventsRun is the events pass's results.
type eventsRun struct {
	Cells []eventsCell
	// BeforeRev is the revision of the before contender (-events-before),
	// and BeforeErr why it was skipped (its build failed).
	BeforeRev string `json:",omitempty"`
	BeforeErr string `json:",omitempty"`
	// NATSServer is the nats-server version.
	NATSServer string
}

// eventsEnv is what the events pass started.
type eventsEnv struct {
	e      *env
	dir    string
	ns     *testenv.NATSProcess
	nc     *nats.Conn
	stream jetstream.Stream
	ch     driver.Conn
	// bins is each contender's program (its publish and record roles).
	bins map[string]string
}

// eventsPerCell is the events a cell sends at rate a second: d's worth.
func eventsPerCell(rate int, d time.Duration) int {
	return max(1, int(float64(rate)*d.Seconds()))
}

// runEvents runs the events pass: the programs built, a nats-server
// started, then o.Rounds rounds of every offered rate × contender, the
// contenders rotated so that none always runs first.
func (e *env) runEvents(ctx context.Context) (*eventsRun, error) {
	res := &eventsRun{}
	dir := filepath.Join(e.dir, "events")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e.logf("events pass: building nats-server, bench/eventsnode and bench/eventsfloor")
	if err := goBuild(ctx, "", dir+string(filepath.Separator), nil, natsServerPkg, eventsNodePkg, eventsFloorPkg); err != nil {
		return nil, err
	}
	ev := &eventsEnv{e: e, dir: dir, bins: map[string]string{
		evDefender: filepath.Join(dir, "eventsnode"),
		evFloor:    filepath.Join(dir, "eventsfloor"),
	}}
	contenders := []string{evDefender, evFloor}
	if rev := e.o.EventsBefore; rev != "" {
		e.logf("events pass: building bench/eventsnode against %s", rev)
		commit, exe, err := buildBefore(ctx, dir, rev)
		res.BeforeRev = commit
		if err != nil {
			res.BeforeErr = err.Error()
			e.logf("events pass: NO BEFORE CONTENDER: building bench/eventsnode against %s failed: %v", rev, err)
		} else {
			ev.bins[evBefore] = exe
			contenders = append(contenders, evBefore)
		}
	}
	if err := ev.start(ctx); err != nil {
		return nil, err
	}
	defer ev.close()
	res.NATSServer = ev.nc.ConnectedServerVersion()
	for round := range e.o.Rounds {
		for ri, rate := range e.o.EventsRates {
			for _, ct := range rotate(contenders, round+ri) {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				c, err := ev.measure(ctx, round, rate, ct)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s, %d/s, %s: %w", round+1, passEvents, rate, ct, err)
				}
				p := c.parts()
				e.logf("round %d  %-7s %6d/s  %-8s publisher %5.1f  nats-server %5.1f  consumer %5.1f  clickhouse-server %5.1f  total %6.1f µs/event (%d events in %s)",
					round+1, passEvents, rate, ct, p[0], p[1], p[2], p[3], p[4], c.Events, c.Elapsed.Round(time.Millisecond))
				res.Cells = append(res.Cells, c)
			}
		}
	}
	return res, nil
}

// start runs nats-server with the DEFENDER stream and connects to it and
// to ClickHouse (the run's, its schema applied in setup).
func (ev *eventsEnv) start(ctx context.Context) error {
	ns, err := testenv.StartNATSProcess(filepath.Join(ev.dir, "nats-server"), ev.dir, 0)
	if err != nil {
		return err
	}
	ev.ns = ns
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	nc, js, err := events.Connect(cctx, ns.URL, "bench-events")
	if err != nil {
		return err
	}
	ev.nc = nc
	if ev.stream, err = events.EnsureStream(cctx, js, events.StreamConfig{}); err != nil {
		return err
	}
	ev.ch, err = record.Open(ev.e.chDSN)
	return err
}

func (ev *eventsEnv) close() {
	if ev.ch != nil {
		ev.ch.Close()
	}
	if ev.nc != nil {
		ev.nc.Close()
	}
	if ev.ns != nil {
		ev.ns.Kill()
	}
}

// measure runs one cell: the stream, its consumers and the attempts table
// emptied; the contender's consumer started; once its durable consumer
// exists, its publisher at rate a second; then the wait for the consumer
// to have written every event, which are checked to be there, each once.
func (ev *eventsEnv) measure(ctx context.Context, round, rate int, ct string) (eventsCell, error) {
	e := ev.e
	n := eventsPerCell(rate, e.o.EventsDuration)
	c := eventsCell{Round: round, Rate: rate, Contender: ct, Events: n}
	if err := ev.reset(ctx); err != nil {
		return c, err
	}
	exe, url, durable := ev.bins[ct], ev.ns.URL, record.DefaultConsumer
	if ct == evFloor {
		durable = evload.FloorConsumer
	}
	// Generous bounds: a cell that hangs fails rather than the whole run.
	cctx, cancel := context.WithTimeout(ctx, 3*e.o.EventsDuration+2*time.Minute)
	defer cancel()

	nats0, ch0, machine0, t0 := procCPU(ev.ns.Pid()), procCPU(e.chPid), machineCPU(), time.Now()
	sys0 := procSyscalls(ev.ns.Pid())
	cons := newChild(cctx, exe, "record", "-nats", url, "-clickhouse", e.chDSN, "-n", strconv.Itoa(n))
	if err := cons.cmd.Start(); err != nil {
		return c, err
	}
	consDone := make(chan error, 1)
	go func() { consDone <- cons.cmd.Wait() }()
	if err := ev.waitConsumer(cctx, durable, consDone); err != nil {
		cancel()
		<-consDone
		return c, fmt.Errorf("%w%s", err, cons.stderrTail())
	}
	pub := newChild(cctx, exe, "publish", "-nats", url, "-n", strconv.Itoa(n), "-rate", strconv.Itoa(rate))
	pubRep, err := pub.run()
	if err != nil {
		cancel()
		<-consDone
		return c, fmt.Errorf("publisher: %w", err)
	}
	if err := <-consDone; err != nil {
		return c, fmt.Errorf("consumer: %w%s", err, cons.stderrTail())
	}
	c.NATS, c.ClickHouse = procCPU(ev.ns.Pid())-nats0, procCPU(e.chPid)-ch0
	c.NATSSyscalls = procSyscalls(ev.ns.Pid()) - sys0
	c.Machine, c.Wall = machineCPU()-machine0, time.Since(t0)
	c.Publisher, c.Elapsed = pubRep.CPU, pubRep.Elapsed
	c.Consumer = cons.cmd.ProcessState.UserTime() + cons.cmd.ProcessState.SystemTime()
	if err := ev.check(ctx, &c); err != nil {
		return c, err
	}
	return c, nil
}

// reset empties the stream, deletes its consumers and truncates the
// attempts table: every cell starts from nothing.
func (ev *eventsEnv) reset(ctx context.Context) error {
	if err := ev.stream.Purge(ctx); err != nil {
		return fmt.Errorf("purge the stream: %w", err)
	}
	names := ev.stream.ConsumerNames(ctx)
	var del []string
	for name := range names.Name() {
		del = append(del, name)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list the consumers: %w", err)
	}
	for _, name := range del {
		if err := ev.stream.DeleteConsumer(ctx, name); err != nil {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
	}
	if err := ev.ch.Exec(ctx, "TRUNCATE TABLE "+record.Database+".attempts"); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	// ClickHouse drops the parts in the background: let it, before the
	// cell's CPU is read.
	time.Sleep(300 * time.Millisecond)
	return nil
}

// waitConsumer waits until the durable consumer exists on the stream,
// which each contender's consumer creates when it starts, so that the
// publisher starts with the consumer ready, as in production.
func (ev *eventsEnv) waitConsumer(ctx context.Context, durable string, exited <-chan error) error {
	for {
		if _, err := ev.stream.Consumer(ctx, durable); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("consumer %s: %w", durable, err)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the consumer exited before creating %s: %v", durable, err)
		case <-ctx.Done():
			return fmt.Errorf("consumer %s not created: %w", durable, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// check reads what the cell left: every event sent must be in ClickHouse
// once by id (a contender that lost or invented events would look cheap)
// and in the stream (twice, for an attempt sent again after its
// acknowledgement timed out: attempts carry no message id).
func (ev *eventsEnv) check(ctx context.Context, c *eventsCell) error {
	if err := ev.ch.QueryRow(ctx, "SELECT count(), uniqExact(id) FROM "+record.Database+".attempts").Scan(&c.Rows, &c.Unique); err != nil {
		return fmt.Errorf("count the rows: %w", err)
	}
	info, err := ev.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	c.Stored = info.State.Msgs
	if c.Unique != uint64(c.Events) {
		return fmt.Errorf("%d distinct events in ClickHouse (%d rows) for %d sent", c.Unique, c.Rows, c.Events)
	}
	if c.Stored < uint64(c.Events) {
		return fmt.Errorf("the stream holds %d messages for %d events sent", c.Stored, c.Events)
	}
	return nil
}

// child is a contender's process.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func newChild(ctx context.Context, exe string, args ...string) *child {
	c := &child{cmd: exec.CommandContext(ctx, exe, args...)}
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	return c
}

// run runs the child to its end and reads its report.
func (c *child) run() (evload.Report, error) {
	var rep evload.Report
	if err := c.cmd.Run(); err != nil {
		return rep, fmt.Errorf("%w%s", err, c.stderrTail())
	}
	if err := json.Unmarshal(c.stdout.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("report %q: %w", c.stdout.String(), err)
	}
	return rep, nil
}

// stderrTail is the end of what the child wrote on stderr, for an error.
func (c *child) stderrTail() string {
	s := strings.TrimSpace(c.stderr.String())
	if s == "" {
		return ""
	}
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return "\n" + s
}

// goBuild runs go build -o out pkgs in dir ("" for the current directory,
// which is in this module) with env added to the environment.
func goBuild(ctx context.Context, dir, out string, env []string, pkgs ...string) error {
	cmd := exec.CommandContext(ctx, goTool(), append([]string{"build", "-o", out}, pkgs...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		out := string(bytes.TrimSpace(b))
		return fmt.Errorf("go build %s: %s (%w)\n%s", strings.Join(pkgs, " "), buildErrorLine(out), err, out)
	}
	return nil
}

// buildErrorLine is the line of go build's output that says what failed:
// the first compiler message at a file position, else the first line.
func buildErrorLine(out string) string {
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		if strings.Contains(l, ".go:") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[0])
}

// goTool is the go command: the one on PATH, else the one of the
// toolchain that built the bench.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildBefore builds the current bench/eventsnode against the packages
// of revision rev: the revision extracted with git archive, the current
// eventsnode and evload sources copied into it, built there (the same
// module cache; -mod=mod lets an older go.sum be completed from it, and
// GOPROXY=off keeps a package that revision lacks from being looked for
// on the network). It returns rev's short commit hash and the program.
func buildBefore(ctx context.Context, dir, rev string) (commit, exe string, err error) {
	root, err := output(ctx, "", goTool(), "list", "-m", "-f", "{{.Dir}}")
	if err != nil {
		return rev, "", err
	}
	if commit, err = output(ctx, root, "git", "rev-parse", "--short", rev+"^{commit}"); err != nil {
		return rev, "", err
	}
	src := filepath.Join(dir, "before-"+commit)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return commit, "", err
	}
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	var stderr bytes.Buffer
	archive.Stderr, untar.Stderr = &stderr, &stderr
	if untar.Stdin, err = archive.StdoutPipe(); err != nil {
		return commit, "", err
	}
	if err := untar.Start(); err != nil {
		return commit, "", err
	}
	aerr := archive.Run()
	if err := errors.Join(aerr, untar.Wait()); err != nil {
		return commit, "", fmt.Errorf("git archive %s | tar -x: %w\n%s", commit, err, bytes.TrimSpace(stderr.Bytes()))
	}
	for _, pkg := range eventsNodeSource {
		if err := copyGoSources(filepath.Join(root, pkg), filepath.Join(src, pkg)); err != nil {
			return commit, "", err
		}
	}
	exe = filepath.Join(dir, "eventsnode-"+commit)
	if err := goBuild(ctx, src, exe, []string{"GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off"}, "./bench/eventsnode"); err != nil {
		return commit, "", err
	}
	return commit, exe, nil
}

// copyGoSources replaces dst's contents by src's Go files, tests left out.
func copyGoSources(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// output runs a command in dir and returns its trimmed standard output.
func output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(b)), nil
}
