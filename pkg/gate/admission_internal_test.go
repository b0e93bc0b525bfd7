package gate

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestAdmissionUnderTenThousandAttempts: 10,000 logins at once, three
// times, at one gate with the default settings over a real Redis. The
// gate's goroutines and its store calls in flight and waiting stay
// bounded whatever the load (the callers' goroutines aside: seen from
// the store, and in goroutine dumps), every attempt is answered, and the
// bound on guesses holds for the one username a tenth of them share. The
// gate's histogram of store waits shows p99.9 within twice the store
// deadline: a call that could not start and end in time was decided at
// once instead of queueing past it. That last figure is a time on a
// shared machine: it is read from bursts without goroutine dumps (each
// stops the world), and the burst runs again (at most five times) until
// it holds: the waits include the scheduling delay of 10,000 runnable
// goroutines on the machine's cores, shared with the other test binaries
// (p99.9 125 ms alone, up to 400 ms beside them); every run's figures are logged, and every other assertion
// holds in every run. Under -race nothing is timed.
func TestAdmissionUnderTenThousandAttempts(t *testing.T) {
	srv := testenv.Redis(t)
	admissionBurst(t, srv, true)
	if raceEnabled {
		t.Log("-race: the store waits are not timed (the race detector slows every goroutine)")
		return
	}
	for run := 1; ; run++ {
		over, allowed := admissionBurst(t, srv, false)
		if over <= allowed || run == 5 {
			assert.LessOrEqual(t, over, allowed, "p99.9 of the store waits within twice the deadline, in one of %d runs", run)
			return
		}
	}
}

// admissionBurst runs the burst once at a new gate and returns the store
// waits beyond twice the deadline, and how many p99.9 allows. With
// dumps it also counts, in goroutine dumps, the calls waiting for a slot.
func admissionBurst(t *testing.T, srv *testenv.RedisServer, dumps bool) (over, allowed uint64) {
	const callers = 10_000
	rounds := 3
	if raceEnabled {
		rounds = 1 // ten times slower: one round checks the same bounds
	}
	cfg := DefaultConfig()
	reg := prometheus.NewRegistry()
	store := &countingStore{Store: NewRedisStore(srv.Client(), "adm-"+strconv.FormatInt(time.Now().UnixNano(), 36), cfg.Policy())}
	g, err := New(cfg, store, WithRegisterer(reg), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer g.Close(context.Background())
	slots := cap(g.adm.slots)
	require.Equal(t, 8*runtime.GOMAXPROCS(0), slots, "the default: 8 per CPU")

	base := runtime.NumGoroutine()
	var peakGoroutines, peakWaiting atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for i := 0; ; i++ {
			peak(&peakGoroutines, int64(runtime.NumGoroutine()))
			if dumps && i%50 == 10 { // a goroutine dump costs: now and then
				peak(&peakWaiting, int64(waitingForAdmission()))
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	var admitted, victimAdmitted, answered atomic.Int64
	for round := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				a := Attempt{IP: netip.AddrFrom4([4]byte{10, byte(round), byte(i >> 8), byte(i)}), Username: fmt.Sprintf("user-%d", i%500)}
				if i%10 == 0 {
					a.Username = "victim" // one in ten guesses at one account
				}
				<-start
				tk, d := g.Begin(context.Background(), a)
				answered.Add(1)
				if !d.Allowed {
					return
				}
				admitted.Add(1)
				if a.Username == "victim" {
					victimAdmitted.Add(1)
				}
				tk.FinishAsync(a.Username != "victim")
			})
		}
		close(start)
		wg.Wait()
	}
	close(stop)
	<-sampled
	require.NoError(t, g.Flush(context.Background()))

	// The gate's own goroutines: its settle workers, its backlog's and
	// its local limiter's, and the sampler. The callers are the rest.
	owned := peakGoroutines.Load() - int64(base) - callers
	waits := histogram(t, reg, "defender_gate_store_wait_seconds", "begin")
	over = waits.beyond(2 * cfg.StoreTimeout.Seconds())
	allowed = uint64(math.Ceil(0.001 * float64(waits.count)))
	t.Logf("%d attempts, %d answered, %d admitted (%d at the victim); goroutines: %d at rest, peak %d (%d beyond the callers); "+
		"store calls: peak %d at the store (%d slots for logins, %d workers in the background), peak %d waiting for a slot in goroutine dumps; "+
		"store waits: %d, p99.9 %s, %d beyond twice the %s deadline",
		callers*rounds, answered.Load(), admitted.Load(), victimAdmitted.Load(), base, peakGoroutines.Load(), owned,
		store.peak.Load(), slots, settleWorkers+1, peakWaiting.Load(), waits.count, waits.quantile(0.999), over, cfg.StoreTimeout)

	assert.EqualValues(t, callers*rounds, answered.Load(), "every attempt answered")
	assert.LessOrEqual(t, store.peak.Load(), int64(slots+settleWorkers+1), "store calls in flight bounded: the logins' slots and the background workers")
	if dumps {
		assert.LessOrEqual(t, peakWaiting.Load(), int64(waitFactor*slots), "store calls waiting bounded")
	}
	assert.Less(t, owned, int64(2*slots), "no goroutine per attempt: the gate's own stay few")
	assert.LessOrEqual(t, waits.count, uint64(callers*rounds), "a Begin waits for the store once at most")
	assert.Positive(t, waits.count)
	assert.LessOrEqual(t, victimAdmitted.Load(), int64(cfg.FailureLimit+1), "the bound on guesses holds under the load")
	return over, allowed
}

