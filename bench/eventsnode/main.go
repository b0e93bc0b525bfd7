// Command eventsnode is defender's side of the bench's events pass, one
// process per part so that the bench reads each part's CPU apart:
//
//	eventsnode publish -nats URL -n N -rate R    # the gate's publisher
//	eventsnode record -nats URL -clickhouse DSN -n N    # the recorder
//
// publish feeds N attempts to an events.Publisher at R a second, as a
// gate's logins would, and returns once JetStream has acknowledged them
// all; record runs a record.Recorder with its defaults until it has
// written N attempts. Each prints an evload.Report line when done.
//
// The bench also builds this package from an older revision (-events-before)
// to measure before and after in one run, so it uses only the API that
// revision has too: events.Connect, events.NewPublisher with
// PublisherOptions{Gate}, the Publisher's Run, EmitAttempt and Close,
// record.Open, record.New with record.Options{}, the Recorder's Run and
// Stats. Keep it that way.
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/defender-go/defender/bench/evload"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

func main() {
	evload.Main("eventsnode", evload.Roles{Publish: publish, Record: recordEvents})
}

// publish is the gate's side: the events of n logins at rate a second,
// then Close, which returns when JetStream has acknowledged them. The
// measured section is from the first event to Close's return.
func publish(ctx context.Context, url string, n, rate int) (evload.Report, error) {
	nc, js, err := events.Connect(ctx, url, "bench-publisher")
	if err != nil {
		return evload.Report{}, err
	}
	defer nc.Close()
	p, err := events.NewPublisher(js, events.PublisherOptions{Gate: evload.GateName})
	if err != nil {
		return evload.Report{}, err
	}
	cpu0, t0 := evload.CPU(), time.Now()
	evload.Pace(n, rate, func(i int) { p.EmitAttempt(evload.Record(i, time.Now())) })
	closeCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = p.Close(closeCtx)
	rep := evload.Report{Events: n, CPU: evload.CPU() - cpu0, Elapsed: time.Since(t0)}
	return rep, err
}

// recordEvents is the recorder with its defaults, until it has written n
// attempts. The bench counts this process's CPU from its start to its end.
func recordEvents(ctx context.Context, url, dsn string, n int) (evload.Report, error) {
	cpu0, t0 := evload.CPU(), time.Now()
	nc, js, err := events.Connect(ctx, url, "bench-recorder")
	if err != nil {
		return evload.Report{}, err
	}
	defer nc.Close()
	conn, err := record.Open(dsn)
	if err != nil {
		return evload.Report{}, err
	}
	defer conn.Close()
	r, err := record.New(js, conn, record.Options{})
	if err != nil {
		return evload.Report{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	// A poll every 20 ms: cheap next to the events' own work (the bench
	// kills a recorder that never gets there).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for r.Stats().Attempts < uint64(n) {
		select {
		case err := <-done:
			stop()
			return evload.Report{}, fmt.Errorf("recorder stopped after %d of %d attempts: %v", r.Stats().Attempts, n, err)
		case <-tick.C:
		}
	}
	stop()
	err = <-done
	// The last acknowledgements reach NATS before the process ends.
	err = errors.Join(err, nc.Flush())
	return evload.Report{Events: int(r.Stats().Attempts), CPU: evload.CPU() - cpu0, Elapsed: time.Since(t0)}, err
}
