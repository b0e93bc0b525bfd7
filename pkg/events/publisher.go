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
	// ErrUnsent is wrapped by Close when events were left unsent at
	// shutdown (NATS down past the flush deadline).
	ErrUnsent = errors.New("events: events left unsent")
)

// PublisherOptions configures a Publisher. Zero fields take the defaults
// noted.
type PublisherOptions struct {
	// Subjects names the subjects published on (prefix "defender").
	Subjects Subjects
	// Gate names this instance in every event ("" leaves it out).
	Gate string
	// Buffer is the queue's capacity (DefaultEventBuffer): events emitted
	// while it is full are dropped and counted, except blocks and
	// unblocks, which wait in a reserve of their own (4096) first.
	Buffer int
	// MaxPending is how many events may await their acknowledgement at
	// once (2048). Keep it below the JetStream context's own limit
	// (DefaultMaxAckPending with Connect, 4000 by default), or publishing
	// stalls there.
	MaxPending int
	// AckTimeout is how long an event waits for its acknowledgement before
	// it is sent again, under the same id (5 s).
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while
	// NATS fails (50 ms, 2 s; doubling).
	MinBackoff, MaxBackoff time.Duration
	// Linger is how long an attempt event may wait for others to join it
	// (DefaultLinger), so that they reach NATS in one write: the server
	// then reads, stores and acknowledges them together instead of waking
	// for each. It waits less once lingerFull events are queued, and not
	// at all behind a block or unblock, which go out at once. A negative
	// value sends every event at once.
	Linger time.Duration
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
	if o.MaxPending <= 0 {
		o.MaxPending = 2048
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
	if o.Linger == 0 {
		o.Linger = DefaultLinger
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
	QueueLen  int    // events waiting in the queue and the blocks' reserve now (not those in flight)
}

// Publisher is a gate.Emitter that publishes events on JetStream without
// ever making the caller wait. Emit* put the event in a bounded queue and
// return; the publisher publishes asynchronously with up to MaxPending events
// awaiting their acknowledgement, and sends what was not acknowledged
// again. A block or unblock carries its id as the message id, so the
// stream's duplicate window turns a retry of a stored one into a no-op; an
// attempt carries none, so a retry whose first copy was stored (its
// acknowledgement lost) stores a second copy, with the same id, which the
// recorder stores once. Events are independent: a retry may land after
// younger events.
type Publisher struct {
	js   jetstream.JetStream
	opts PublisherOptions
	log  *slog.Logger

	queue chan *item
	// reserved holds the blocks and unblocks, apart from the attempts
	// (which fill the queue while NATS is slow or away): an attacker's
	// flood of attempts must neither cost a block its event, and so its
	// notifier mail, nor hold it behind the flood. The sender takes from
	// it first. A block that finds it full goes to the queue, and only
	// when both are full is it dropped (counted apart too).
	reserved chan *item
	full     chan struct{} // signalled when the queue reaches fullAt
	fullAt   int           // lingerFull, or half a smaller queue
	urgent   chan struct{} // signalled when a block or unblock is queued
	// transitions is the blocks and unblocks queued and not yet taken:
	// while there are any, no event lingers.
	transitions atomic.Int64
	pool        sync.Pool

	// attempts' subjects, precomputed (a block's, rare, is built by
	// Block.NATSSubject)
	attemptSubj map[gate.Outcome]string

	closed    atomic.Bool // Emit drops from now on
	closeOnce sync.Once
	stopCtx   context.Context    // cancelled by Close
	stop      context.CancelFunc // after closeCtx is set
	closeCtx  context.Context    // Close's context, bounding the flush
	done      chan struct{}      // closed when the sending goroutine ends
	runErr    error              // the flush's result, read after done

	queued, published, dropped, errs, unsent atomic.Uint64
	droppedTransitions                       atomic.Uint64 // of dropped: blocks and unblocks
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

// NewPublisher returns a Publisher on js, publishing from now on; Close
// stops it.
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
		reserved:    make(chan *item, reservedTransitions),
		full:        make(chan struct{}, 1),
		fullAt:      max(min(lingerFull, opts.Buffer/2), 1),
		urgent:      make(chan struct{}, 1),
		attemptSubj: map[gate.Outcome]string{},
		done:        make(chan struct{}),
	}
	p.stopCtx, p.stop = context.WithCancel(context.Background())
	p.pool.New = func() any { return new(item) }
	for _, o := range []gate.Outcome{gate.OutcomeSuccess, gate.OutcomeFailure, gate.OutcomeBlocked} {
		p.attemptSubj[o] = opts.Subjects.Attempt(string(o))
	}
	if err := p.registerMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	go p.run()
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

// EmitTransition queues a block or unblock event, under r.ID when the
// gate named it (else a new id). It never blocks; a full queue leaves it
// to the reserve of blocks, and only a full reserve drops it.
func (p *Publisher) EmitTransition(r gate.TransitionRecord) {
	it := p.pool.Get().(*item)
	it.id = r.ID
	if it.id == (uuid.UUID{}) {
		it.id = newUUID()
	}
	it.transition = true
	it.t = r
	p.enqueue(it)
}

func (p *Publisher) enqueue(it *item) {
	if !p.closed.Load() {
		urgent := it.transition // it belongs to the sender once queued
		if urgent && (offer(p.reserved, it) || offer(p.queue, it)) {
			p.queued.Add(1)
			p.transitions.Add(1)
			signal(p.urgent)
			return
		}
		if !urgent && offer(p.queue, it) {
			p.queued.Add(1)
			if len(p.queue) >= p.fullAt-1 { // the sender holds one more
				signal(p.full)
			}
			return
		}
		if urgent {
			p.droppedTransitions.Add(1)
		}
	}
	p.dropped.Add(1)
	p.release(it)
}

// offer puts it in c if c has room, without waiting.
func offer(c chan *item, it *item) bool {
	select {
	case c <- it:
		return true
	default:
		return false
	}
}

// signal wakes whoever waits on c, a channel of capacity 1, if anyone
// does or will; it never blocks.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
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
		QueueLen:  len(p.queue) + len(p.reserved),
	}
}

