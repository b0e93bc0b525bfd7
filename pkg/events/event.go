// Package events is the gate's voice: the attempt, block and unblock events
// it publishes on NATS JetStream, their JSON wire form, the subject names,
// a publisher that never makes a login wait, and helpers to subscribe.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/defender-go/defender/pkg/gate"
)

// Version is the wire-format version written in every event ("v").
const Version = 1

// Type says what an event is; it matches the subject's second part.
type Type string

const (
	TypeAttempt Type = "attempt" // an Attempt, on <prefix>.attempt.<result>
	TypeBlock   Type = "block"   // a Block, on <prefix>.block.<kind>
	TypeUnblock Type = "unblock" // a Block that lifts one, on <prefix>.unblock.<kind>
)

// Attempt is one login attempt, refused ones included.
type Attempt struct {
	V         int       `json:"v"`
	Type      Type      `json:"type"` // always TypeAttempt
	ID        string    `json:"id"`   // UUIDv7; a retried publish may store a second copy with the same id
	Time      time.Time `json:"time"`
	IP        string    `json:"ip"`
	Username  string    `json:"username"`
	Result    string    `json:"result"`               // success | failure | blocked
	BlockedBy []string  `json:"blocked_by,omitempty"` // kinds that refused (Observe: would have): any gate.Kind
	Path      string    `json:"path,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Gate      string    `json:"gate,omitempty"` // instance that decided
	// Counters after the attempt (0 when that kind was not counted).
	IPFailures       int `json:"ip_failures"`
	UsernameFailures int `json:"username_failures"`
	PairFailures     int `json:"pair_failures"`
	// Degraded is true when the gate's local limiter decided, its store
	// not answering in time (DEFENDER_FAIL_MODE=local); the counters are
	// then that gate process's.
	Degraded bool `json:"degraded,omitempty"`
	// Observe is true when the gate ran in observe mode
	// (DEFENDER_MODE=observe): the attempt was let through whatever the
	// decision, and Result "blocked" means it would have been refused.
	Observe bool `json:"observe,omitempty"`
	// Shared names the shared egress list the address is on (carrier-grade
	// NAT "cgnat", "icloud-relay", "tor", or an operator list's name); ""
	// when it is on none.
	Shared string `json:"shared,omitempty"`
	// Familiar is true when the source had logged in as this user before
	// (smart lockout): the attempt counted on the user's
	// username_familiar counter.
	Familiar bool `json:"familiar,omitempty"`
}

// Block is a block or an unblock of one subject.
type Block struct {
	V       int       `json:"v"`
	Type    Type      `json:"type"` // TypeBlock or TypeUnblock
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // one of gate.Kinds (ValidKind): ip, username, pair, spray, ...
	Subject string    `json:"subject"`
	// Until is when a block ends; nil for a permanent block and for unblocks.
	Until     *time.Time `json:"until,omitempty"`
	Permanent bool       `json:"permanent"`
	Failures  int        `json:"failures"`
	Reason    string     `json:"reason"` // auto | admin | blacklist | user (an unblock by the user, from the notifier's mail)
	// IP is the address of the attempt whose failure made the block (or
	// whose success lifted it), what a notification says it came from;
	// absent for an admin's, the blacklist's and the user's.
	IP   string `json:"ip,omitempty"`
	Gate string `json:"gate,omitempty"`
	// Local is true for a block the gate's local limiter decided while its
	// store did not answer: it refuses in that gate process (Gate) only.
	// If the store blocks the subject too once it learns the failures,
	// that is another block event, without Local.
	Local bool `json:"local,omitempty"`
	// Observe is true for a would-be block or unblock of observe mode
	// (DEFENDER_MODE=observe): counted as enforce mode would, it refuses
	// nobody. Such events are published on subjects of their own
	// (Subjects.ObserveBlock), never on <prefix>.block.>.
	Observe bool `json:"observe,omitempty"`
}

// ValidKind reports whether k is a kind of block events may carry, in
// Block.Kind and Attempt.BlockedBy: one of gate.Kinds.
func ValidKind(k string) bool { return gate.Kind(k).Valid() }

// ErrMalformed is wrapped by every decode error.
var ErrMalformed = errors.New("events: malformed event")

// Validate checks an attempt's fields.
func (a *Attempt) Validate() error {
	switch {
	case a.V != Version:
		return fmt.Errorf("%w: version %d, want %d", ErrMalformed, a.V, Version)
	case a.Type != TypeAttempt:
		return fmt.Errorf("%w: type %q, want %q", ErrMalformed, a.Type, TypeAttempt)
	case a.ID == "":
		return fmt.Errorf("%w: missing id", ErrMalformed)
	case a.Time.IsZero():
		return fmt.Errorf("%w: missing time", ErrMalformed)
	case a.Result != "success" && a.Result != "failure" && a.Result != "blocked":
		return fmt.Errorf("%w: result %q", ErrMalformed, a.Result)
	}
	for _, k := range a.BlockedBy {
		if !ValidKind(k) {
			return fmt.Errorf("%w: blocked_by kind %q", ErrMalformed, k)
		}
	}
	return nil
}

// Validate checks a block or unblock event's fields.
func (b *Block) Validate() error {
	switch {
	case b.V != Version:
		return fmt.Errorf("%w: version %d, want %d", ErrMalformed, b.V, Version)
	case b.Type != TypeBlock && b.Type != TypeUnblock:
		return fmt.Errorf("%w: type %q", ErrMalformed, b.Type)
	case b.ID == "":
		return fmt.Errorf("%w: missing id", ErrMalformed)
	case b.Time.IsZero():
		return fmt.Errorf("%w: missing time", ErrMalformed)
	case !ValidKind(b.Kind):
		return fmt.Errorf("%w: kind %q", ErrMalformed, b.Kind)
	case b.Subject == "":
		return fmt.Errorf("%w: missing subject", ErrMalformed)
	case b.IP != "" && !validIP(b.IP):
		return fmt.Errorf("%w: ip %q is not an address", ErrMalformed, b.IP)
	}
	return nil
}

// validIP reports a textual IP address (IPv4, IPv6, no zone).
func validIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// DecodeAttempt parses and validates an attempt event.
func DecodeAttempt(data []byte) (Attempt, error) {
	var a Attempt
	if err := json.Unmarshal(data, &a); err != nil {
		return Attempt{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(a.BlockedBy) == 0 {
		a.BlockedBy = nil // as omitempty writes it
	}
	return a, a.Validate()
}

// DecodeBlock parses and validates a block or unblock event.
func DecodeBlock(data []byte) (Block, error) {
	var b Block
	if err := json.Unmarshal(data, &b); err != nil {
		return Block{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return b, b.Validate()
}
