// Package evload is what the child processes of the bench's events pass
// share: the attempts they publish, the offered rate they publish them at,
// and how they report their CPU time to the bench. The floor
// (bench/eventsfloor) and defender's publisher and recorder
// (bench/eventsnode) use the same, so that the events, their sizes and
// their timing are not the difference between them.
//
// bench/eventsnode is also built from an older revision of the repository
// (the bench's -events-before) with this package copied beside it: it may
// use only what gate.AttemptRecord has had since the events pass exists.
package evload

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/defender-go/defender/pkg/gate"
)

// GateName is the gate instance named in every event.
const GateName = "bench-gate"

// FloorConsumer is the floor's durable pull consumer.
const FloorConsumer = "bench-floor"

// Record is the i-th attempt of a cell, at t: a failure with its counters
// (one in four a success), from one of 62,500 addresses, for one of
// 200,000 users, with a browser's user agent, so that an event is as big
// as a real login's (about 400 bytes of JSON).
func Record(i int, t time.Time) gate.AttemptRecord {
	r := gate.AttemptRecord{
		Time:       t.Truncate(time.Millisecond),
		IP:         fmt.Sprintf("198.51.%d.%d", (i/250)%250, i%250+1),
		Username:   fmt.Sprintf("user%06d@example.com", i%200_000),
		Outcome:    gate.OutcomeFailure,
		Path:       "/login/",
		UserAgent:  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
		IPFailures: 1 + i%3, UsernameFailures: 1 + i%2, PairFailures: 1,
	}
	if i%4 == 3 {
		r.Outcome, r.IPFailures, r.UsernameFailures, r.PairFailures = gate.OutcomeSuccess, 0, 0, 0
	}
	return r
}

// Pace calls emit(i) for i from 0 to n-1 at rate calls a second: each
// when it is due, sleeping whenever the next is more than a millisecond
// ahead. Logins come one at a time, not in bursts; a millisecond is as
// fine as a sleep reliably gets, and what a publisher can batch within it
// is its own merit.
func Pace(n, rate int, emit func(i int)) {
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if d := time.Until(due); d > time.Millisecond {
			time.Sleep(d)
		}
		emit(i)
	}
}

// CPU is this process's CPU time so far (user + system, all threads), in
// microseconds rather than /proc's 10 ms ticks.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report is what a child process tells the bench when it is done, as one
// JSON line on its standard output.
type Report struct {
	// Events is how many events it published or wrote.
	Events int `json:"events"`
	// CPU is its CPU time over its measured section, and Elapsed that
	// section's wall time.
	CPU     time.Duration `json:"cpu"`
	Elapsed time.Duration `json:"elapsed"`
}

// Write puts r on w as one JSON line.
func (r Report) Write(w io.Writer) error { return json.NewEncoder(w).Encode(r) }

// Roles are a child program's two roles: publish n events at rate a
// second to NATS at url, or record n events from url into ClickHouse at
// dsn. Each returns its report.
type Roles struct {
	Publish func(ctx context.Context, url string, n, rate int) (Report, error)
	Record  func(ctx context.Context, url, dsn string, n int) (Report, error)
}

// Main runs the role the command line names ("publish" or "record", then
// -nats, -clickhouse, -n, -rate), writes its report on standard output,
// and exits 1 with the error on standard error if it failed. name is the
// program's, for messages.
func Main(name string, r Roles) {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s publish|record [flags]\n", name)
		os.Exit(2)
	}
	role := os.Args[1]
	fs := flag.NewFlagSet(role, flag.ExitOnError)
	url := fs.String("nats", "", "NATS URL")
	dsn := fs.String("clickhouse", "", "ClickHouse DSN (record)")
	n := fs.Int("n", 0, "events")
	rate := fs.Int("rate", 0, "events per second (publish)")
	_ = fs.Parse(os.Args[2:])
	// The libraries log connection changes at shutdown; only errors matter.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))

	ctx := context.Background()
	var rep Report
	var err error
	switch role {
	case "publish":
		rep, err = r.Publish(ctx, *url, *n, *rate)
	case "record":
		rep, err = r.Record(ctx, *url, *dsn, *n)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err == nil {
		err = rep.Write(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", name, role, err)
		os.Exit(1)
	}
}
