package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/internal/truncate"
	"github.com/defender-go/defender/pkg/events"
)

// Defaults of Options.
const (
	DefaultConsumer        = "recorder"
	DefaultBatch           = 10000
	DefaultFlush           = time.Second
	DefaultAckWait         = time.Minute
	DefaultInsertTimeout   = 20 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 10 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
	DefaultLagInterval     = 5 * time.Second
	// MaxDelayFlushes is Options.MaxDelay's default, in Flushes.
	MaxDelayFlushes = 5
)

// Headers of a dead letter, beside the original message's data.
const (
	// HeaderReason says why the event could not be stored.
	HeaderReason = "Defender-Dlq-Reason"
	// HeaderSubject is the subject the event was published on.
	HeaderSubject = "Defender-Dlq-Subject"
	// HeaderStreamSeq is the event's sequence in the stream.
	HeaderStreamSeq = "Defender-Dlq-Stream-Seq"
	// HeaderOriginalSize is set, to the event's size in bytes, when the
	// dead letter carries only the start of an event too large to be
	// copied whole beside its headers.
	HeaderOriginalSize = "Defender-Dlq-Original-Size"
)

// Bounds of a dead letter: its reason is cut to maxReasonBytes, and its
// data to the server's largest message less dlqHeaderRoom, so that a
// hostile event of any size can still be dead-lettered.
const (
	maxReasonBytes = 512
	dlqHeaderRoom  = 4 << 10
)

