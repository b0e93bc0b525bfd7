// Command eventsfloor is the floor of the bench's events pass: the least
// a path from a gate to ClickHouse through JetStream can do for the same
// events, one process per part like bench/eventsnode:
//
//	eventsfloor publish -nats URL -n N -rate R
//	eventsfloor record -nats URL -clickhouse DSN -n N
//
// publish encodes the N events first (not measured), then sends them with
// raw PublishAsync at R a second, without a Nats-Msg-Id (no duplicate
// window to check), and waits for every acknowledgement. record is a
// durable pull consumer on the attempt subjects that fetches batches of
// 10,000, decodes them with encoding/json, inserts the rows with
// clickhouse-go's batch API (the columns the recorder writes), then acks
// each message (an ack per message, sent in a burst), until it has
// written N. Each prints an evload.Report line when done.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/defender-go/defender/bench/evload"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// The consumer's batch and longest wait: the recorder's defaults
// (DEFENDER_RECORD_BATCH, DEFENDER_RECORD_FLUSH) when the floor was set.
const (
	fetchBatch = 10_000
	fetchWait  = time.Second
)

func main() {
	evload.Main("eventsfloor", evload.Roles{Publish: publish, Record: recordEvents})
}

// publish sends the n events, encoded beforehand, at rate a second.
func publish(_ context.Context, url string, n, rate int) (evload.Report, error) {
	nc, err := nats.Connect(url, nats.Name("bench-floor-publisher"))
	if err != nil {
		return evload.Report{}, err
	}
	defer nc.Close()
	var failed atomic.Int64
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(events.DefaultMaxAckPending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return evload.Report{}, err
	}
	type msg struct {
		subject string
		data    []byte
	}
	msgs := make([]msg, n)
	subjects, now := events.Subjects{}, time.Now()
	for i := range msgs {
		a := events.NewAttempt(evload.Record(i, now), evload.GateName)
		data, err := a.Encode()
		if err != nil {
			return evload.Report{}, err
		}
		msgs[i] = msg{a.NATSSubject(subjects), data}
	}
	cpu0, t0 := evload.CPU(), time.Now()
	evload.Pace(n, rate, func(i int) {
		// PublishAsync refuses when too many acks are awaited: wait for
		// them and send again (nothing was sent).
		for {
			if _, err := js.PublishAsync(msgs[i].subject, msgs[i].data); err == nil {
				return
			}
			<-js.PublishAsyncComplete()
		}
	})
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return evload.Report{}, errors.New("acknowledgements still missing after a minute")
	}
	rep := evload.Report{Events: n, CPU: evload.CPU() - cpu0, Elapsed: time.Since(t0)}
	if f := failed.Load(); f > 0 {
		return rep, fmt.Errorf("%d publishes failed", f)
	}
	return rep, nil
}

// recordEvents consumes and writes until n attempts are written.
func recordEvents(ctx context.Context, url, dsn string, n int) (evload.Report, error) {
	cpu0, t0 := evload.CPU(), time.Now()
	nc, err := nats.Connect(url, nats.Name("bench-floor-recorder"))
	if err != nil {
		return evload.Report{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return evload.Report{}, err
	}
	conn, err := record.Open(dsn)
	if err != nil {
		return evload.Report{}, err
	}
	defer conn.Close()
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       evload.FloorConsumer,
		FilterSubject: events.Subjects{}.Attempts(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 65536,
	})
	if err != nil {
		return evload.Report{}, err
	}
	written := 0
	msgs := make([]jetstream.Msg, 0, fetchBatch)
	for written < n {
		mb, err := cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return evload.Report{}, err
		}
		msgs = msgs[:0]
		for m := range mb.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := insert(ctx, conn, msgs); err != nil {
			return evload.Report{}, err
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				return evload.Report{}, err
			}
		}
		written += len(msgs)
	}
	// The last acknowledgements reach NATS before the process ends.
	err = nc.Flush()
	return evload.Report{Events: written, CPU: evload.CPU() - cpu0, Elapsed: time.Since(t0)}, err
}

// insertAttempts is the recorder's statement (pkg/record/insert_attempts.sql).
const insertAttempts = `INSERT INTO defender.attempts (id, ts, ts_ms, ip, username, result, blocked_by,
	path, user_agent, gate, ip_failures, username_failures, pair_failures)`

// insert writes msgs' attempts as one batch, the rows the recorder writes.
func insert(ctx context.Context, conn driver.Conn, msgs []jetstream.Msg) error {
	b, err := conn.PrepareBatch(ctx, insertAttempts)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		var a events.Attempt
		if err := json.Unmarshal(m.Data(), &a); err != nil {
			return err
		}
		id, err := uuid.Parse(a.ID)
		if err != nil {
			return err
		}
		sec := a.Time.Truncate(time.Second)
		if a.BlockedBy == nil {
			a.BlockedBy = []string{}
		}
		if err := b.Append(id, sec, uint16(a.Time.Sub(sec)/time.Millisecond), a.IP, a.Username, a.Result, a.BlockedBy,
			a.Path, a.UserAgent, a.Gate, uint32(a.IPFailures), uint32(a.UsernameFailures), uint32(a.PairFailures)); err != nil {
			return err
		}
	}
	return b.Send()
}
