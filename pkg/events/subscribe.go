package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SubscribeBlocks calls fn for every block published from now on, over
// core NATS (no history, no acknowledgement: see ConsumeBlocks for
// that). fn runs on the subscription's goroutine, one event at a time.
// Malformed messages are logged and skipped. The subscription ends when
// ctx ends or when it is unsubscribed.
func SubscribeBlocks(ctx context.Context, nc *nats.Conn, s Subjects, fn func(Block)) (*nats.Subscription, error) {
	return subscribe(ctx, nc, s, s.Blocks(), DecodeBlock, fn)
}

// SubscribeUnblocks is SubscribeBlocks for unblock events.
func SubscribeUnblocks(ctx context.Context, nc *nats.Conn, s Subjects, fn func(Block)) (*nats.Subscription, error) {
	return subscribe(ctx, nc, s, s.Unblocks(), DecodeBlock, fn)
}

// SubscribeAttempts is SubscribeBlocks for attempt events.
func SubscribeAttempts(ctx context.Context, nc *nats.Conn, s Subjects, fn func(Attempt)) (*nats.Subscription, error) {
	return subscribe(ctx, nc, s, s.Attempts(), DecodeAttempt, fn)
}

func subscribe[T any](ctx context.Context, nc *nats.Conn, s Subjects, subject string, decode func([]byte) (T, error), fn func(T)) (*nats.Subscription, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		ev, err := decode(m.Data)
		if err != nil {
			slog.Warn("events: skipping malformed event", "subject", m.Subject, "err", err)
			return
		}
		fn(ev)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	context.AfterFunc(ctx, func() { _ = sub.Unsubscribe() })
	return sub, nil
}

// ConsumeBlocks delivers block events from the DEFENDER stream through
// the durable consumer named durable, created if needed: events published
// while the caller was away are delivered when it comes back, each until
// acknowledged. fn's nil acknowledges the event; an error has it
// redelivered later. Malformed messages are logged and terminated (never
// redelivered). Delivery stops when ctx ends or by the returned
// ConsumeContext's Stop.
func ConsumeBlocks(ctx context.Context, js jetstream.JetStream, s Subjects, durable string, fn func(context.Context, Block) error) (jetstream.ConsumeContext, error) {
	return consume(ctx, js, s, durable, s.Blocks(), DecodeBlock, fn)
}

// ConsumeUnblocks is ConsumeBlocks for unblock events.
func ConsumeUnblocks(ctx context.Context, js jetstream.JetStream, s Subjects, durable string, fn func(context.Context, Block) error) (jetstream.ConsumeContext, error) {
	return consume(ctx, js, s, durable, s.Unblocks(), DecodeBlock, fn)
}

// ConsumeAttempts is ConsumeBlocks for attempt events.
func ConsumeAttempts(ctx context.Context, js jetstream.JetStream, s Subjects, durable string, fn func(context.Context, Attempt) error) (jetstream.ConsumeContext, error) {
	return consume(ctx, js, s, durable, s.Attempts(), DecodeAttempt, fn)
}

// ErrNoDurable is returned by Consume* without a consumer name.
var ErrNoDurable = errors.New("events: durable consumer name required")

func consume[T any](ctx context.Context, js jetstream.JetStream, s Subjects, durable, filter string, decode func([]byte) (T, error), fn func(context.Context, T) error) (jetstream.ConsumeContext, error) {
	if durable == "" {
		return nil, ErrNoDurable
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	c, err := js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, filter, err)
	}
	log := slog.Default().With("consumer", durable)
	cc, err := c.Consume(func(m jetstream.Msg) {
		ev, err := decode(m.Data())
		if err != nil {
			log.Warn("events: terminating malformed event", "subject", m.Subject(), "err", err)
			_ = m.Term()
			return
		}
		if err := fn(ctx, ev); err != nil {
			log.Warn("events: handler failed, will redeliver", "subject", m.Subject(), "err", err)
			_ = m.Nak()
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", durable, err)
	}
	context.AfterFunc(ctx, cc.Stop)
	return cc, nil
}
