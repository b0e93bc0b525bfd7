package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// The bench runs as two processes so that the server side can be measured
// alone (allocations per request are the login server's only):
//
//   - the driver (this binary as started) runs the login application under
//     each configuration, Redis and ClickHouse, and writes the results;
//   - the client (the same binary re-executed with BENCH_ROLE=client) runs
//     the load generator, the embedded NATS server and the recorder, the
//     parts that are not the login server.
//
// They talk over the client's stdin and stdout, one JSON object a line.
const (
	roleEnv    = "BENCH_ROLE"
	roleClient = "client"
)

// Operations the client understands.
const (
	opLoad        = "load"         // run a load and report it
	opRecorder    = "recorder"     // start the recorder against ClickHouse
	opCaughtUp    = "caught-up"    // wait until the recorder has written every event
	opRecorderRun = "recorder-run" // measure the recorder's throughput and lag
	opQuit        = "quit"         // stop everything and exit
)

// command is one request to the client.
type command struct {
	Op string `json:"op"`
	// Load, for opLoad.
	Load *loadSpec `json:"load,omitempty"`
	// ClickHouse is the DSN for opRecorder.
	ClickHouse string `json:"clickhouse,omitempty"`
	// Flush is the recorders' flush interval, for opRecorder (0: the default).
	Flush time.Duration `json:"flush,omitempty"`
	// Events is how many events opRecorderRun writes through the recorder,
	// and Probes how many single events it times to their row.
	Events int `json:"events,omitempty"`
	Probes int `json:"probes,omitempty"`
}

// reply is the client's answer to one command, or its greeting.
type reply struct {
	Err string `json:"err,omitempty"`
	// NATSURL is the embedded NATS server's URL (greeting).
	NATSURL  string          `json:"nats_url,omitempty"`
	Load     *loadResult     `json:"load,omitempty"`
	Caught   *caughtUp       `json:"caught,omitempty"`
	Recorder *recorderResult `json:"recorder,omitempty"`
}

// loadSpec says what load to send.
type loadSpec struct {
	URL         string        `json:"url"`
	Workload    string        `json:"workload"`
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"duration"`
	Seed        uint64        `json:"seed"`
}

// loadResult is what one load measured, on the client side.
type loadResult struct {
	// Requests is the number of answered requests; Errors the transport
	// errors (not counted in Requests).
	Requests int `json:"requests"`
	Errors   int `json:"errors"`
	// FirstError is the first transport error, if any.
	FirstError string `json:"first_error,omitempty"`
	// Elapsed is from the first request sent to the last answer read.
	Elapsed time.Duration `json:"elapsed"`
	// Rate is the sum over clients of a client's answers divided by the
	// time from the start to its last answer (0 in results from before
	// it was measured).
	Rate float64 `json:"rate,omitempty"`
	// Status counts answers by HTTP status.
	Status map[int]int `json:"status"`
	// Latency quantiles of the answered requests.
	P50, P99, P999, Max time.Duration
}

// RPS is answered requests per second: Rate, the sum of the clients'
// rates. Each client sends its next request when an answer comes, from
// the start until the deadline, so its answers over the time to its last
// one is exactly its rate; Requests over Elapsed would count the tail
// after the deadline, where fewer and fewer clients still wait, and with
// half-second bcrypt answers that tail is a tenth of a cell.
func (r *loadResult) RPS() float64 {
	if r.Rate > 0 {
		return r.Rate
	}
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// caughtUp is the recorder's state once it has written every event.
type caughtUp struct {
	Attempts, Blocks uint64
	// Pending is what the consumer still had when the wait gave up (0
	// when it caught up).
	Pending uint64
	Waited  time.Duration
}

// recorderResult is the recorder's own measurement.
type recorderResult struct {
	// Events were published before the recorder started; Elapsed is how
	// long it took to write them all, from its start.
	Events  int           `json:"events"`
	Elapsed time.Duration `json:"elapsed"`
	Batch   int           `json:"batch"`
	Flush   time.Duration `json:"flush"`
	// Lags are the publish-to-row times of the probe events, sorted.
	Lags []time.Duration `json:"lags"`
	// Background is the rate of other events flowing while the probes ran.
	Background float64 `json:"background"`
}

// EventsPerSecond is the recorder's sustained write rate.
func (r *recorderResult) EventsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Events) / r.Elapsed.Seconds()
}

// clientProc is the driver's handle on the client process.
type clientProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	enc  *json.Encoder
	done chan struct{}
}

// startClient re-executes this binary as the client and reads its greeting.
func startClient(stderr io.Writer) (*clientProc, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("bench client: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleClient)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("bench client: %w", err)
	}
	c := &clientProc{cmd: cmd, in: in, out: bufio.NewScanner(out), enc: json.NewEncoder(in), done: make(chan struct{})}
	c.out.Buffer(make([]byte, 1<<20), 64<<20)
	go func() { _ = cmd.Wait(); close(c.done) }()
	hello, err := c.read()
	if err != nil {
		c.kill()
		return nil, "", err
	}
	return c, hello.NATSURL, nil
}

// call sends a command and waits for its reply.
func (c *clientProc) call(cmd command) (*reply, error) {
	if err := c.enc.Encode(cmd); err != nil {
		return nil, fmt.Errorf("bench client %s: %w", cmd.Op, err)
	}
	r, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("bench client %s: %w", cmd.Op, err)
	}
	return r, nil
}

func (c *clientProc) read() (*reply, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("client exited")
	}
	var r reply
	if err := json.Unmarshal(c.out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("client reply %q: %w", c.out.Bytes(), err)
	}
	if r.Err != "" {
		return &r, errors.New(r.Err)
	}
	return &r, nil
}

// quit asks the client to stop and waits (killing it after 20 s).
func (c *clientProc) quit() {
	_ = c.enc.Encode(command{Op: opQuit})
	_ = c.in.Close()
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		c.kill()
	}
}

func (c *clientProc) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}
