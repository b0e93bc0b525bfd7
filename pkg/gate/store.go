package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Kind is a dimension by which failures are counted and sources blocked.
type Kind string

const (
	// KindIP counts by client address (an IPv6 client by its prefix, see
	// Config.IPv6Prefix). Subject: "203.0.113.7" or "2001:db8:1:2::/64".
	KindIP Kind = "ip"
	// KindUsername counts by normalised username. Subject: the username.
	KindUsername Kind = "username"
	// KindPair counts the (IP, username) pair, in combo mode
	// (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME). Subject: PairSubject(ip, username).
	KindPair Kind = "pair"
	// KindSpray counts the distinct usernames that fail from one source
	// (DEFENDER_SPRAY_LIMIT): password spraying. Subject: as KindIP's.
	KindSpray Kind = "spray"
	// KindSprayNet is KindSpray over a wider IPv6 network
	// (DEFENDER_SPRAY_IPV6_PREFIX, /48), so that a sprayer rotating its
	// /64s is still seen. Subject: "2001:db8:1::/48". IPv6 sources only.
	KindSprayNet Kind = "spray_net"
	// KindSprayShared is KindSpray for a source on a shared egress list
	// (carrier-grade NAT, iCloud Private Relay, Tor, the operator's lists):
	// its "block" is a report only and refuses nobody, since everyone
	// behind the address would be refused with the sprayer. Subject: as
	// KindIP's.
	KindSprayShared Kind = "spray_shared"
	// KindUsernameFamiliar counts a username's failures from the sources
	// familiar to that user (smart lockout, DEFENDER_FAMILIAR_DAYS): a
	// KindUsername block refuses only the unfamiliar sources, this one the
	// familiar ones. Subject: the username.
	KindUsernameFamiliar Kind = "username_familiar"
)

// Kinds lists every Kind, in the order decisions report them.
var Kinds = []Kind{KindIP, KindUsername, KindPair, KindSpray, KindSprayNet, KindSprayShared, KindUsernameFamiliar}

// Valid reports whether k is one of the Kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindIP, KindUsername, KindPair, KindSpray, KindSprayNet, KindSprayShared, KindUsernameFamiliar:
		return true
	}
	return false
}

// PairSubject is the subject of a KindPair counter. An IP subject never
// contains '|', so the first '|' separates the two parts unambiguously.
func PairSubject(ip, username string) string { return ip + "|" + username }

// Counter is one dimension of one attempt as the store sees it.
type Counter struct {
	Kind    Kind
	Subject string // canonical subject, never empty
	// Limit is the number of failures tolerated: the failure that takes the
	// failure count above Limit blocks the subject (django-defender's ">").
	Limit int
	// KeepOnSuccess makes a success leave the counter's failures and block
	// as they are (a Finish only removes its charge). Combo mode's IP,
	// counted alone when username lockout is disabled, is kept: one user's
	// login must not clear the count of the others behind that address.
	KeepOnSuccess bool
	// Member makes a counter of distinct members (spraying: the usernames
	// that fail from one source). Its failure count is the number of
	// distinct members that failed within the attempt cool-off (sliding:
	// each new one renews it). A failure adds Member; a member already
	// counted adds nothing, so its attempts neither refuse for saturation
	// nor are charged there (a block still refuses them); a success
	// removes Member and nothing else: it never clears the others nor
	// lifts the block (KeepOnSuccess is implied). An expired charge counts
	// as one more distinct member. "" for an ordinary counter.
	Member string
	// ReportOnly (with Member) makes a counter whose block refuses nobody:
	// the attempt is counted at once (never pending, never saturated), and
	// the count that passes the limit "blocks" the subject, a Transition
	// reported once per lockout cool-off that leaves Result.Blocked empty.
	// Spraying from a shared address is reported this way (KindSprayShared).
	ReportOnly bool
	// When makes the counter apply only when the attempt's source is
	// familiar to its user (IfFamiliar), or only when it is not
	// (IfUnfamiliar): smart lockout's two username counters. A counter
	// whose condition does not hold is neither read nor written, refuses
	// nothing and reports 0 failures. Without Op.Familiar no source is
	// familiar.
	When When
}

// When is a Counter's condition on the familiarity of the source.
type When uint8

const (
	Always       When = iota // the counter always applies
	IfFamiliar               // only for a source familiar to the user
	IfUnfamiliar             // only for a source that is not
)

