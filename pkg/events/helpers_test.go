package events_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/events"
)

// natsEnv is an embedded NATS with the DEFENDER stream and a client.
type natsEnv struct {
	srv *testenv.NATSServer
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newNATSEnv(t testing.TB) *natsEnv {
	t.Helper()
	srv := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := events.Connect(ctx, srv.URL, "events-test",
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)
	return &natsEnv{srv: srv, nc: nc, js: js}
}

// runPublisher returns a function that closes p (flushing within 30 s)
// and returns Close's error. The test's cleanup closes it too.
func runPublisher(t testing.TB, p *events.Publisher) (stop func() error) {
	t.Helper()
	stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return p.Close(ctx)
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// streamMsgs reads every message of the DEFENDER stream matching filter
// (all when ""), waiting until the stream holds at least want of them.
func streamMsgs(t testing.TB, js jetstream.JetStream, filter string, want int) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return false
		}
		n := info.State.Msgs
		if filter != "" {
			n = 0
			for _, c := range info.State.Subjects {
				n += c
			}
		}
		return n >= uint64(want)
	}, 20*time.Second, 20*time.Millisecond, "stream never held %d messages", want)
	cfg := jetstream.OrderedConsumerConfig{}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	// Just after a cluster lost a server, a read may meet "no responders"
	// while the consumer finds its new home: read everything again then.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := readAll(ctx, s, cfg, want)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			require.NoError(t, err, "reading the stream")
		}
	}
}

// readAll reads every message cfg selects with a fresh ordered consumer:
// at least want (an empty fetch before then is a slow machine, not the
// end), then until a fetch brings nothing.
func readAll(ctx context.Context, s jetstream.Stream, cfg jetstream.OrderedConsumerConfig, want int) ([]jetstream.Msg, error) {
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if n == 0 && len(out) >= want {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %d of %d messages: %w", len(out), want, err)
		}
	}
}

// goroutineBaseline warms up env's JetStream context (its first async
// publish starts a reply subscription that lives as long as the
// connection) and returns the number of goroutines now.
func goroutineBaseline(t testing.TB, env *natsEnv) int {
	t.Helper()
	f, err := env.js.PublishAsync("warmup.not.in.stream", nil)
	require.NoError(t, err)
	select {
	case <-f.Ok():
	case <-f.Err():
	case <-time.After(10 * time.Second):
		t.Fatal("warm-up publish never resolved")
	}
	return runtime.NumGoroutine()
}

// requireNoLeak waits until the goroutines are back to baseline and none
// runs code of package events; it dumps the stacks otherwise.
func requireNoLeak(t testing.TB, baseline int) {
	t.Helper()
	var stacks string
	ok := assert.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		// -1: Eventually runs this condition on a goroutine of its own.
		return runtime.NumGoroutine()-1 <= baseline && !strings.Contains(stacks, "defender/pkg/events.(*Publisher)")
	}, 10*time.Second, 10*time.Millisecond)
	if !ok {
		t.Fatalf("goroutines: %d, before: %d\n%s", runtime.NumGoroutine(), baseline, stacks)
	}
}

// TestMain silences the package's logs unless -v.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		slog.SetDefault(slog.New(slog.DiscardHandler))
	}
	os.Exit(m.Run())
}
