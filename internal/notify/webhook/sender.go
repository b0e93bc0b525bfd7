package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/pkg/events"
)

// Defaults of Options: DefaultInterval and DefaultAttempts are also the
// notifier's settings' (DEFENDER_WEBHOOK_INTERVAL, DEFENDER_WEBHOOK_ATTEMPTS).
const (
	DefaultInterval   = 5 * time.Second
	DefaultAttempts   = 6
	defaultMaxBatch   = 500
	defaultBackoff    = time.Second
	defaultMaxBackoff = time.Minute
	defaultTimeout    = 10 * time.Second
)

// DeadLetter is a batch an endpoint did not take: its last attempt
// failed, or the endpoint refused it.
type DeadLetter struct {
	// Endpoint is the endpoint's host, as logs and metrics name it: never
	// its URL, whose path may be secret.
	Endpoint string
	// Blocks are the batch's blocks, in the order they came.
	Blocks []events.Block
	// Attempts is the number of calls made.
	Attempts int
	// Err is why the last call failed.
	Err string
	// Time is when the sender gave up.
	Time time.Time
}

// Options configures a Sender. Zero fields take the defaults noted.
type Options struct {
	// Endpoints receive every block; at least one.
	Endpoints []Endpoint
	// Secrets sign every call: the first is the current one; during a
	// rotation list the new one first and the old one after: every call
	// carries one signature per secret, so receivers that know either
	// verify it. At least one, each at least 16 bytes.
	Secrets [][]byte
	// Interval is the shortest time between two calls to one endpoint
	// (5s): the first block waiting starts it, and the blocks that arrive
	// meanwhile go with it in one call at its end.
	Interval time.Duration
	// MaxBatch is the most blocks in one call (500); more wait for the
	// next call.
	MaxBatch int
	// Attempts is the number of tries of a call before the batch goes to
	// the dead letter (6).
	Attempts int
	// Backoff is the delay before the first retry (1s), doubled for each
	// further one, with up to a fifth added as jitter. A 429's or 503's
	// Retry-After, in seconds, replaces it.
	Backoff time.Duration
	// MaxBackoff caps every delay between retries, Retry-After's too (1m).
	MaxBackoff time.Duration
	// Timeout bounds one HTTP request (10s), and a DeadLetter call.
	Timeout time.Duration
	// Client makes the calls (a client with Timeout that follows no
	// redirect). Timeout applies to a given client too.
	Client *http.Client
	// DeadLetter, when set, is called with each batch given up on. Its
	// error is logged at error level and counted
	// (defender_notifier_webhook_dead_letter_write_failed_total); the
	// batch counts as delivered either way.
	DeadLetter func(context.Context, DeadLetter) error
	// Log receives warnings (slog.Default()).
	Log *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now stamps the calls and dead letters (time.Now); waits run on the
	// real clock whatever it says. For tests.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = defaultMaxBatch
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.Backoff <= 0 {
		o.Backoff = defaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = defaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.Backoff)
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout: o.Timeout,
			// A webhook that moved is configuration to fix, not a hop to
			// take: following it would send signed alerts wherever the
			// receiver points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// validate checks the options that have no default.
func (o *Options) validate() error {
	if len(o.Endpoints) == 0 {
		return errors.New("webhook: no endpoint")
	}
	for i, e := range o.Endpoints {
		if err := checkEndpoint(e); err != nil {
			return fmt.Errorf("webhook endpoint %d: %w", i+1, err)
		}
	}
	if len(o.Secrets) == 0 {
		return errors.New("webhook: no signing secret")
	}
	for i, k := range o.Secrets {
		if len(k) < minSecret {
			return fmt.Errorf("webhook: secret %d is %d bytes, want at least %d", i+1, len(k), minSecret)
		}
	}
	return nil
}

// Sender delivers block events to webhook endpoints in signed batches.
// Deliver hands it blocks; Run makes the calls.
type Sender struct {
	o         Options
	endpoints []*endpoint
	m         *metrics
	running   atomic.Bool
	stopped   chan struct{} // closed when Run returns
	stopErr   error         // Run's context's error, set before stopped closes
}

// endpoint is one receiver and the blocks waiting for its next call.
type endpoint struct {
	Endpoint
	host string
	wake chan struct{} // a token when a block arrives; capacity 1

	mu      sync.Mutex
	waiting []*item // oldest first

	// lastCall is when the latest call started; only Run's goroutine for
	// this endpoint uses it.
	lastCall time.Time
}

// item is one block waiting for one endpoint.
type item struct {
	block   events.Block
	arrived time.Time     // set under endpoint.mu, so waiting is in order
	done    chan struct{} // closed once the endpoint took the block or gave up on it
}

// New checks o and returns a Sender; Run starts its calls.
func New(o Options) (*Sender, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	// Copies, so that the caller reusing its slices changes nothing here.
	o.Endpoints = slices.Clone(o.Endpoints)
	o.Secrets = slices.Clone(o.Secrets)
	for i, k := range o.Secrets {
		o.Secrets[i] = slices.Clone(k)
	}
	s := &Sender{o: o, stopped: make(chan struct{})}
	hosts := make([]string, len(o.Endpoints))
	for i, e := range o.Endpoints {
		host, _ := endpointHost(e.URL) // checked by validate
		if e.Format == "" {
			e.Format = FormatJSON
		}
		hosts[i] = host
		s.endpoints = append(s.endpoints, &endpoint{Endpoint: e, host: host, wake: make(chan struct{}, 1)})
	}
	m, err := newMetrics(o.Registerer, hosts)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Run sends the batches until ctx ends; then it stops taking new ones,
// and Deliver calls waiting return ctx's error. A call in flight when ctx
// ends runs to its end (within Timeout) before Run returns; a batch
// waiting for a retry is dropped, its Deliver calls returning the error.
// Run returns nil after such a stop; it may run once.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("webhook: Run called twice")
	}
	var wg sync.WaitGroup
	for _, e := range s.endpoints {
		wg.Go(func() { s.serve(ctx, e) })
	}
	wg.Wait()
	s.stopErr = ctx.Err()
	close(s.stopped)
	return nil
}