// Options configures a Recorder. Zero fields take the defaults noted.
type Options struct {
	// Subjects names the events to read and the dead-letter subject
	// (prefix events.DefaultPrefix).
	Subjects events.Subjects
	// Stream is the JetStream stream (events.StreamName).
	Stream string
	// Consumer is the durable pull consumer's name (DefaultConsumer).
	// Recorders sharing it share the work.
	Consumer string
	// Batch is the most events written in one insert
	// (DEFENDER_RECORD_BATCH, DefaultBatch).
	Batch int
	// Flush is how often the recorder takes what the stream holds
	// (DEFENDER_RECORD_FLUSH, DefaultFlush): while events arrive briskly,
	// the longest one waits to be written.
	Flush time.Duration
	// MaxDelay is the longest an event waits to be written while few
	// arrive (5 × Flush, at most AckWait/2): fewer than Batch/10 events
	// wait for more, so that a quiet recorder writes a few larger inserts
	// rather than one per Flush.
	MaxDelay time.Duration
	// AckWait is how long JetStream waits for an acknowledgement before
	// it redelivers (DefaultAckWait): the delay before the batch of a
	// crashed recorder is written by another. While ClickHouse is away
	// the recorder renews it for the batch in hand (InProgress). At least
	// 3 × Flush.
	AckWait time.Duration
	// MaxAckPending bounds the events delivered and not yet acknowledged
	// over all recorders sharing the consumer (4 × Batch, at least 65536).
	MaxAckPending int
	// InsertTimeout bounds one insert attempt (DefaultInsertTimeout, at
	// most AckWait/2).
	InsertTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff between
	// attempts to write a batch (DefaultRetryMin, DefaultRetryMax; at
	// most AckWait/4).
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds writing the batch in hand once Run's context
	// ends (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// LagInterval is how often the consumer's backlog is read for the
	// lag metrics (DefaultLagInterval).
	LagInterval time.Duration
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger logs; nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Stream == "" {
		o.Stream = events.StreamName
	}
	if o.Consumer == "" {
		o.Consumer = DefaultConsumer
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Flush <= 0 {
		o.Flush = DefaultFlush
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = min(MaxDelayFlushes*o.Flush, o.AckWait/2)
	}
	o.MaxDelay = max(o.MaxDelay, o.Flush)
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = max(4*o.Batch, 65536)
	}
	if o.InsertTimeout <= 0 {
		o.InsertTimeout = DefaultInsertTimeout
	}
	o.InsertTimeout = min(o.InsertTimeout, o.AckWait/2)
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	o.RetryMax = max(min(o.RetryMax, o.AckWait/4), o.RetryMin)
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.LagInterval <= 0 {
		o.LagInterval = DefaultLagInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats are a Recorder's counters since it was created.
type Stats struct {
	// Batches is the number of batches written.
	Batches uint64
	// Attempts and Blocks are the rows written (blocks include unblocks),
	// redelivered events included.
	Attempts, Blocks uint64
	// DeadLetters is the number of events sent to the dead-letter subject.
	DeadLetters uint64
	// Retries is the number of failed write attempts that were retried.
	Retries uint64
}

// Recorder moves events from JetStream into ClickHouse. Create it with
// New and start it with Run; several recorders, in one process or many,
// may share one consumer.
type Recorder struct {
	js   jetstream.JetStream
	conn driver.Conn
	opts Options
	log  *slog.Logger
	m    *metrics

	batches, attempts, blocks, deadLetters, retries atomic.Uint64
}

// ServerNeed is the NATS server the Recorder needs: its consumer reads the
// event subjects and not the dead letters, with several filter subjects,
// which servers before 2.10 ignore (they would hand it the whole stream).
var ServerNeed = events.ServerNeed{Min: "2.10", Who: "defender's recorder",
	For: "consumers with several filter subjects"}

// ErrConfig is wrapped by New's errors about its options.
var ErrConfig = errors.New("record: bad options")

// New returns a Recorder reading from js and writing to conn.
func New(js jetstream.JetStream, conn driver.Conn, opts Options) (*Recorder, error) {
	opts.setDefaults()
	if err := opts.Subjects.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if opts.AckWait < 3*opts.Flush {
		return nil, fmt.Errorf("%w: ack wait %s is shorter than 3 × flush %s", ErrConfig, opts.AckWait, opts.Flush)
	}
	if opts.MaxDelay > opts.AckWait/2 {
		// Held events are not yet kept from redelivery (handOver does that).
		return nil, fmt.Errorf("%w: max delay %s is longer than half the ack wait %s", ErrConfig, opts.MaxDelay, opts.AckWait)
	}
	r := &Recorder{js: js, conn: conn, opts: opts, log: opts.Logger.With("component", "recorder")}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r.m = m
	return r, nil
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() Stats {
	return Stats{
		Batches:     r.batches.Load(),
		Attempts:    r.attempts.Load(),
		Blocks:      r.blocks.Load(),
		DeadLetters: r.deadLetters.Load(),
		Retries:     r.retries.Load(),
	}
}

// ConsumerConfig is the durable pull consumer the recorder creates or
// updates on the stream.
func (r *Recorder) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        r.opts.Consumer,
		Description:    "defender recorder: events into ClickHouse",
		FilterSubjects: r.opts.Subjects.Events(),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.opts.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  r.opts.MaxAckPending,
	}
}

// Run writes events until ctx ends, then writes the batch in hand (within
// ShutdownTimeout) and returns. It returns nil after a clean stop; an
// error if the last batch could not be written (its events are then
// handed back to JetStream for redelivery).
//
// It waits for the stream to exist, so the recorder may start before the
// gate or NATS. While ClickHouse refuses a batch the recorder keeps
// retrying that batch and fetches nothing more: the backlog waits in the
// stream. A NATS server older than ServerNeed ends it at once with an
// error wrapping events.ErrServerTooOld.
func (r *Recorder) Run(ctx context.Context) error {
	cons, err := r.consumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	lagCtx, stopLag := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.pollLag(lagCtx, cons) })
	defer func() { stopLag(); wg.Wait() }()

	// Two stages: one goroutine fetches and decodes the next batch while
	// this one writes the current one. The fetcher holds at most one
	// batch ahead, so while a write is being retried fetching pauses.
	batches := make(chan *batch)
	wg.Go(func() {
		defer close(batches)
		r.fetchLoop(ctx, cons, batches)
	})
	var werr error
	for b := range batches {
		if werr != nil {
			r.giveBack(b)
			continue
		}
		if werr = r.write(ctx, b); werr != nil {
			r.giveBack(b)
		}
	}
	return werr
}