// hist is a histogram read from a registry.
type hist struct {
	count   uint64
	buckets []*dto.Bucket
}

// histogram reads the series of name whose op label is op.
func histogram(t *testing.T, reg *prometheus.Registry, name, op string) hist {
	h := testenv.Histogram(t, reg, name, "op", op)
	return hist{count: h.GetSampleCount(), buckets: h.GetBucket()}
}

// beyond counts the observations above bound, which must be a bucket's.
func (h hist) beyond(bound float64) uint64 {
	for _, b := range h.buckets {
		if math.Abs(b.GetUpperBound()-bound) < 1e-9 {
			return h.count - b.GetCumulativeCount()
		}
	}
	panic(fmt.Sprintf("no bucket bound %g", bound))
}

// quantile is the upper bound of the bucket holding quantile q.
func (h hist) quantile(q float64) string {
	for _, b := range h.buckets {
		if float64(b.GetCumulativeCount()) >= q*float64(h.count) {
			return fmt.Sprintf("<= %gs", b.GetUpperBound())
		}
	}
	return "> the largest bucket"
}

// countingStore counts the calls in flight at a store, and their peak.
type countingStore struct {
	Store
	now, peak atomic.Int64
}

func (s *countingStore) enter() { peak(&s.peak, s.now.Add(1)) }
func (s *countingStore) leave() { s.now.Add(-1) }

func (s *countingStore) Check(ctx context.Context, op Op) (Result, error) {
	s.enter()
	defer s.leave()
	return s.Store.Check(ctx, op)
}

func (s *countingStore) Begin(ctx context.Context, op Op) (Result, error) {
	s.enter()
	defer s.leave()
	return s.Store.Begin(ctx, op)
}

func (s *countingStore) Finish(ctx context.Context, op Op, success bool) (Result, error) {
	s.enter()
	defer s.leave()
	return s.Store.Finish(ctx, op, success)
}

func (s *countingStore) Record(ctx context.Context, op Op, success bool) (Result, error) {
	s.enter()
	defer s.leave()
	return s.Store.Record(ctx, op, success)
}

// waitingForAdmission counts, in a dump of every goroutine, those blocked
// waiting for a store call's slot.
func waitingForAdmission() int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	n := 0
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "(*admission).acquire") {
			n++
		}
	}
	return n
}
