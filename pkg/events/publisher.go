package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/pkg/gate"
)

var _ gate.Emitter = (*Publisher)(nil)

// Errors of the Publisher.
var (
	// ErrUnsent is wrapped by Run and Close when events were left unsent
	// at shutdown (NATS down past the flush deadline).
	ErrUnsent = errors.New("events: events left unsent")
	// ErrClosed is returned by Run on a closed Publisher.
	ErrClosed = errors.New("events: publisher closed")
	// ErrRunning is returned by a second concurrent Run.
	ErrRunning = errors.New("events: publisher already running")
)

// PublisherOptions configures a Publisher. Zero fields take the defaults
// noted.
type PublisherOptions struct {
	// Subjects names the subjects published on (prefix "defender").
	Subjects Subjects
	// Gate names this instance in every event ("" leaves it out).
	Gate string
	// Buffer is the queue's capacity (DefaultEventBuffer): events emitted
	// while it is full are dropped and counted.
	Buffer int
	// BatchSize is how many events are published before waiting for
	// their acknowledgements (512). Keep it below the JetStream
	// context's max pending acks (DefaultMaxAckPending with Connect).
	BatchSize int
	// AckTimeout is how long a batch waits for its acknowledgements before
	// the missing ones are sent again, under the same id (5 s).
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while
	// NATS fails (50 ms, 2 s; doubling).
	MinBackoff, MaxBackoff time.Duration
	// FlushTimeout bounds the final flush when Run's context ends (5 s).
	// Close uses its own context's deadline instead.
	FlushTimeout time.Duration
	// LogInterval is the least time between two warnings about dropped
	// events or failing publishes (10 s).
	LogInterval time.Duration
	// Logger for warnings (slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (o *PublisherOptions) setDefaults() {
	if o.Buffer <= 0 {
		o.Buffer = DefaultEventBuffer
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(2*time.Second, o.MinBackoff)
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = 5 * time.Second
	}
	if o.LogInterval <= 0 {
		o.LogInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats are a Publisher's counters since it was created.
type Stats struct {
	Queued    uint64 // events accepted into the queue
	Published uint64 // events acknowledged by JetStream (a duplicate counts once)
	Dropped   uint64 // events refused: queue full, publisher closed, or invalid
	Errors    uint64 // failed publish attempts (each retry counts)
	Unsent    uint64 // events given up at shutdown
	QueueLen  int    // events waiting now (not counting a batch in flight)
}

// Publisher is a gate.Emitter that publishes events on JetStream without
// ever making the caller wait. Emit* put the event in a bounded queue and
// return; Run drains the queue in batches, publishing asynchronously and
// retrying what was not acknowledged under the same message id, so the
// stream's duplicate window turns a retry of a stored event into a no-op.
type Publisher struct {
	js   jetstream.JetStream
	opts PublisherOptions
	log  *slog.Logger

	queue chan *item
	pool  sync.Pool

	// subjects, precomputed
	attemptSubj map[gate.Outcome]string
	blockSubj   map[gate.Kind]string
	unblockSubj map[gate.Kind]string

	closed     atomic.Bool // Emit drops from now on
	started    atomic.Bool // Run (or Close's own flush) owns the queue
	closeOnce  sync.Once
	stopCtx    context.Context // cancelled by Close
	stop       context.CancelFunc
	closeCtxMu sync.Mutex
	closeCtx   context.Context // Close's deadline for the flush
	done       chan struct{}   // closed when Run returns
	runErr     error           // Run's result, read after done

	queued, published, dropped, errs, unsent atomic.Uint64
	latency                                  prometheus.Histogram
	lastWarn                                 atomic.Int64 // unix nanos of the last publish warning
}

// item is one event in the queue, pooled so that an Emit costs no more
// than the event's id.
type item struct {
	id         uuid.UUID
	transition bool
	a          gate.AttemptRecord
	t          gate.TransitionRecord
}

// outMsg is an encoded event on its way to JetStream.
type outMsg struct {
	msg   *nats.Msg
	first time.Time // first publish attempt
}

// NewPublisher returns a Publisher on js. Start it with Run; stop it by
// cancelling Run's context or with Close.
func NewPublisher(js jetstream.JetStream, opts PublisherOptions) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("events: nil JetStream")
	}
	opts.setDefaults()
	if err := opts.Subjects.Validate(); err != nil {
		return nil, err
	}
	p := &Publisher{
		js:          js,
		opts:        opts,
		log:         opts.Logger,
		queue:       make(chan *item, opts.Buffer),
		attemptSubj: map[gate.Outcome]string{},
		blockSubj:   map[gate.Kind]string{},
		unblockSubj: map[gate.Kind]string{},
		done:        make(chan struct{}),
	}
	p.pool.New = func() any { return new(item) }
	p.stopCtx, p.stop = context.WithCancel(context.Background())
	for _, o := range []gate.Outcome{gate.OutcomeSuccess, gate.OutcomeFailure, gate.OutcomeBlocked} {
		p.attemptSubj[o] = opts.Subjects.Attempt(string(o))
	}
	for _, k := range gate.Kinds {
		p.blockSubj[k] = opts.Subjects.Block(string(k))
		p.unblockSubj[k] = opts.Subjects.Unblock(string(k))
	}
	if err := p.registerMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return p, nil
}