// fetchLoop gathers batches and hands them, decoded, to out until ctx
// ends; the events in hand then are still handed over to be written.
//
// It never holds a pull request open: the server would then deliver each
// event the moment it is stored, a write and a wake-up per event on both
// sides. It takes instead what the stream holds (FetchNoWait) every
// Flush, so events come in bulk and are acknowledged soon after they are
// delivered: the server's record of unacknowledged events, which it writes
// out whole, stays small. A fetch that brought a tenth of a batch or more
// is followed by the next at once. Fewer than a tenth of a batch
// wait for more, up to MaxDelay: ClickHouse pays for every insert (a part
// written, later merged), so a quiet recorder writes a few larger inserts.
// Idle, a recorder costs the server one request per Flush.
func (r *Recorder) fetchLoop(ctx context.Context, cons jetstream.Consumer, out chan<- *batch) {
	delay := r.opts.RetryMin
	minRows := max(r.opts.Batch/10, 1)
	// Events wait up to Flush in the stream before a fetch takes them.
	holdFor := r.opts.MaxDelay - r.opts.Flush
	var (
		held  []jetstream.Msg
		since time.Time // when the oldest held event was fetched
	)
	give := func() { // the held events, to the writer
		r.m.batchSize.Observe(float64(len(held)))
		b := r.decode(held)
		b.alive = since
		r.handOver(out, b)
		held = nil
	}
	for {
		msgs, err := r.fetch(cons, r.opts.Batch-len(held))
		if len(msgs) > 0 && len(held) == 0 {
			since = time.Now()
		}
		held = append(held, msgs...)
		// A fetch may bring fewer than asked while more wait (the server
		// sends what fits its limits): one that brought a tenth of a batch
		// or more is followed by the next at once, so a backlog drains at
		// full speed.
		more := len(msgs) >= minRows
		if len(held) >= minRows || len(held) > 0 && time.Since(since) >= holdFor {
			give()
		}
		wait := r.opts.Flush
		switch {
		case err != nil:
			r.log.WarnContext(ctx, "fetch failed", "err", err, "retry_in", delay)
			wait, delay = delay, min(2*delay, r.opts.RetryMax)
		case more:
			wait, delay = 0, r.opts.RetryMin
		default:
			delay = r.opts.RetryMin
		}
		if len(held) > 0 {
			wait = min(wait, holdFor-time.Since(since))
		}
		if ctx.Err() != nil || wait > 0 && !sleep(ctx, wait) {
			if len(held) > 0 {
				give()
			}
			return
		}
	}
}

// handOver passes b to the writer, keeping its messages from being
// redelivered while the writer is busy (retrying a ClickHouse outage).
func (r *Recorder) handOver(out chan<- *batch, b *batch) {
	h := r.heartbeat(b)
	h.beat() // the fetch loop may have held them a while
	t := time.NewTimer(h.next())
	defer t.Stop()
	for {
		// Before the send: once sent, b is the writer's, which reads it.
		b.alive = h.last
		select {
		case out <- b:
			return
		case <-t.C:
			h.beat()
			t.Reset(h.next())
		}
	}
}

// consumer creates or updates the durable consumer, retrying until it
// succeeds or ctx ends. A server older than ServerNeed is refused for
// good: retrying would not make it newer.
func (r *Recorder) consumer(ctx context.Context) (jetstream.Consumer, error) {
	delay := r.opts.RetryMin
	for {
		// Checked before the request: a server before 2.10 creates the
		// consumer without its filters, and only then does nats.go notice.
		if err := ServerNeed.Check(r.js.Conn()); err != nil {
			return nil, err
		}
		cons, err := r.js.CreateOrUpdateConsumer(ctx, r.opts.Stream, r.ConsumerConfig())
		if err == nil {
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
			// The request met an older server than the one checked: the
			// connection moved to another server of a cluster meanwhile.
			if tooOld := ServerNeed.Check(r.js.Conn()); tooOld != nil {
				return nil, tooOld
			}
			return nil, &events.TooOldError{Need: ServerNeed}
		}
		r.log.WarnContext(ctx, "cannot create consumer, retrying", "stream", r.opts.Stream,
			"consumer", r.opts.Consumer, "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil, fmt.Errorf("consumer %s on %s: %w", r.opts.Consumer, r.opts.Stream, err)
		}
		delay = min(2*delay, r.opts.RetryMax)
	}
}