// Familiar says which sources of an attempt may be familiar to its user
// (smart lockout): a source that logged in as the user within For.
type Familiar struct {
	User string // the (normalised) username whose familiar sources count
	// Sources are the attempt's: "ip:<subject>" (never a shared address)
	// and "dev:<id>" for a signed device. Empty: nothing is familiar.
	Sources []string
	// For is how long a source stays familiar after a login; Max how many
	// a user keeps, the least recent dropped first.
	For time.Duration
	Max int
	// Learn makes a success (Finish, Record) teach the Sources, once it
	// takes effect: they become familiar to User.
	Learn bool
}

// distinct reports a counter of distinct members.
func (c *Counter) distinct() bool { return c.Member != "" }

// Policy holds the timings a store applies. A store is given its policy
// when it is built, and applies it to every call; Config.Policy is the
// one a gate's store must apply, which gate.New checks.
type Policy struct {
	// AttemptCooloff is the TTL of a failure counter, renewed by every
	// failure (a sliding window). 0: failures are never forgotten.
	AttemptCooloff time.Duration
	// LockoutCooloffs is the duration of the first, second, ... lockout of
	// a subject within LockoutMemory; the last value repeats. An element of
	// 0 means that lockout never expires. Never empty.
	LockoutCooloffs []time.Duration
	// LockoutMemory is how long a subject's count of earlier lockouts is
	// kept after its latest lockout (DEFENDER_ACCESS_ATTEMPT_EXPIRATION).
	LockoutMemory time.Duration
	// PendingTimeout is how long a charged attempt (Begin) may stay
	// unfinished; after it the attempt counts as a failure.
	PendingTimeout time.Duration
}

// isZero reports a Policy with nothing set.
func (p *Policy) isZero() bool {
	return p.AttemptCooloff == 0 && len(p.LockoutCooloffs) == 0 && p.LockoutMemory == 0 && p.PendingTimeout == 0
}

// equal reports whether p and q apply the same timings.
func (p *Policy) equal(q *Policy) bool {
	return p.AttemptCooloff == q.AttemptCooloff && slices.Equal(p.LockoutCooloffs, q.LockoutCooloffs) &&
		p.LockoutMemory == q.LockoutMemory && p.PendingTimeout == q.PendingTimeout
}

// clone is p with a cool-off slice of its own: a store keeps a clone of
// the policy it is given, and hands out clones, so that no caller changes
// its timings behind its back.
func (p Policy) clone() Policy {
	p.LockoutCooloffs = slices.Clone(p.LockoutCooloffs)
	return p
}

// Op is the input of one store call: what to count, under the store's
// Policy.
type Op struct {
	Counters []Counter // one to three counters, kinds distinct (the gate sends one or two)
	// Token identifies a charged attempt: set by the caller for Begin (a
	// unique random string) and passed back unchanged to Finish. Record
	// takes one too (optional): the same Record again, with its token,
	// is the same outcome reported again, which a store that remembers
	// it (RedisStore, RedisClusterStore, for a call that made a
	// transition) does not count twice and answers with the first call's
	// transitions.
	Token string
	// Familiar (optional) decides the counters' conditions (Counter.When)
	// and, on a success, teaches the sources.
	Familiar *Familiar
}

// familiarity reports whether op has counters with a condition.
func (op *Op) conditional() bool {
	for i := range op.Counters {
		if op.Counters[i].When != Always {
			return true
		}
	}
	return false
}

// validateOp refuses an op no store can make sense of under policy p: no
// counter, a kind unknown or repeated, an empty subject, a negative limit,
// and a policy without lockout cool-offs or with a negative duration.
// Every store checks its ops with it, so all of them refuse the same ones
// (the memory store once took a negative lockout cool-off for a permanent
// block, which Redis refused); each names itself in front of the error.
func validateOp(op Op, p *Policy) error {
	if len(op.Counters) == 0 || len(op.Counters) > len(Kinds) {
		return fmt.Errorf("%d counters, want 1 to %d", len(op.Counters), len(Kinds))
	}
	for i, c := range op.Counters {
		if err := validateSubject(c.Kind, c.Subject); err != nil {
			return err
		}
		for _, before := range op.Counters[:i] {
			if before.Kind == c.Kind {
				return fmt.Errorf("kind %q twice in one op", c.Kind)
			}
		}
		if c.Limit < 0 {
			return fmt.Errorf("negative limit %d for %s", c.Limit, c.Kind)
		}
		if c.ReportOnly && c.Member == "" {
			return fmt.Errorf("report-only %s counter without a member", c.Kind)
		}
		if c.When > IfUnfamiliar || c.When != Always && c.distinct() {
			return fmt.Errorf("%s counter with condition %d", c.Kind, c.When)
		}
	}
	if f := op.Familiar; f != nil {
		switch {
		case f.User == "":
			return errors.New("familiar sources without a user")
		case f.For <= 0 || f.Max < 1:
			return fmt.Errorf("familiar sources kept %s, at most %d", f.For, f.Max)
		case slices.Contains(f.Sources, ""):
			return errors.New("empty familiar source")
		}
	}
	return p.validate()
}

