package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream that keeps every event.
const StreamName = "DEFENDER"

// StreamConfig configures the DEFENDER stream. Zero fields take the
// defaults noted.
type StreamConfig struct {
	// Name of the stream (StreamName).
	Name string
	// Subjects gives the stream's filter, Subjects.All() ("defender.>").
	Subjects Subjects
	// MaxAge is how long an event is kept (DefaultStreamMaxAge); a
	// negative value means no limit.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size, oldest events discarded first
	// (DefaultStreamMaxBytes); a negative value means no limit.
	MaxBytes int64
	// Duplicates is the window in which a message id seen before is
	// dropped (DefaultDuplicates). It makes publisher retries of blocks and
	// unblocks, which carry their id as the message id, safe: keep it
	// longer than an outage during which retries may overlap. Attempts
	// carry none (see Publisher).
	Duplicates time.Duration
	// Replicas for a clustered JetStream (1).
	Replicas int
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Name == "" {
		c.Name = StreamName
	}
	switch {
	case c.MaxAge == 0:
		c.MaxAge = DefaultStreamMaxAge
	case c.MaxAge < 0:
		c.MaxAge = 0 // JetStream: unlimited
	}
	switch {
	case c.MaxBytes == 0:
		c.MaxBytes = DefaultStreamMaxBytes
	case c.MaxBytes < 0:
		c.MaxBytes = -1
	}
	if c.Duplicates <= 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.MaxAge > 0 && c.Duplicates > c.MaxAge {
		c.Duplicates = c.MaxAge
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// JetStream returns the stream configuration EnsureStream applies.
func (c StreamConfig) JetStream() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "defender login attempts, blocks and unblocks",
		Subjects:    []string{c.Subjects.All()},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
	}
}

// EnsureStream creates the stream, or updates an existing one to cfg
// (limits and duplicate window; a stream's storage cannot change).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if err := cfg.Subjects.Validate(); err != nil {
		return nil, err
	}
	sc := cfg.JetStream()
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s on %s: %w", sc.Name, sc.Subjects[0], err)
	}
	return s, nil
}

// AwaitStream returns once the stream exists, creating it with cfg if it
// is missing (an existing one is left as it is: its limits are the
// gate's to set), retrying with backoff while NATS cannot tell, until ctx
// ends. A consumer may then start before the gates do.
func AwaitStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig, log *slog.Logger) error {
	delay := 200 * time.Millisecond
	for {
		_, err := js.Stream(ctx, StreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = EnsureStream(ctx, js, cfg)
		}
		if err == nil {
			return nil
		}
		log.Warn("stream not ready, retrying", "stream", StreamName, "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}
