package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
)

// BenchmarkEmit measures one EmitAttempt, the cost the login path pays,
// with a running publisher draining the queue into JetStream. The queue
// is large enough that nothing is dropped unless publishing falls behind
// (reported as dropped/op).
func BenchmarkEmit(b *testing.B) {
	env := newNATSEnv(b)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: 1 << 20})
	require.NoError(b, err)
	stop := runPublisher(b, p)
	r := attemptRecord(1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.EmitAttempt(r)
	}
	b.StopTimer()
	b.ReportMetric(float64(p.Stats().Dropped)/float64(b.N), "dropped/op")
	_ = stop()
}

// BenchmarkEmitParallel is BenchmarkEmit from GOMAXPROCS goroutines.
func BenchmarkEmitParallel(b *testing.B) {
	env := newNATSEnv(b)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: 1 << 20})
	require.NoError(b, err)
	stop := runPublisher(b, p)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := attemptRecord(2)
		for pb.Next() {
			p.EmitAttempt(r)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(p.Stats().Dropped)/float64(b.N), "dropped/op")
	_ = stop()
}

// BenchmarkPublishThroughput measures events stored in JetStream per
// second: b.N events emitted, timed until the last is acknowledged.
func BenchmarkPublishThroughput(b *testing.B) {
	env := newNATSEnv(b)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: max(b.N, 1)})
	require.NoError(b, err)
	stop := runPublisher(b, p)
	r := attemptRecord(3)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		p.EmitAttempt(r)
	}
	for p.Stats().Published < uint64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	require.Zero(b, p.Stats().Dropped)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(b, p.Close(ctx))
	_ = stop()
}

// BenchmarkEmitQueueOnly is the cost of EmitAttempt itself, without the
// publisher and the in-process NATS server competing for the CPU: the
// queue holds every event and nothing drains it.
func BenchmarkEmitQueueOnly(b *testing.B) {
	env := newNATSEnv(b)
	p, err := events.NewPublisher(env.js, events.PublisherOptions{Buffer: max(b.N, 1)})
	require.NoError(b, err)
	r := attemptRecord(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p.EmitAttempt(r)
	}
	b.StopTimer()
	require.Zero(b, p.Stats().Dropped)
}
