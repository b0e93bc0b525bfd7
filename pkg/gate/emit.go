package gate

import (
	"time"

	"github.com/google/uuid"
)

// Outcome is the result of one attempt as reported in events.
type Outcome string

const (
	OutcomeSuccess Outcome = "success" // the password check passed
	OutcomeFailure Outcome = "failure" // the password check failed
	OutcomeBlocked Outcome = "blocked" // refused before the password check
)

// AttemptRecord describes one finished attempt, refused ones included.
type AttemptRecord struct {
	Time      time.Time
	IP        string // the client address, canonical, full (not the /64)
	Username  string // as the client sent it, trimmed and capped (not case-folded)
	Outcome   Outcome
	BlockedBy []Kind // for OutcomeBlocked, and for the failure that blocked
	Path      string
	UserAgent string
	// Failures after the attempt per kind (absent kinds were not counted).
	IPFailures, UsernameFailures, PairFailures int
	// Degraded says the gate's local limiter decided: the store did not
	// answer in time (see FailLocal).
	Degraded bool
	// Observe says the gate runs in observe mode (DEFENDER_MODE=observe):
	// the attempt was let through whatever the decision, and Outcome
	// OutcomeBlocked means it would have been refused.
	Observe bool
	// Shared names the shared egress list the address is on ("" none):
	// the address itself is never blocked, its (IP, username) pairs are.
	Shared string
	// Familiar says the source (address or signed device) had logged in as
	// this user before (smart lockout): it was counted on the user's
	// familiar counter, KindUsernameFamiliar.
	Familiar bool
}

// Reason says why a block or unblock happened.
type Reason string

const (
	ReasonAuto      Reason = "auto"      // too many failures, or a successful login lifted it
	ReasonAdmin     Reason = "admin"     // an operator blocked or unblocked by hand
	ReasonBlacklist Reason = "blacklist" // the IP is in DEFENDER_IP_BLACKLIST
	ReasonUser      Reason = "user"      // the user lifted their username's block (the notifier's mail)
)

// TransitionRecord is a block or unblock of one subject.
type TransitionRecord struct {
	// ID names the event, when the gate names it (zero: the emitter
	// gives it a new id): a block the store made for a call whose answer
	// came too late is announced when the gate replays the call, and a
	// call can be announced twice (the same outcome reported again), each
	// time under this same id, which subscribers take once (JetStream's
	// duplicate window, the recorder, the notifier).
	ID        uuid.UUID
	Time      time.Time
	Kind      Kind
	Subject   string
	Blocked   bool      // true: block; false: unblock
	Until     time.Time // when a block ends; zero when Permanent or unblock
	Permanent bool
	Failures  int
	Reason    Reason
	// IP is the address of the attempt whose failure made the block (or
	// whose success lifted it): what a notification says it came from.
	// Empty for an admin's and the blacklist's.
	IP string
	// Local marks a block the gate's local limiter decided while its store
	// did not answer: it refuses in that gate process only, and the store
	// blocks too once it learns the failures (a second, store block).
	Local bool
	// Observe marks a would-be block or unblock of observe mode
	// (DEFENDER_MODE=observe): counted as enforce would, refusing nobody.
	// It is published on subjects of its own (<prefix>.observe.block.<kind>)
	// so that no subscriber of <prefix>.block.> takes it for a real one.
	Observe bool
}

// Emitter receives what the gate decided, for publication elsewhere (see
// package events). Both methods are called on the login path: they must
// return at once and never block.
type Emitter interface {
	EmitAttempt(AttemptRecord)
	EmitTransition(TransitionRecord)
}

// Hooks are callbacks fired once per transition, like django-defender's
// ip_block / username_block / ip_unblock / username_unblock signals. They run
// on the goroutine that made the transition: keep them short.
type Hooks struct {
	OnBlock   func(TransitionRecord)
	OnUnblock func(TransitionRecord)
}