// run publishes queued events until Close, then flushes what is queued
// within Close's context.
func (p *Publisher) run() {
	defer close(p.done)
	s := p.newSender()
	defer s.stop()
	s.loop(p.stopCtx, false)
	p.runErr = p.finish(p.closeCtx, s) // set before stopCtx ended
}

// finish flushes everything left through s until ctx ends.
func (p *Publisher) finish(ctx context.Context, s *sender) error {
	if s.loop(ctx, true) {
		s.logDrops()
		return nil
	}
	n := s.pending() + p.discardQueue()
	p.unsent.Add(uint64(n))
	s.logDrops()
	p.log.Warn("events left unsent at shutdown", "unsent", n, "err", ctx.Err())
	return fmt.Errorf("%w: %d events", ErrUnsent, n)
}

func (p *Publisher) discardQueue() int {
	n := 0
	for {
		select {
		case it := <-p.queue:
			p.release(it)
			n++
		case it := <-p.reserved:
			p.release(it)
			n++
		default:
			return n
		}
	}
}

// reservedTransitions is the capacity of Publisher.reserved. Blocks are
// few beside attempts (one per subject per lockout), about 1 KiB each; an
// attacker who makes many blocks on purpose (throwaway names) while NATS
// is away can still fill it and the queue, and later blocks are then
// dropped, counted in defender_events_blocks_dropped_total.
const reservedTransitions = 4096

// DefaultLinger is PublisherOptions.Linger's default. Beyond a few
// thousand logins a second events fill a write (lingerFull) within
// milliseconds; below, a few logins share each write, which is where the
// server's cost per event is highest (a quiet machine wakes for each).
// Attempt subscribers see events up to this much later.
const DefaultLinger = 100 * time.Millisecond

// lingerFull is the queue length at which lingering ends: enough events
// wait to fill a write. A queue of fewer than twice as many ends it at
// half its size, so that lingering never fills it (a full queue drops).
const lingerFull = 64

// encode turns a queued item into a message (nil if the event is
// invalid) and returns the item to the pool. Only blocks and unblocks
// carry their id as the JetStream message id: attempts, the bulk of the
// stream, skip the duplicate window's lookup and upkeep on the server
// (docs/DESIGN.md, "One event's trip"), and a retry that stores one
// twice is absorbed by the recorder, which stores one row per id.
func (p *Publisher) encode(it *item) *nats.Msg {
	id := it.id.String()
	transition := it.transition
	if transition {
		p.transitions.Add(-1)
	}
	var (
		subject string
		data    []byte
		err     error
	)
	if it.transition {
		b := blockOf(&it.t, id, p.opts.Gate)
		subject = b.NATSSubject(p.opts.Subjects)
		data, err = b.Encode() // refuses a kind that is none of gate.Kinds
	} else {
		a := attemptOf(&it.a, id, p.opts.Gate)
		subject = p.attemptSubj[it.a.Outcome]
		data, err = a.Encode()
	}
	p.release(it)
	if err == nil && subject == "" {
		err = fmt.Errorf("%w: no subject", ErrMalformed)
	}
	if err != nil {
		p.dropped.Add(1)
		p.log.Error("events: invalid event dropped", "id", id, "err", err)
		return nil
	}
	m := &nats.Msg{Subject: subject, Data: data}
	if transition {
		m.Header = nats.Header{jetstream.MsgIDHeader: []string{id}}
	}
	return m
}