// fetch gets up to n of the messages the stream holds now, without
// waiting for more.
func (r *Recorder) fetch(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	mb, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var msgs []jetstream.Msg
	for m := range mb.Messages() {
		msgs = append(msgs, m)
	}
	if err := mb.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msgs, fmt.Errorf("fetch: %w", err)
	}
	return msgs, nil
}

// deadLetter is a message that cannot be stored, and why.
type deadLetter struct {
	msg    jetstream.Msg
	reason error
}

// batch is one fetch, decoded.
type batch struct {
	msgs []jetstream.Msg // all of them, for InProgress and Nak
	// alive is when JetStream last restarted its messages' ack wait:
	// when the oldest was fetched, or the last InProgress.
	alive    time.Time
	ok       []jetstream.Msg // stored by the inserts
	attempts []attemptRow
	blocks   []blockRow
	dead     []deadLetter
}

// decodeChunk is the least number of events worth a goroutine in decode.
const decodeChunk = 2000

// decode decodes a batch, in parallel chunks when it is big: JSON decoding
// is the recorder's main CPU cost.
func (r *Recorder) decode(msgs []jetstream.Msg) *batch {
	n := min(runtime.GOMAXPROCS(0), len(msgs)/decodeChunk)
	if n <= 1 {
		return r.decodeSeq(msgs)
	}
	parts := make([]*batch, n)
	var wg sync.WaitGroup
	size := (len(msgs) + n - 1) / n
	for i := range parts {
		chunk := msgs[i*size : min((i+1)*size, len(msgs))]
		wg.Go(func() { parts[i] = r.decodeSeq(chunk) })
	}
	wg.Wait()
	b := &batch{msgs: msgs, ok: make([]jetstream.Msg, 0, len(msgs)), attempts: make([]attemptRow, 0, len(msgs))}
	for _, p := range parts {
		b.ok = append(b.ok, p.ok...)
		b.attempts = append(b.attempts, p.attempts...)
		b.blocks = append(b.blocks, p.blocks...)
		b.dead = append(b.dead, p.dead...)
	}
	return b
}

func (r *Recorder) decodeSeq(msgs []jetstream.Msg) *batch {
	b := &batch{msgs: msgs, ok: make([]jetstream.Msg, 0, len(msgs)), attempts: make([]attemptRow, 0, len(msgs))}
	prefix := r.opts.Subjects.All()
	prefix = prefix[:len(prefix)-1] // "<prefix>."
	dlq := r.opts.Subjects.DLQ()
	for _, m := range msgs {
		if m.Subject() == dlq {
			// The consumer's filters leave these out (ServerNeed): should
			// one come all the same, acknowledge it, never dead-letter a
			// dead letter.
			b.ok = append(b.ok, m)
			continue
		}
		// "<prefix>.<type>.<...>", or "<prefix>.observe.<type>.<kind>"
		// for observe mode's would-be blocks and unblocks.
		rest, observe := strings.CutPrefix(strings.TrimPrefix(m.Subject(), prefix), "observe.")
		typ, _, _ := strings.Cut(rest, ".")
		var err error
		switch events.Type(typ) {
		case events.TypeAttempt:
			if observe {
				err = fmt.Errorf("%w: subject %s is no event's", events.ErrMalformed, m.Subject())
				break
			}
			var a events.Attempt
			if a, err = events.DecodeAttempt(m.Data()); err == nil {
				var row attemptRow
				if row, err = newAttemptRow(&a); err == nil {
					b.attempts = append(b.attempts, row)
				}
			}
		case events.TypeBlock, events.TypeUnblock:
			var ev events.Block
			if ev, err = events.DecodeBlock(m.Data()); err == nil {
				switch {
				case string(ev.Type) != typ:
					err = fmt.Errorf("%w: %s event on a %s subject", events.ErrMalformed, ev.Type, typ)
				case ev.Observe != observe:
					// A would-be block stored as a real one, or the
					// reverse, would tell the history what never was.
					err = fmt.Errorf("%w: observe %t event on subject %s", events.ErrMalformed, ev.Observe, m.Subject())
				}
			}
			if err == nil {
				var row blockRow
				if row, err = newBlockRow(&ev); err == nil {
					b.blocks = append(b.blocks, row)
				}
			}
		default:
			err = fmt.Errorf("%w: subject %s is no event's", events.ErrMalformed, m.Subject())
		}
		if err != nil {
			b.dead = append(b.dead, deadLetter{msg: m, reason: err})
			continue
		}
		b.ok = append(b.ok, m)
	}
	return b
}