// validateSubject refuses an unknown kind and an empty subject.
func validateSubject(kind Kind, subject string) error {
	if !kind.Valid() {
		return fmt.Errorf("unknown kind %q", kind)
	}
	if subject == "" {
		return fmt.Errorf("empty %s subject", kind)
	}
	return nil
}

// validate refuses a policy without lockout cool-offs or with a negative
// duration.
func (p *Policy) validate() error {
	if len(p.LockoutCooloffs) == 0 {
		return errors.New("policy without lockout cool-offs")
	}
	switch {
	case p.AttemptCooloff < 0:
		return fmt.Errorf("negative attempt cool-off %s", p.AttemptCooloff)
	case p.LockoutMemory < 0:
		return fmt.Errorf("negative lockout memory %s", p.LockoutMemory)
	case p.PendingTimeout < 0:
		return fmt.Errorf("negative pending timeout %s", p.PendingTimeout)
	}
	for _, d := range p.LockoutCooloffs {
		if d < 0 {
			return fmt.Errorf("negative lockout cool-off %s", d)
		}
	}
	return nil
}

// BlockState describes a subject that is blocked now.
type BlockState struct {
	Kind    Kind
	Subject string
	// TTL is the time left until the block ends. 0 when Permanent.
	TTL time.Duration
	// Permanent is true when the block never expires (cool-off 0).
	Permanent bool
}

// Transition is a change of a subject's blocked state caused by one store
// call. Each transition is reported by exactly one call, even when several
// processes race on the same subject: the store decides it atomically.
type Transition struct {
	Kind    Kind
	Subject string
	// Blocked is true for a new block, false for a block lifted (by a
	// successful login or an admin). Expiry is not a transition.
	Blocked bool
	// Duration of a new block; 0 when Permanent or when Blocked is false.
	Duration  time.Duration
	Permanent bool
	// Failures is the failure count that caused a block (0 for unblocks).
	Failures int
	// Lockouts is the subject's number of lockouts within
	// Policy.LockoutMemory including this one (0 for unblocks).
	Lockouts int
	// At is when the store made it, by its clock (zero when it does not
	// say). A store that can reply a call's transitions again (to the
	// same token reported again: RedisStore, RedisClusterStore) replies
	// the same At, so that the gate names both announcements alike.
	At time.Time
}

// Result is the outcome of one store call.
type Result struct {
	// Blocked lists the counters of the Op whose subject is blocked after
	// the call, in Op.Counters order. Empty when none is.
	Blocked []BlockState
	// Failures holds, per Op.Counters index, the subject's failure count
	// after the call (pending charges not included).
	Failures []int
	// Admitted is true, for Begin, when the attempt was charged and may
	// reach the password check; for Record, when its outcome was counted
	// (no counter was blocked, not even by a charge the call found
	// expired). False for the other methods.
	Admitted bool
	// Saturated (Begin only) lists the kinds whose in-flight charges
	// already fill the failure budget: the attempt was refused although no
	// block exists yet, because enough earlier attempts are still being
	// checked to block the subject if they fail.
	Saturated []Kind
	// LastChance (Begin only) is true when this attempt took the last slot
	// of some counter's budget: if it fails, that subject is blocked
	// (exactly so when attempts do not overlap).
	LastChance bool
	// Transitions made by this call.
	Transitions []Transition
	// Counted (Begin, optional) holds, per Op.Counters index, true where
	// the admitted attempt was counted as a failure at once: its failure
	// needs no Finish there (the gate sends none when every counter says
	// so), and a success clears it. False where the attempt is pending
	// (its failure would block: the last chance), which Finish settles.
	// Nil when not admitted, or when the store charges every attempt as
	// pending.
	Counted []bool
	// Lockouts (Begin, optional) holds, per Op.Counters index, the number
	// of lockouts of the subject within Policy.LockoutMemory so far, which
	// selects the next lockout cool-off; -1 where the store did not read
	// it (it does for a last chance). Nil when the store does not say;
	// the first cool-off is assumed then.
	Lockouts []int
	// Familiar is true when the op's sources were familiar to its user:
	// the counters IfFamiliar applied, those IfUnfamiliar did not.
	Familiar bool
	// Pending (Begin, optional) holds, per Op.Counters index, the number
	// of charges pending on the subject after the call, this attempt's
	// included if it was admitted. The gate's local limiter forgets, by
	// it, attempts whose outcome another gate instance settled. Nil when
	// the store does not say.
	Pending []int
}