// Deliver hands b to every endpoint and returns when each has either
// delivered it (a 2xx answer) or given up on it (dead letter written). It
// returns nil then, so the caller can acknowledge the event; it returns
// an error only when ctx ends or the sender stops first (the caller then
// leaves the event unacknowledged, to be redelivered). Safe for
// concurrent use: concurrent Deliver calls within one Interval share one
// call per endpoint.
//
// It waits at most Interval, then the calls of the batches ahead of b,
// then up to Attempts calls of Timeout and the backoff between them.
// Until Run starts, it waits.
func (s *Sender) Deliver(ctx context.Context, b events.Block) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("webhook deliver %s: %w", b.ID, err)
	}
	select {
	case <-s.stopped:
		return fmt.Errorf("webhook deliver %s: sender stopped: %w", b.ID, s.stopErr)
	default:
	}
	items := make([]*item, len(s.endpoints))
	for i, e := range s.endpoints {
		items[i] = &item{block: b, done: make(chan struct{})}
		e.add(items[i])
	}
	if s.wait(ctx, items) {
		return nil
	}
	s.withdraw(items)
	if allDone(items) { // finished at the same moment: no reason to have it sent again
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("webhook deliver %s: %w", b.ID, ctx.Err())
	}
	return fmt.Errorf("webhook deliver %s: sender stopped: %w", b.ID, s.stopErr)
}

// wait reports whether every item is done before ctx ends or Run stops.
func (s *Sender) wait(ctx context.Context, items []*item) bool {
	for _, it := range items {
		select {
		case <-it.done:
		case <-ctx.Done():
			return false
		case <-s.stopped:
			return false
		}
	}
	return true
}

// withdraw takes the items that are still waiting out of their queues,
// so that an event the caller will have redelivered is not sent now too.
// Items in a call already go their way.
func (s *Sender) withdraw(items []*item) {
	for i, e := range s.endpoints {
		e.mu.Lock()
		if j := slices.Index(e.waiting, items[i]); j >= 0 {
			e.waiting = slices.Delete(e.waiting, j, j+1)
		}
		e.mu.Unlock()
	}
}

// allDone reports whether every item is done.
func allDone(items []*item) bool {
	for _, it := range items {
		select {
		case <-it.done:
		default:
			return false
		}
	}
	return true
}

// add queues it for e's next call and wakes e's loop.
func (e *endpoint) add(it *item) {
	e.mu.Lock()
	it.arrived = time.Now()
	e.waiting = append(e.waiting, it)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// due is when e's next call may start: one Interval after both the oldest
// waiting block's arrival and the latest call. ok is false when no block
// waits.
func (e *endpoint) due(interval time.Duration) (at time.Time, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.waiting) == 0 {
		return time.Time{}, false
	}
	start := e.waiting[0].arrived
	if e.lastCall.After(start) {
		start = e.lastCall
	}
	return start.Add(interval), true
}

// take removes the oldest n waiting items (fewer if fewer wait).
func (e *endpoint) take(n int) []*item {
	e.mu.Lock()
	defer e.mu.Unlock()
	n = min(n, len(e.waiting))
	batch := slices.Clone(e.waiting[:n])
	e.waiting = slices.Delete(e.waiting, 0, n)
	return batch
}

// serve makes e's calls until ctx ends: one batch at a time, each when it
// is due.
func (s *Sender) serve(ctx context.Context, e *endpoint) {
	for ctx.Err() == nil {
		at, ok := e.due(s.o.Interval)
		if !ok {
			select {
			case <-e.wake:
			case <-ctx.Done():
			}
			continue
		}
		if !sleep(ctx, time.Until(at)) {
			return
		}
		// Blocks withdrawn while we slept may leave nothing to send.
		if batch := e.take(s.o.MaxBatch); len(batch) > 0 {
			s.send(ctx, e, batch)
		}
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