// EmitAttempt queues an attempt event. It never blocks: when the queue is
// full or the publisher closed, the event is dropped and counted.
func (p *Publisher) EmitAttempt(r gate.AttemptRecord) {
	it := p.pool.Get().(*item)
	it.id = newUUID()
	it.transition = false
	it.a = r
	p.enqueue(it)
}

// EmitTransition queues a block or unblock event. It never blocks.
func (p *Publisher) EmitTransition(r gate.TransitionRecord) {
	it := p.pool.Get().(*item)
	it.id = newUUID()
	it.transition = true
	it.t = r
	p.enqueue(it)
}

func (p *Publisher) enqueue(it *item) {
	if !p.closed.Load() {
		select {
		case p.queue <- it:
			p.queued.Add(1)
			return
		default:
		}
	}
	p.dropped.Add(1)
	p.release(it)
}

func (p *Publisher) release(it *item) {
	*it = item{}
	p.pool.Put(it)
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() Stats {
	return Stats{
		Queued:    p.queued.Load(),
		Published: p.published.Load(),
		Dropped:   p.dropped.Load(),
		Errors:    p.errs.Load(),
		Unsent:    p.unsent.Load(),
		QueueLen:  len(p.queue),
	}
}

// Run publishes queued events until ctx ends or Close is called, then
// flushes what is queued: within FlushTimeout after ctx ends, or within
// Close's context. It returns nil when everything was published, or an
// error wrapping ErrUnsent with the number of events given up.
func (p *Publisher) Run(ctx context.Context) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if !p.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(p.done)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(p.stopCtx, cancel)
	defer stopWatch()

	tick := time.NewTicker(p.opts.LogInterval)
	defer tick.Stop()
	var lastDropped uint64
	batch := make([]outMsg, 0, p.opts.BatchSize)
	var left []outMsg
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-tick.C:
			lastDropped = p.logDrops(lastDropped)
		case it := <-p.queue:
			batch = p.collect(append(batch[:0], p.encode(it)...))
			if left = p.deliver(runCtx, batch); len(left) > 0 {
				break loop // stopping: flush these first
			}
		}
	}

	fctx, fcancel := p.flushContext(ctx)
	defer fcancel()
	p.closed.Store(true) // nothing new from now on
	p.runErr = p.flush(fctx, left)
	p.logDrops(lastDropped)
	return p.runErr
}

// flushContext is Close's context when Close stopped Run, else a context
// that outlives ctx's cancellation by FlushTimeout.
func (p *Publisher) flushContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.stopCtx.Err() != nil {
		p.closeCtxMu.Lock()
		cctx := p.closeCtx
		p.closeCtxMu.Unlock()
		if cctx != nil {
			return context.WithCancel(cctx)
		}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), p.opts.FlushTimeout)
}

// flush publishes left and everything still queued until ctx ends.
func (p *Publisher) flush(ctx context.Context, left []outMsg) error {
	batch := make([]outMsg, 0, p.opts.BatchSize)
	for {
		batch = append(batch[:0], left...)
		left = nil
		batch = p.collect(batch)
		if len(batch) == 0 {
			return nil
		}
		if rest := p.deliver(ctx, batch); len(rest) > 0 {
			n := len(rest) + p.discardQueue()
			p.unsent.Add(uint64(n))
			p.log.Warn("events left unsent at shutdown", "unsent", n, "err", ctx.Err())
			return fmt.Errorf("%w: %d events", ErrUnsent, n)
		}
	}
}

func (p *Publisher) discardQueue() int {
	n := 0
	for {
		select {
		case it := <-p.queue:
			p.release(it)
			n++
		default:
			return n
		}
	}
}

// collect adds queued events to batch, without waiting, up to BatchSize.
func (p *Publisher) collect(batch []outMsg) []outMsg {
	for len(batch) < p.opts.BatchSize {
		select {
		case it := <-p.queue:
			batch = append(batch, p.encode(it)...)
		default:
			return batch
		}
	}
	return batch
}