// flight is a message published and not yet acknowledged.
type flight struct {
	msg      *nats.Msg
	first    time.Time // first publish, for the latency metric
	deadline time.Time // when a missing ack counts as a failure
	f        jetstream.PubAckFuture
}

// sender is the sending goroutine's state: a window of up to MaxPending
// messages in flight, acknowledged in order, and the messages waiting to
// be sent again.
type sender struct {
	p        *Publisher
	inflight []flight // FIFO from head
	head     int
	retry    []flight // failed, to publish again under the same id
	backoff  time.Duration
	pause    time.Time // publish nothing before (after a failure)
	wake     *time.Timer
	linger   *time.Timer
	tick     *time.Ticker
	lastDrop uint64
	// noLinger is how many of the attempts queued now were queued before
	// the last block sent (which goes before them, from its reserve): they
	// do not linger, as they would not have behind it.
	noLinger int
	firstErr error // first failure since the last warning
}

func (p *Publisher) newSender() *sender {
	w := time.NewTimer(time.Hour)
	w.Stop()
	l := time.NewTimer(time.Hour)
	l.Stop()
	return &sender{p: p, backoff: p.opts.MinBackoff, wake: w, linger: l, tick: time.NewTicker(p.opts.LogInterval)}
}

func (s *sender) stop() {
	s.wake.Stop()
	s.linger.Stop()
	s.tick.Stop()
}

func (s *sender) pending() int { return len(s.inflight) - s.head + len(s.retry) }

// loop moves events from the queue to JetStream until ctx ends (false)
// or, when draining, until nothing is queued, in flight or to retry (true).
func (s *sender) loop(ctx context.Context, draining bool) bool {
	p := s.p
	for {
		s.reap(time.Now())
		paused := time.Now().Before(s.pause)
		if !paused && !s.connected() {
			// Don't stack copies in the reconnect buffer: poll.
			paused = true
			s.pause = time.Now().Add(s.backoff)
		}
		room := p.opts.MaxPending - (len(s.inflight) - s.head)
		if !paused && room > 0 && len(s.retry) > 0 {
			s.resend(room)
			continue
		}
		if draining && s.pending() == 0 && len(p.queue) == 0 && len(p.reserved) == 0 {
			return true
		}
		var queue, reserved <-chan *item
		if !paused && room > 0 {
			queue, reserved = p.queue, p.reserved
			select { // blocks first
			case it := <-reserved:
				s.publish(it, room)
				continue
			default:
			}
		}
		var ok <-chan *jetstream.PubAck
		var fail <-chan error
		var wakeAt time.Time
		if s.head < len(s.inflight) {
			h := &s.inflight[s.head]
			ok, fail, wakeAt = h.f.Ok(), h.f.Err(), h.deadline
		}
		if paused && (wakeAt.IsZero() || s.pause.Before(wakeAt)) {
			wakeAt = s.pause
		}
		if !wakeAt.IsZero() {
			s.wake.Reset(max(time.Until(wakeAt), 0))
		}
		select {
		case <-ctx.Done():
			s.wake.Stop()
			return false
		case it := <-reserved:
			s.publish(it, room)
		case it := <-queue:
			if !draining && !it.transition && s.noLinger == 0 {
				s.lingerFor(ctx)
			}
			s.publish(it, room)
		case <-ok:
			s.acked(s.pop())
		case err := <-fail:
			s.failed(s.pop(), err)
		case <-s.wake.C:
		case <-s.tick.C:
			s.logDrops()
		}
		s.wake.Stop()
	}
}

func (s *sender) connected() bool {
	nc := s.p.js.Conn()
	return nc == nil || nc.IsConnected()
}

