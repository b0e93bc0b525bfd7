package events

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/defender-go/defender/internal/truncate"
	"github.com/defender-go/defender/pkg/gate"
)

// NewID returns a new event id: a UUIDv7 in its canonical text form. Ids
// from one process are strictly increasing (uuid.NewV7 keeps a monotonic
// clock), and ids from different processes sort by their millisecond.
func NewID() string {
	return newUUID().String()
}

// newUUID returns a UUIDv7; should the system's random source fail, it
// falls back to a v7 time prefix with a random-less tail rather than
// losing the event.
func newUUID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		// crypto/rand does not fail on supported systems; keep the
		// time order at least.
		id, _ = uuid.NewV7FromReader(zeroReader{})
	}
	return id
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// NewAttempt converts what the gate reports of an attempt into an event
// with a new id. gateName names the deciding instance ("" to leave it out).
func NewAttempt(r gate.AttemptRecord, gateName string) Attempt {
	return attemptOf(&r, NewID(), gateName)
}

// MaxInfoBytes bounds an attempt event's path and user agent, which come
// from the client: longer values are cut (at a character boundary), so
// that no event outgrows the NATS message limit and holds up the others.
const MaxInfoBytes = 1024

func attemptOf(r *gate.AttemptRecord, id, gateName string) Attempt {
	a := Attempt{
		V:                Version,
		Type:             TypeAttempt,
		ID:               id,
		Time:             r.Time,
		IP:               r.IP,
		Username:         r.Username,
		Result:           string(r.Outcome),
		Path:             truncate.UTF8(r.Path, MaxInfoBytes),
		UserAgent:        truncate.UTF8(r.UserAgent, MaxInfoBytes),
		Gate:             gateName,
		IPFailures:       r.IPFailures,
		UsernameFailures: r.UsernameFailures,
		PairFailures:     r.PairFailures,
		Degraded:         r.Degraded,
		Observe:          r.Observe,
		Shared:           r.Shared,
		Familiar:         r.Familiar,
	}
	if len(r.BlockedBy) > 0 {
		a.BlockedBy = make([]string, len(r.BlockedBy))
		for i, k := range r.BlockedBy {
			a.BlockedBy[i] = string(k)
		}
	}
	return a
}

// NewBlock converts a block or unblock transition into an event with a
// new id. gateName names the deciding instance ("" to leave it out).
func NewBlock(r gate.TransitionRecord, gateName string) Block {
	return blockOf(&r, NewID(), gateName)
}

func blockOf(r *gate.TransitionRecord, id, gateName string) Block {
	b := Block{
		V:         Version,
		Type:      TypeUnblock,
		ID:        id,
		Time:      r.Time,
		Kind:      string(r.Kind),
		Subject:   r.Subject,
		Permanent: r.Permanent,
		Failures:  r.Failures,
		Reason:    string(r.Reason),
		IP:        r.IP,
		Gate:      gateName,
		Local:     r.Local,
		Observe:   r.Observe,
	}
	if r.Blocked {
		b.Type = TypeBlock
		if !r.Permanent && !r.Until.IsZero() {
			until := r.Until
			b.Until = &until
		}
	} else {
		b.Permanent = false
	}
	return b
}

// NATSSubject is the subject the attempt is published on, e.g.
// "defender.attempt.failure".
func (a *Attempt) NATSSubject(s Subjects) string { return s.Attempt(a.Result) }

// NATSSubject is the subject the block or unblock is published on, e.g.
// "defender.block.ip", or "defender.observe.block.ip" for a would-be block
// of observe mode. (Block.Subject is the blocked IP, username or pair.)
func (b *Block) NATSSubject(s Subjects) string {
	switch {
	case b.Observe && b.Type == TypeUnblock:
		return s.ObserveUnblock(b.Kind)
	case b.Observe:
		return s.ObserveBlock(b.Kind)
	case b.Type == TypeUnblock:
		return s.Unblock(b.Kind)
	}
	return s.Block(b.Kind)
}

// Encode validates the attempt and returns its JSON wire form.
func (a *Attempt) Encode() ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return data, nil
}

// Encode validates the block or unblock and returns its JSON wire form.
func (b *Block) Encode() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return data, nil
}