// encode turns a queued item into a message (none if the event is
// invalid) and returns the item to the pool.
func (p *Publisher) encode(it *item) []outMsg {
	id := it.id.String()
	var (
		subject string
		data    []byte
		err     error
	)
	if it.transition {
		b := blockOf(&it.t, id, p.opts.Gate)
		if b.Type == TypeBlock {
			subject = p.blockSubj[it.t.Kind]
		} else {
			subject = p.unblockSubj[it.t.Kind]
		}
		data, err = b.Encode()
	} else {
		a := attemptOf(&it.a, id, p.opts.Gate)
		subject = p.attemptSubj[it.a.Outcome]
		data, err = a.Encode()
	}
	p.release(it)
	if err != nil || subject == "" {
		p.dropped.Add(1)
		p.log.Error("events: invalid event dropped", "id", id, "err", err)
		return nil
	}
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
	return []outMsg{{msg: m}}
}

// deliver publishes msgs until each is acknowledged, retrying failures
// with backoff, or until ctx ends. It returns the messages not known to
// be stored (some may be: their retry is then a duplicate).
func (p *Publisher) deliver(ctx context.Context, msgs []outMsg) []outMsg {
	backoff := p.opts.MinBackoff
	futures := make([]jetstream.PubAckFuture, len(msgs))
	var failed []outMsg
	for len(msgs) > 0 {
		if ctx.Err() != nil {
			return msgs
		}
		if nc := p.js.Conn(); nc != nil && !nc.IsConnected() {
			// Don't stack copies in the reconnect buffer: wait.
			if !sleep(ctx, backoff) {
				return msgs
			}
			backoff = min(2*backoff, p.opts.MaxBackoff)
			continue
		}
		now := time.Now()
		futures = futures[:len(msgs)]
		var firstErr error
		for i := range msgs {
			if msgs[i].first.IsZero() {
				msgs[i].first = now
			}
			f, err := p.js.PublishMsgAsync(msgs[i].msg)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			futures[i] = f // nil on error
		}
		failed = failed[:0]
		timer := time.NewTimer(p.opts.AckTimeout)
		timedOut := false
		for i, f := range futures {
			if f == nil {
				failed = append(failed, msgs[i])
				continue
			}
			if timedOut {
				// Take what has arrived, don't wait.
				select {
				case <-f.Ok():
					p.acked(&msgs[i])
				default:
					failed = append(failed, msgs[i])
				}
				continue
			}
			select {
			case <-f.Ok():
				p.acked(&msgs[i])
			case err := <-f.Err():
				if firstErr == nil {
					firstErr = err
				}
				failed = append(failed, msgs[i])
			case <-timer.C:
				timedOut = true
				if firstErr == nil {
					firstErr = fmt.Errorf("no ack within %s", p.opts.AckTimeout)
				}
				failed = append(failed, msgs[i])
			case <-ctx.Done():
				timer.Stop()
				return append(failed, msgs[i:]...)
			}
			futures[i] = nil
		}
		timer.Stop()
		clear(futures)
		if len(failed) == 0 {
			return nil
		}
		p.errs.Add(uint64(len(failed)))
		p.warnPublish(len(failed), firstErr)
		msgs = append(msgs[:0], failed...)
		if !sleep(ctx, backoff) {
			return msgs
		}
		backoff = min(2*backoff, p.opts.MaxBackoff)
	}
	return nil
}

func (p *Publisher) acked(m *outMsg) {
	p.published.Add(1)
	p.latency.Observe(time.Since(m.first).Seconds())
}

// warnPublish logs failing publishes at most once per LogInterval.
func (p *Publisher) warnPublish(n int, err error) {
	now := time.Now().UnixNano()
	if last := p.lastWarn.Load(); now-last >= int64(p.opts.LogInterval) && p.lastWarn.CompareAndSwap(last, now) {
		p.log.Warn("events: publish failed, retrying", "events", n, "err", err)
	}
}

// logDrops warns about events dropped since the last call.
func (p *Publisher) logDrops(last uint64) uint64 {
	d := p.dropped.Load()
	if d > last {
		p.log.Warn("events dropped", "dropped", d-last, "dropped_total", d, "buffer", p.opts.Buffer)
	}
	return d
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops the publisher: Emit drops from now on, and what is queued is
// flushed until ctx ends. It waits for Run to return (or, if Run never
// ran, flushes itself) and returns Run's result: nil, or an error
// wrapping ErrUnsent. Close may be called more than once.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closeCtxMu.Lock()
		p.closeCtx = ctx
		p.closeCtxMu.Unlock()
		p.closed.Store(true)
		p.stop()
		if p.started.CompareAndSwap(false, true) {
			// Run never ran: flush here.
			p.runErr = p.flush(ctx, nil)
			close(p.done)
		}
	})
	<-p.done // Run's flush ends with ctx
	return p.runErr
}