// lingerFor gives the events behind the one just taken Linger to arrive,
// until fullAt are queued or a block or unblock is.
func (s *sender) lingerFor(ctx context.Context) {
	p := s.p
	select {
	case <-p.full: // left from a queue emptied since
	default:
	}
	select {
	case <-p.urgent: // left from a block taken since, or still queued (below)
	default:
	}
	if p.opts.Linger < 0 || len(p.queue) >= p.fullAt-1 || p.transitions.Load() > 0 {
		return
	}
	s.linger.Reset(p.opts.Linger)
	select {
	case <-s.linger.C:
	case <-p.full:
		s.linger.Stop()
	case <-p.urgent:
		s.linger.Stop()
	case <-ctx.Done():
		s.linger.Stop()
	}
}

// publish sends it and then whatever else is queued, up to room messages.
func (s *sender) publish(it *item, room int) {
	now := time.Now()
	for {
		if it.transition {
			s.noLinger = len(s.p.queue)
		} else if s.noLinger > 0 {
			s.noLinger--
		}
		if m := s.p.encode(it); m != nil {
			s.send(flight{msg: m, first: now}, now)
			room--
		}
		if room <= 0 {
			return
		}
		select { // blocks first
		case it = <-s.p.reserved:
		default:
			select {
			case it = <-s.p.queue:
			default:
				return
			}
		}
	}
}

// resend publishes failed messages again, up to room of them.
func (s *sender) resend(room int) {
	now := time.Now()
	n := min(room, len(s.retry))
	for _, f := range s.retry[:n] {
		s.send(f, now)
	}
	s.retry = append(s.retry[:0], s.retry[n:]...)
}

func (s *sender) send(f flight, now time.Time) {
	fut, err := s.p.js.PublishMsgAsync(f.msg)
	if err != nil {
		s.failed(f, err)
		return
	}
	f.f, f.deadline = fut, now.Add(s.p.opts.AckTimeout)
	s.inflight = append(s.inflight, f)
}

// reap settles the acknowledged or expired messages at the window's head.
func (s *sender) reap(now time.Time) {
	for s.head < len(s.inflight) {
		h := &s.inflight[s.head]
		select {
		case <-h.f.Ok():
			s.acked(s.pop())
			continue
		case err := <-h.f.Err():
			s.failed(s.pop(), err)
			continue
		default:
		}
		if now.Before(h.deadline) {
			return
		}
		s.failed(s.pop(), fmt.Errorf("no ack within %s", s.p.opts.AckTimeout))
	}
}

func (s *sender) pop() flight {
	f := s.inflight[s.head]
	s.inflight[s.head] = flight{}
	s.head++
	switch {
	case s.head == len(s.inflight):
		s.inflight, s.head = s.inflight[:0], 0
	case s.head > 1024 && s.head > len(s.inflight)/2:
		n := copy(s.inflight, s.inflight[s.head:])
		clear(s.inflight[n:])
		s.inflight, s.head = s.inflight[:n], 0
	}
	return f
}

func (s *sender) acked(f flight) {
	s.p.published.Add(1)
	s.p.latency.Observe(time.Since(f.first).Seconds())
	s.backoff = s.p.opts.MinBackoff
}

// failed queues f for a retry under the same id and pauses publishing.
func (s *sender) failed(f flight, err error) {
	p := s.p
	p.errs.Add(1)
	f.f = nil
	s.retry = append(s.retry, f)
	if now := time.Now(); !now.Before(s.pause) {
		s.pause = now.Add(s.backoff)
		s.backoff = min(2*s.backoff, p.opts.MaxBackoff)
	}
	if s.firstErr == nil {
		s.firstErr = err
	}
	now := time.Now().UnixNano()
	if last := p.lastWarn.Load(); now-last >= int64(p.opts.LogInterval) {
		p.lastWarn.Store(now)
		p.log.Warn("events: publish failed, retrying", "pending", s.pending(), "err", s.firstErr)
		s.firstErr = nil
	}
}

// logDrops warns about events dropped since the last call.
func (s *sender) logDrops() {
	d := s.p.dropped.Load()
	if d > s.lastDrop {
		s.p.log.Warn("events dropped", "dropped", d-s.lastDrop, "dropped_total", d, "buffer", s.p.opts.Buffer)
	}
	s.lastDrop = d
}

// Close stops the publisher: Emit drops from now on, and what is queued is
// flushed until ctx ends. It returns nil when everything was published,
// or an error wrapping ErrUnsent with the number of events given up.
// Close may be called more than once, and returns the same result.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.closeCtx = ctx
		p.stop()
	})
	<-p.done
	return p.runErr
}