// Store keeps failure counters, in-flight charges and blocks. Every method
// is one atomic operation and, for a networked store, one round trip (a
// store may take a second one where its fast path leaves an attempt to
// its full rules: RedisStore does to settle a charge that expired). Implementations
// must be safe for concurrent use. package storetest is the whole
// specification, docs/DESIGN.md says how another database would meet it.
//
// A store applies the Policy it was built with. Check, Begin, Finish and
// Record return an error, and change nothing, for an op without counters,
// with a kind unknown or repeated, an empty subject or a negative limit,
// and every one of them does in a store whose policy has no lockout
// cool-off or a negative duration.
type Store interface {
	// Policy returns the policy the store applies. gate.New refuses a
	// store whose policy is not its configuration's (Config.Policy): the
	// gate's local limiter and its replays of outcomes apply the
	// configuration's, which must be the store's.
	Policy() Policy

	// Check reports blocks and failure counts. It writes nothing.
	Check(ctx context.Context, op Op) (Result, error)

	// Begin refuses the attempt if any counter's subject is blocked
	// (Result.Blocked) or saturated (Result.Saturated), counting nothing.
	// Otherwise it charges the attempt on every counter and sets Admitted.
	// A counter is saturated when
	//   min(failures, Limit) + pending >= Limit + 1
	// so at most Limit+1 attempts are ever admitted before a block, and
	// after a block expires with failures still above Limit, exactly one
	// attempt at a time is admitted (django-defender's "next failure
	// re-blocks").
	//
	// A charge is one of two kinds, per counter. Where the attempt's
	// failure would take the count above Limit (min(failures, Limit) +
	// pending + 1 == Limit + 1: the last chance, Result.LastChance), it is
	// op.Token pending: Finish counts its failure, which blocks, so no
	// block is ever announced for an attempt that then succeeds. Elsewhere
	// a store may count the attempt as a failure at once (Result.Counted):
	// its failure then needs no Finish, and a success clears it with the
	// rest of the counter. A store that keeps every charge pending (no
	// Counted) meets the contract too; the gate then sends every outcome.
	//
	// Pending charges older than Policy.PendingTimeout are turned into
	// failures (they may block) by the next Begin, Finish or Record that
	// meets them.
	Begin(ctx context.Context, op Op) (Result, error)

	// Finish settles the outcome of an attempt Begin charged with the same
	// op, once: a token reported again (on this gate or another one
	// sharing the store) changes nothing, whichever outcome it reports
	// (RedisStore and RedisClusterStore answer it with the transitions
	// the first report made, same At: a gate that gave up waiting for
	// that answer replays the outcome, and announces them then).
	// Where op.Token is pending, a failure removes it and counts one (the
	// failure that takes a count above its Limit blocks that subject for
	// the next lockout cool-off; a subject already blocked stays as it
	// is); where Begin counted the attempt, a failure is counted already.
	// A success clears the counter's failures (this attempt's charge and
	// those of attempts still in flight among them) and lifts its block
	// (a Transition for each), except on a counter with KeepOnSuccess,
	// where it only removes this attempt's charge. A charge expired into a
	// failure stays one: a success reported after it lifts nothing.
	//
	// The token must come from Begin (the gate service signs its tokens):
	// a store that counts at Begin does not remember every token, so a
	// success with a token it never charged may clear.
	Finish(ctx context.Context, op Op, success bool) (Result, error)

	// Record is django-defender's one-call flow for an attempt whose
	// outcome is known: if any counter is blocked it returns the blocks and
	// counts nothing; otherwise it acts as Finish on a fresh charge and sets
	// Admitted. op.Token is optional (see Op.Token).
	Record(ctx context.Context, op Op, success bool) (Result, error)

	// Block blocks a subject by hand for d (0: permanent), replacing any
	// current block of it. The Transition has Blocked true if the subject
	// was not blocked before; otherwise it is nil.
	Block(ctx context.Context, kind Kind, subject string, d time.Duration) (*Transition, error)

	// Unblock lifts a subject's block and forgets its failures, pending
	// charges and lockout history. The Transition is nil if no block existed.
	Unblock(ctx context.Context, kind Kind, subject string) (*Transition, error)

	// Blocked lists the subjects of one kind blocked now, at most limit
	// (limit <= 0: all). Its cost grows with the number of blocked
	// subjects, never with the size of the store.
	Blocked(ctx context.Context, kind Kind, limit int) ([]BlockState, error)
}

// ErrStoreUnavailable wraps every error of a store that could not be
// reached in time; Config.FailMode decides what the gate does then.
var ErrStoreUnavailable = errors.New("gate: store unavailable")