// write stores one decoded batch, then acknowledges it. It retries until
// it succeeds; once ctx ends it gets ShutdownTimeout more, after which it
// returns an error.
func (r *Recorder) write(ctx context.Context, b *batch) error {
	// Once ctx ends the batch still gets ShutdownTimeout to be written.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.opts.ShutdownTimeout, cancel) })
	defer stop()

	h := r.heartbeat(b)
	h.beat()
	if len(b.dead) > 0 {
		if err := r.untilDone(wctx, "dlq", h, func(ctx context.Context) error { return r.sendDeadLetters(ctx, b) }); err != nil {
			return notWritten(b, err)
		}
	}
	if err := r.untilDone(wctx, "attempts", h, func(ctx context.Context) error {
		return r.timed("attempts", func() error { return writeAttempts(ctx, r.conn, b.attempts) })
	}); err != nil {
		return notWritten(b, err)
	}
	r.attempts.Add(uint64(len(b.attempts)))
	r.m.rows.WithLabelValues("attempts").Add(float64(len(b.attempts)))
	b.attempts = nil
	if err := r.untilDone(wctx, "blocks", h, func(ctx context.Context) error {
		return r.timed("blocks", func() error { return writeBlocks(ctx, r.conn, b.blocks) })
	}); err != nil {
		return notWritten(b, err)
	}
	r.blocks.Add(uint64(len(b.blocks)))
	r.m.rows.WithLabelValues("blocks").Add(float64(len(b.blocks)))

	// Written: acknowledge. A lost ack means a redelivery, which the
	// tables and queries absorb (same id).
	failed := 0
	for _, m := range b.ok {
		if err := m.Ack(); err != nil {
			failed++
		}
	}
	if failed > 0 {
		r.log.WarnContext(ctx, "acks failed; those events will be redelivered and deduplicated", "count", failed)
	}
	r.batches.Add(1)
	return nil
}

func (r *Recorder) timed(table string, write func() error) error {
	start := time.Now()
	err := write()
	if err == nil {
		r.m.insertSeconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
	}
	return err
}

// giveBack hands an unwritten batch back to JetStream for prompt
// redelivery (to another recorder, or this one after a restart).
func (r *Recorder) giveBack(b *batch) {
	for _, m := range b.msgs {
		_ = m.Nak()
	}
	r.log.Warn("batch handed back to JetStream unwritten", "events", len(b.msgs))
}

func notWritten(b *batch, err error) error {
	return fmt.Errorf("record: batch of %d events not written at shutdown: %w", len(b.msgs), err)
}

