package events

import (
	"errors"
	"fmt"
	"strings"

	"github.com/defender-go/defender/pkg/gate"
)

// DefaultPrefix is the subject prefix used when none is configured
// (DEFENDER_SUBJECT_PREFIX). It is independent of the Redis key prefix.
const DefaultPrefix = "defender"

// Attempt results, as in Attempt.Result and the last token of attempt subjects.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultBlocked = "blocked"
)

// Block kinds, as in Block.Kind and the last token of block and unblock
// subjects: gate's, named here for subscribers; every gate.Kind is a block
// kind (see ValidKind).
const (
	KindIP       = string(gate.KindIP)
	KindUsername = string(gate.KindUsername)
	KindPair     = string(gate.KindPair)
)

// ErrInvalidPrefix is returned for a subject prefix that is not one or more
// plain NATS tokens.
var ErrInvalidPrefix = errors.New("events: invalid subject prefix")

// Subjects names the NATS subjects of the events under one prefix, e.g.
// "defender.attempt.failure" or "defender.block.ip". The zero value uses
// DefaultPrefix.
type Subjects struct {
	// Prefix is one or more dot-separated NATS tokens without wildcards or
	// white space; "" means DefaultPrefix.
	Prefix string
}

// Validate checks the prefix: non-empty tokens separated by dots, with no
// wildcard ('*', '>') and no white space or control character.
func (s Subjects) Validate() error {
	p := s.prefix()
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidPrefix, p)
		}
		for _, r := range tok {
			if r == '*' || r == '>' || r <= ' ' || r == 0x7f {
				return fmt.Errorf("%w: %q contains %q", ErrInvalidPrefix, p, r)
			}
		}
	}
	return nil
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Attempt is the subject of an attempt with the given result
// (ResultSuccess, ResultFailure or ResultBlocked).
func (s Subjects) Attempt(result string) string { return s.prefix() + ".attempt." + result }

// Block is the subject of a block of the given kind (KindIP, KindUsername or KindPair).
func (s Subjects) Block(kind string) string { return s.prefix() + ".block." + kind }

// Unblock is the subject of an unblock of the given kind.
func (s Subjects) Unblock(kind string) string { return s.prefix() + ".unblock." + kind }

// ObserveBlock is the subject of a would-be block of observe mode
// (Block.Observe), "<prefix>.observe.block.<kind>": outside
// "<prefix>.block.>", so that no subscriber of real blocks takes it for one.
func (s Subjects) ObserveBlock(kind string) string { return s.prefix() + ".observe.block." + kind }

// ObserveUnblock is the subject of a would-be unblock of observe mode,
// "<prefix>.observe.unblock.<kind>".
func (s Subjects) ObserveUnblock(kind string) string { return s.prefix() + ".observe.unblock." + kind }

// All is "<prefix>.>", the filter of the DEFENDER stream. It also matches
// DLQ.
func (s Subjects) All() string { return s.prefix() + ".>" }

// Attempts is "<prefix>.attempt.>", every attempt.
func (s Subjects) Attempts() string { return s.prefix() + ".attempt.>" }

// Blocks is "<prefix>.block.>", every block.
func (s Subjects) Blocks() string { return s.prefix() + ".block.>" }

// Unblocks is "<prefix>.unblock.>", every unblock.
func (s Subjects) Unblocks() string { return s.prefix() + ".unblock.>" }

// ObserveBlocks is "<prefix>.observe.block.>", every would-be block of
// observe mode.
func (s Subjects) ObserveBlocks() string { return s.prefix() + ".observe.block.>" }

// ObserveUnblocks is "<prefix>.observe.unblock.>", every would-be unblock
// of observe mode.
func (s Subjects) ObserveUnblocks() string { return s.prefix() + ".observe.unblock.>" }

// DLQ is "<prefix>.dlq", where the recorder puts messages it cannot store.
// It lies under All, so a consumer of events should filter on Events, not
// All, lest it read dead letters back.
func (s Subjects) DLQ() string { return s.prefix() + ".dlq" }

// Events lists the filters matching every event and nothing else
// (attempts, blocks, unblocks, and observe mode's would-be blocks and
// unblocks; not the DLQ), for a consumer's FilterSubjects.
func (s Subjects) Events() []string {
	return []string{s.Attempts(), s.Blocks(), s.Unblocks(), s.ObserveBlocks(), s.ObserveUnblocks()}
}