// sendDeadLetters publishes the batch's undecodable events to the DLQ
// subject and terminates them.
func (r *Recorder) sendDeadLetters(ctx context.Context, b *batch) error {
	for len(b.dead) > 0 {
		d := b.dead[0]
		meta, _ := d.msg.Metadata()
		seq := uint64(0)
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		reason := deadLetterReason(d.reason)
		out := nats.NewMsg(r.opts.Subjects.DLQ())
		out.Data = d.msg.Data()
		if limit := int(r.js.Conn().MaxPayload()) - dlqHeaderRoom; limit > 0 && len(out.Data) > limit {
			out.Data = out.Data[:limit]
			out.Header.Set(HeaderOriginalSize, strconv.Itoa(len(d.msg.Data())))
		}
		out.Header.Set(HeaderReason, reason)
		out.Header.Set(HeaderSubject, d.msg.Subject())
		out.Header.Set(HeaderStreamSeq, strconv.FormatUint(seq, 10))
		// A redelivered dead letter is one dead letter.
		out.Header.Set(nats.MsgIdHdr, "dlq-"+r.opts.Stream+"-"+strconv.FormatUint(seq, 10))
		if _, err := r.js.PublishMsg(ctx, out); err != nil {
			return fmt.Errorf("publish dead letter: %w", err)
		}
		_ = d.msg.TermWithReason("defender: dead letter: " + reason)
		r.deadLetters.Add(1)
		r.m.deadLetters.Inc()
		r.log.WarnContext(ctx, "event sent to the dead-letter subject", "subject", d.msg.Subject(),
			"stream_seq", seq, "reason", reason)
		b.dead = b.dead[1:]
	}
	return nil
}

// deadLetterReason is err's message fit for a header: control characters
// (a header ends at a line break) and invalid UTF-8 replaced, at most
// maxReasonBytes long. Errors may quote the event's fields, which an
// attacker sizes.
func deadLetterReason(err error) string {
	s := strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(err.Error(), "\ufffd"))
	if len(s) > maxReasonBytes {
		s = truncate.UTF8(s, maxReasonBytes) + "..."
	}
	return s
}

// heartbeat keeps JetStream from redelivering a batch that waits for the
// writer or is being retried: it restarts the messages' ack wait
// (InProgress) once a quarter of it has passed since the last restart,
// counted from the batch's fetch, so that the hold before the hand-over,
// the wait for the writer and a hung insert (at most AckWait/2) never add
// up to the ack wait.
type heartbeat struct {
	msgs  []jetstream.Msg
	every time.Duration
	last  time.Time
}

func (r *Recorder) heartbeat(b *batch) *heartbeat {
	return &heartbeat{msgs: b.msgs, every: r.opts.AckWait / 4, last: b.alive}
}

// next is the time until the next beat is due.
func (h *heartbeat) next() time.Duration { return max(h.every-time.Since(h.last), 0) }

func (h *heartbeat) beat() {
	if time.Since(h.last) < h.every {
		return
	}
	for _, m := range h.msgs {
		_ = m.InProgress()
	}
	h.last = time.Now()
}

// untilDone runs op until it succeeds, with exponential backoff, or until
// ctx ends.
func (r *Recorder) untilDone(ctx context.Context, what string, h *heartbeat, op func(context.Context) error) error {
	delay := r.opts.RetryMin
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, r.opts.InsertTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				r.log.InfoContext(ctx, "write succeeded after retries", "what", what, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("write %s: %w", what, err)
		}
		r.retries.Add(1)
		r.m.retries.WithLabelValues(what).Inc()
		r.log.WarnContext(ctx, "write failed, retrying", "what", what, "attempt", attempt,
			"retry_in", delay, "err", err)
		h.beat()
		if !sleep(ctx, delay) {
			return fmt.Errorf("write %s: %w", what, err)
		}
		h.beat()
		delay = min(2*delay, r.opts.RetryMax)
	}
}

// pollLag reads the consumer's backlog every LagInterval.
func (r *Recorder) pollLag(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(r.opts.LagInterval)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, r.opts.LagInterval)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			r.m.pending.Set(float64(info.NumPending))
			r.m.ackPending.Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
