package gate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"html/template"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Attempt is what the gate knows of one login attempt.
type Attempt struct {
	IP        netip.Addr // client address; invalid means unknown (not counted by IP)
	Username  string     // as typed; normalised by the gate; empty is never counted
	Path      string     // for events only
	UserAgent string     // for events only
	// Device is the token of the browser or app install (Gate.NewDevice),
	// a source familiar to the users it logged in as (smart lockout); ""
	// or a token not signed with the gate's device key is none.
	Device string
}

// Decision is the gate's answer. A refused attempt is a Decision, not an error.
type Decision struct {
	// Allowed is true when the attempt may go on (to the password check,
	// or, after a failure, when the source is not blocked now).
	Allowed bool
	// BlockedBy lists why a refused attempt was refused.
	BlockedBy []Kind
	// RetryAfter is when the source may try again; 0 when Permanent or
	// unknown.
	RetryAfter time.Duration
	// Permanent is true when the block never expires: only an admin lifts
	// it (or the success of an attempt admitted before the block began).
	Permanent bool
	// Reason is ReasonBlacklist for blacklisted addresses, else ReasonAuto.
	Reason Reason
	// LastChance (Begin) is true when a failure of this attempt blocks.
	LastChance bool
	// Degraded is true when the store did not answer in time and the
	// gate's local limiter decided (FailLocal): the decision holds for this
	// process's view (see FailLocal), refusals included.
	Degraded bool
	// Unavailable is true when the store did not answer in time and
	// FailClosed refused the attempt (answer 503, not a lockout).
	Unavailable bool
	// Err is the store error behind a Degraded or Unavailable decision.
	Err error
	// Familiar is true when smart lockout found the source (address or
	// device) familiar to the user: its familiar counter decided.
	Familiar bool
	// Observed is true in observe mode (DEFENDER_MODE=observe) for an
	// attempt let through that enforce mode would have refused: BlockedBy,
	// RetryAfter and Permanent say why and for how long, Allowed is true.
	Observed bool
	// Failures after the call, per counted kind.
	IPFailures, UsernameFailures, PairFailures int
}

// Option configures a Gate.
type Option func(*Gate)

// WithEmitter hands attempt and block events to e (see package events).
func WithEmitter(e Emitter) Option { return func(g *Gate) { g.emit = e } }

// WithHooks installs block and unblock callbacks.
func WithHooks(h Hooks) Option { return func(g *Gate) { g.hooks = h } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(g *Gate) { g.log = l } }

// WithRegisterer registers the gate's Prometheus metrics with reg.
func WithRegisterer(reg prometheus.Registerer) Option { return func(g *Gate) { g.reg = reg } }

// ErrSettled is the Err of a Decision returned for a ticket settled twice.
var ErrSettled = errors.New("gate: ticket already settled")

// Gate decides login attempts. It is safe for concurrent use; create one per
// process and Close it at shutdown.
type Gate struct {
	cfg     Config
	policy  Policy
	store   Store
	emit    Emitter
	hooks   Hooks
	log     *slog.Logger
	reg     prometheus.Registerer
	m       *metrics
	ips     ipResolver
	userWL  map[string]struct{}
	lockout *template.Template
	shared  SharedLists
	// deviceKey signs device tokens (DEFENDER_DEVICE_KEY).
	deviceKey []byte

	// adm bounds the store calls in flight; nil for a MemoryStore, which
	// answers at once.
	adm *admission
	// local decides when the store is late (FailLocal); nil with
	// FailClosed or a MemoryStore. See local.go.
	local *MemoryStore
	// backlog holds the outcomes the store could not take, replayed by
	// drainLoop once it answers (not with a MemoryStore).
	backlog     backlog
	drainCtx    context.Context // canceled by Close: the drain loop stops
	stopDrain   context.CancelFunc
	drainDone   chan struct{}
	drainClosed atomic.Bool // no replay is written any more
	closeOnce   sync.Once
	logs        logLimits

	tokenPrefix string
	tokenSeq    atomic.Uint64

	settleMu sync.RWMutex // guards settleCh against send after close
	// settleCh holds one queue per worker; outcomes of one source go to
	// one queue, so they are written in the order they happened.
	settleCh []chan settleJob
	batcher  finishBatcher // the store, when it settles batches; else nil
	recaller storeRecaller // the store, when it keeps a late Begin's blocks; else nil
	seed     maphash.Seed
	closed   bool
	workers  sync.WaitGroup
	queued   atomic.Int64 // jobs handed to the settle queue, not yet written
}

// New returns a Gate deciding with cfg over store, which must apply
// cfg.Policy().
func New(cfg Config, store Store, opts ...Option) (*Gate, error) {
	if store == nil {
		return nil, errors.New("gate: nil store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.FailMode = cfg.FailMode.canonical()
	g := &Gate{cfg: cfg, policy: cfg.Policy(), store: store, log: slog.Default(), ips: newIPResolver(&cfg),
		shared: cgnatList{}}
	if p := store.Policy(); !p.equal(&g.policy) {
		// The local limiter and the replays apply the configuration's
		// timings: a store applying others would block for other lengths.
		return nil, fmt.Errorf("gate: the store applies the policy %+v, the configuration %+v: build the store with cfg.Policy()", p, g.policy)
	}
	g.logs.init()
	g.deviceKey = cfg.DeviceKey
	if len(g.deviceKey) == 0 {
		g.deviceKey = make([]byte, 32)
		_, _ = rand.Read(g.deviceKey)
	}
	g.batcher, _ = store.(finishBatcher)
	g.recaller, _ = store.(storeRecaller)
	for _, o := range opts {
		o(g)
	}
	if _, inMemory := store.(*MemoryStore); !inMemory {
		n := cfg.StoreMaxInFlight
		if n == 0 {
			n = 8 * runtime.GOMAXPROCS(0)
		}
		g.adm = newAdmission(n)
		if cfg.FailMode == FailLocal {
			g.local = NewMemoryStore(MemoryOptions{MaxEntries: cfg.MemoryMaxEntries, MaxBytes: cfg.MemoryMaxBytes, Policy: g.policy})
			g.local.keepLocal = true
		}
		g.backlog.wake = make(chan struct{}, 1)
		g.drainCtx, g.stopDrain = context.WithCancel(context.Background())
		g.drainDone = make(chan struct{})
		go g.drainLoop()
	}
	g.m = newMetrics(g.reg, g)
	if cfg.BehindReverseProxy && len(cfg.TrustedProxies) == 0 {
		g.log.Warn("DEFENDER_BEHIND_REVERSE_PROXY is on without DEFENDER_TRUSTED_PROXIES: every client's "+
			cfg.ReverseProxyHeader+" is believed, so a client that sends a new address with each guess is never "+
			"blocked by IP; set DEFENDER_TRUSTED_PROXIES to the proxies' addresses",
			"header", cfg.ReverseProxyHeader)
	}
	g.userWL = make(map[string]struct{}, len(cfg.UsernameWhitelist))
	for _, u := range cfg.UsernameWhitelist {
		g.userWL[NormalizeUsername(u, cfg.MaxUsernameLength)] = struct{}{}
	}
	if cfg.LockoutTemplate != "" {
		t, err := template.ParseFiles(cfg.LockoutTemplate)
		if err != nil {
			return nil, fmt.Errorf("DEFENDER_LOCKOUT_TEMPLATE: %w", err)
		}
		g.lockout = t
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	g.tokenPrefix = hex.EncodeToString(b[:]) + "-"
	g.seed = maphash.MakeSeed()
	for range settleWorkers {
		ch := make(chan settleJob, settleQueue)
		g.settleCh = append(g.settleCh, ch)
		g.workers.Add(1)
		go g.settleLoop(ch)
	}
	return g, nil
}

// Config returns the gate's configuration.
func (g *Gate) Config() Config { return g.cfg }

// Close stops the background work after writing what is queued: the
// outcomes handed to FinishAsync, then those the store could not take
// yet, until ctx ends. What is left then is lost: the store turns its
// charges into failures after DEFENDER_PENDING_TIMEOUT.
func (g *Gate) Close(ctx context.Context) error {
	err := errors.New("gate close: already closed")
	g.closeOnce.Do(func() { err = g.close(ctx) })
	return err
}

func (g *Gate) close(ctx context.Context) error {
	g.settleMu.Lock()
	g.closed = true
	for _, ch := range g.settleCh {
		close(ch)
	}
	g.settleMu.Unlock()
	done := make(chan struct{})
	go func() { g.workers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("gate close: outcomes still being written: %w", ctx.Err())
	}
	if g.stopDrain != nil {
		// The loop stops between two replays; what is left is written
		// here, until ctx ends.
		g.stopDrain()
		select {
		case <-g.drainDone:
		case <-ctx.Done():
		}
		for err == nil && g.backlog.len() > 0 && ctx.Err() == nil {
			if g.drainBatch(ctx) != nil {
				break
			}
		}
		g.drainClosed.Store(true)
		if n := g.backlog.len(); n > 0 {
			g.log.Error("gate closed with outcomes its store never took", "outcomes", n)
			err = errors.Join(err, fmt.Errorf("gate close: %d outcomes not written to the store", n))
		}
	}
	if g.local != nil {
		g.local.Close()
	}
	return err
}

// identity is an attempt reduced to what the store counts.
type identity struct {
	ip          string // canonical full address, for events
	ipSubject   string
	username    string // normalised
	blacklisted bool
	shared      string   // the shared egress list the address is on, if any
	familiar    Familiar // smart lockout's sources, when the username is counted
	// counters: the address's or the pair's, the username's, those of
	// distinct members (spraying), then those the local limiter does not
	// keep (see localOp): a report-only one, the familiar username's.
	counters [5]Counter // at most: ip, username, spray, spray_net, username_familiar
	n        int
}

// identify applies the configuration: which kinds count this attempt.
// (The result is named: complete, deferred, completes it.)
func (g *Gate) identify(a Attempt) (id identity) {
	c := &g.cfg
	id.username = NormalizeUsername(a.Username, c.MaxUsernameLength)
	hasIP := a.IP.IsValid()
	if hasIP {
		ip := a.IP.Unmap().WithZone("")
		id.ip = ip.String()
		id.ipSubject = id.ip
		if ip.Is6() {
			id.ipSubject = ipSubject(ip, c.IPv6Prefix)
		}
		if listed(c.IPBlacklist, ip) {
			id.blacklisted = true
			return id
		}
		if listed(c.IPWhitelist, ip) {
			hasIP = false
		}
	}
	hasUser := id.username != ""
	if _, ok := g.userWL[id.username]; ok && hasUser {
		hasUser = false
	}
	countIP := hasIP && !c.DisableIPLockout
	countUser := hasUser && !c.DisableUsernameLockout
	if hasIP {
		id.shared, _ = g.shared.Lookup(a.IP.Unmap())
	}
	defer id.complete(c, a.IP, hasIP && hasUser)
	if c.countsPairs() || id.shared != "" && countIP {
		// A shared address (carrier-grade NAT, a relay, Tor) is never
		// blocked whole: its (IP, username) pairs are counted instead.
		if hasIP && hasUser {
			id.counters[0] = Counter{Kind: KindPair, Subject: PairSubject(id.ipSubject, id.username), Limit: c.FailureLimit}
			id.n = 1
		}
		if !c.countsPairs() && countUser {
			id.countUser(c, g.sources(&id, a))
		}
		return id
	}
	if countIP {
		// In combo mode (the username side disabled) a success never
		// clears the IP, as in django-defender.
		id.counters[id.n] = Counter{Kind: KindIP, Subject: id.ipSubject, Limit: c.IPFailureLimit,
			KeepOnSuccess: c.LockOutByIPAndUsername}
		id.n++
	}
	if countUser {
		id.countUser(c, g.sources(&id, a))
	}
	return id
}

// countUser adds the username's counter, or with smart lockout
// (DEFENDER_FAMILIAR_DAYS) its two: the unfamiliar sources' (KindUsername,
// whose block refuses them only) and the familiar sources' (the store
// applies the one the attempt's sources call for).
func (id *identity) countUser(c *Config, sources []string) {
	if !c.SmartLockout {
		id.counters[id.n] = Counter{Kind: KindUsername, Subject: id.username, Limit: c.UsernameFailureLimit}
		id.n++
		return
	}
	id.counters[id.n] = Counter{Kind: KindUsername, Subject: id.username, Limit: c.UsernameFailureLimit, When: IfUnfamiliar}
	id.n++
	id.familiar = Familiar{User: id.username, Sources: sources, For: c.FamiliarFor, Max: c.FamiliarMax, Learn: true}
}

// complete adds, after the counters identify chose, those of spraying,
// then the familiar username's (smart lockout), last: the local limiter
// keeps the counters before it.
func (id *identity) complete(c *Config, addr netip.Addr, counted bool) {
	id.countSpraying(c, addr, counted)
	if id.familiar.User != "" {
		id.counters[id.n] = Counter{Kind: KindUsernameFamiliar, Subject: id.username, Limit: c.UsernameFailureLimit, When: IfFamiliar}
		id.n++
	}
}

// sources are the attempt's sources that may be familiar to its user: its
// address (never a shared one: everyone behind it would share the user's
// familiarity) and its signed device.
func (g *Gate) sources(id *identity, a Attempt) []string {
	if !g.cfg.SmartLockout {
		return nil
	}
	var s []string
	if id.ipSubject != "" && id.shared == "" {
		s = append(s, "ip:"+id.ipSubject)
	}
	if dev, ok := g.deviceID(a.Device); ok {
		s = append(s, deviceSource(dev))
	}
	return s
}

// countSpraying adds the counters of distinct usernames failing from the
// source (DEFENDER_SPRAY_LIMIT), in every lockout mode: the source, and
// for IPv6 its wider network (DEFENDER_SPRAY_IPV6_PREFIX). A source on a
// shared list is reported, never blocked (KindSprayShared).
func (id *identity) countSpraying(c *Config, addr netip.Addr, counted bool) {
	if !counted || c.SprayLimit == 0 {
		return
	}
	if id.shared != "" {
		id.counters[id.n] = Counter{Kind: KindSprayShared, Subject: id.ipSubject, Limit: c.SprayLimit,
			Member: id.username, ReportOnly: true}
		id.n++
		return
	}
	id.counters[id.n] = Counter{Kind: KindSpray, Subject: id.ipSubject, Limit: c.SprayLimit, Member: id.username}
	id.n++
	if ip := unNAT64(addr.Unmap()); ip.Is6() && c.SprayIPv6Prefix < c.IPv6Prefix {
		id.counters[id.n] = Counter{Kind: KindSprayNet, Subject: ipSubject(ip, c.SprayIPv6Prefix),
			Limit: c.SprayNetLimit, Member: id.username}
		id.n++
	}
}

func (id *identity) op(token string) Op {
	op := Op{Counters: id.counters[:id.n], Token: token}
	if id.familiar.User != "" {
		op.Familiar = &id.familiar
	}
	return op
}

// localOp is op without the counters the local limiter does not keep,
// last in op: a report-only one (it refuses nobody), and the familiar
// username's. The limiter knows no familiar sources: without them every
// source is unfamiliar, so a user whose unfamiliar counter is blocked is
// refused from every source while the store is away. It counts
// spraying: the names it saw fail from a source, over the store's count
// (see MemoryStore.sync).
func localOp(op Op) Op {
	op.Familiar = nil
	for i := range op.Counters {
		if op.Counters[i].ReportOnly || op.Counters[i].When == IfFamiliar {
			op.Counters = op.Counters[:i]
			break
		}
	}
	return op
}

// storeOp names the store method a call runs (and its metrics).
type storeOp int

const (
	opCheck storeOp = iota
	opBegin
	opFinish
	opRecord
	opRecall // a late Begin's blocks, asked afterwards (storeRecaller)
	numStoreOps
)

var storeOpNames = [numStoreOps]string{"check", "begin", "finish", "record", "recall"}

// errOverloaded is why a call was not sent: the calls in flight would not
// let it start before its deadline.
var errOverloaded = errors.New("too many store calls in flight to start before the deadline")

// call runs one store operation for a login, under the store deadline,
// after its turn among the calls in flight (admission). (A switch rather
// than a closure: the login path allocates nothing for it.)
//
// The caller's deadline bounds the call, but its cancellation does not
// cut it short: net/http cancels a request's context when the client
// half-closes its connection, and a call failed by that would be taken
// for a store outage, letting the client choose when the store is
// "down". The call, its wait included, ends within StoreTimeout.
func (g *Gate) call(ctx context.Context, name storeOp, op Op, success bool) (Result, error) {
	return g.exec(ctx, name, op, success, true)
}

// exec is call, with admission (a login waits) or without (the gate's
// background work, bounded by its own few goroutines).
func (g *Gate) exec(ctx context.Context, name storeOp, op Op, success, admit bool) (Result, error) {
	timeout := g.cfg.StoreTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	start := time.Now()
	deadline := start.Add(timeout)
	if admit && g.adm != nil && !g.adm.acquire(deadline) {
		g.m.rejected[name].Inc()
		g.m.opWait[name].Observe(time.Since(start).Seconds())
		return Result{}, fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, storeOpNames[name], errOverloaded)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	sent := time.Now()
	var (
		res Result
		err error
	)
	switch name {
	case opCheck:
		res, err = g.store.Check(ctx, op)
	case opBegin:
		res, err = g.store.Begin(ctx, op)
	case opFinish:
		res, err = g.store.Finish(ctx, op, success)
	case opRecord:
		res, err = g.store.Record(ctx, op, success)
	case opRecall:
		res, err = g.recaller.recall(ctx, op)
	}
	cancel()
	took := time.Since(sent)
	if admit && g.adm != nil {
		g.adm.release(took)
	}
	g.m.opDuration[name].Observe(took.Seconds())
	if admit {
		g.m.opWait[name].Observe(time.Since(start).Seconds())
	}
	if err != nil {
		g.m.opErrors[name].Inc()
		return res, fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, storeOpNames[name], err)
	}
	return res, nil
}

// syncLocal copies a store answer to op into the local limiter, and
// publishes the blocks it made there.
func (g *Gate) syncLocal(op Op, a storeAnswer, ip string) {
	g.transitions(g.local.sync(localOp(op), a), ReasonAuto, true, ip, "")
}

// degraded counts a decision taken without the store, and warns (at most
// once per logInterval). It returns the refusal of FailClosed (closed
// true), or closed false when the local limiter decides (FailLocal).
func (g *Gate) degraded(err error) (refusal Decision, closed bool) {
	g.m.degraded[g.cfg.FailMode].Inc()
	g.logs.storeLate.Do(func() {
		g.log.Warn("gate store did not answer in time; deciding by the fail mode (counted in defender_gate_degraded_total)",
			"fail_mode", string(g.cfg.FailMode), "err", err)
	})
	if g.local == nil {
		return Decision{Unavailable: true, Err: err, Reason: ReasonAuto}, true
	}
	return Decision{}, false
}

// decide turns a store result into a decision.
func decide(id *identity, res *Result) Decision {
	d := Decision{Allowed: len(res.Blocked) == 0 && len(res.Saturated) == 0, Reason: ReasonAuto, LastChance: res.LastChance,
		Familiar: res.Familiar}
	for i := 0; i < id.n && i < len(res.Failures); i++ {
		switch id.counters[i].Kind {
		case KindIP:
			d.IPFailures = res.Failures[i]
		case KindUsername, KindUsernameFamiliar: // the one that applied; the other is 0
			d.UsernameFailures += res.Failures[i]
		case KindPair:
			d.PairFailures = res.Failures[i]
		}
	}
	for _, b := range res.Blocked {
		d.BlockedBy = append(d.BlockedBy, b.Kind)
		if b.Permanent {
			d.Permanent = true
		} else if ttl := max(b.TTL, time.Millisecond); ttl > d.RetryAfter {
			// A block read in its last millisecond (Redis PTTL 0) still
			// ends: RetryAfter 0 would read as "never" (retry_after 0).
			d.RetryAfter = ttl
		}
	}
	for _, k := range res.Saturated {
		d.BlockedBy = append(d.BlockedBy, k)
		if d.RetryAfter < time.Second {
			d.RetryAfter = time.Second // attempts in flight decide soon
		}
	}
	if d.Permanent {
		d.RetryAfter = 0
	}
	return d
}

// decideLocally is decide for a result of the local limiter, made
// because the store failed with err: its blocks are published as local.
func (g *Gate) decideLocally(id *identity, res *Result, err error) Decision {
	g.transitions(res.Transitions, ReasonAuto, true, id.ip, "")
	d := decide(id, res)
	d.Degraded, d.Err = true, err
	return d
}

var blacklisted = Decision{BlockedBy: []Kind{KindIP}, Permanent: true, Reason: ReasonBlacklist}

// Check tells whether an attempt would be refused now. It counts nothing
// and publishes nothing: use it to guard pages such as the login form.
func (g *Gate) Check(ctx context.Context, a Attempt) Decision {
	return g.observe(g.check(ctx, a))
}

// observe lets a refused attempt through in observe mode, saying so.
func (g *Gate) observe(d Decision) Decision {
	if g.cfg.Mode == ModeObserve && !d.Allowed && d.Err != ErrSettled {
		d.Allowed, d.Observed, d.Unavailable = true, true, false
		g.m.observed.Inc()
	}
	return d
}

func (g *Gate) check(ctx context.Context, a Attempt) Decision {
	id := g.identify(a)
	if id.blacklisted {
		return blacklisted
	}
	if id.n == 0 {
		return Decision{Allowed: true}
	}
	op := id.op("")
	sent := time.Now().UnixNano()
	res, err := g.call(ctx, opCheck, op, false)
	if err != nil {
		if d, closed := g.degraded(err); closed {
			return d
		}
		res, _ = g.local.Check(ctx, localOp(op)) // a valid op: a memory store does not fail
		return g.decideLocally(&id, &res, err)
	}
	if g.local != nil {
		g.syncLocal(op, storeAnswer{res: &res, sent: sent}, id.ip)
	}
	return decide(&id, &res)
}

// charged says where a Ticket's attempt is charged.
type charged uint8

const (
	chargedNowhere charged = iota // nothing to count, or refused
	chargedInStore                // by the store's Begin (or a resumed token)
	chargedLocally                // by the local limiter, the store being late
)

// Ticket is an attempt admitted by Begin, waiting for its outcome. Settle
// it exactly once with Finish or FinishAsync; a ticket never settled counts
// as a failure after DEFENDER_PENDING_TIMEOUT.
type Ticket struct {
	g          *Gate
	a          Attempt
	id         identity
	token      string
	lastChance bool
	where      charged
	settled    atomic.Bool
	// nextCooloff is the block a failure would start (LastChance tickets).
	nextCooloff time.Duration
	// counted says the store counted the attempt as a failure at Begin,
	// on every counter (Result.Counted): its failure needs no call, and
	// after is the state its Decision reports then (the failure counts
	// after it). begun is when Begin charged it.
	counted bool
	after   Decision
	begun   time.Time
	// refusal is the decision of an attempt observe mode let through
	// although it was refused: charged nowhere, its outcome counts nothing.
	refusal *Decision
}

// needsStore reports whether the outcome must be written to the store.
// A failure Begin counted already needs nothing more. Nor does a success
// reported after the pending timeout: its charge has turned into the
// failure it is counted as, which a late success must not undo. (Only a
// ticket of this process's Begin knows either; a resumed one is settled
// by the store, which takes each outcome once.)
func (t *Ticket) needsStore(success bool) bool {
	if t.where != chargedInStore || t.begun.IsZero() {
		return t.where == chargedInStore
	}
	if p := t.g.policy.PendingTimeout; p > 0 && time.Since(t.begun) > p {
		return false
	}
	return success || !t.counted
}

// lockoutDecision is the refusal a LastChance failure implies, before the
// store has written the block.
func (t *Ticket) lockoutDecision() Decision {
	d := Decision{Reason: ReasonAuto, RetryAfter: t.nextCooloff, Permanent: t.nextCooloff == 0}
	for i := 0; i < t.id.n; i++ {
		c := &t.id.counters[i]
		if !c.ReportOnly && (c.When == Always || (c.When == IfFamiliar) == t.after.Familiar) {
			d.BlockedBy = append(d.BlockedBy, c.Kind)
		}
	}
	return d
}

// LastChance reports whether a failure of this attempt blocks its source.
func (t *Ticket) LastChance() bool { return t.lastChance }

// Token identifies the ticket's charge in the store ("" when nothing was
// charged). With Resume it lets another process settle the attempt, as the
// gate service's two-phase API does.
func (t *Ticket) Token() string { return t.token }

// op is the store op of the ticket's attempt.
func (t *Ticket) op() Op { return t.id.op(t.token) }

// Resume rebuilds a ticket charged by Begin for the same attempt a, in this
// or another process sharing the store, so that it can be settled. The
// caller must make sure token came from Begin for a (the gate service signs
// it), and settle each attempt one way: a ticket already settled by its own
// Finish or FinishAsync must not be resumed (an ordinary failure writes no
// settled mark to the store, so a success resumed after it would clear).
// (An attempt the local limiter admitted is charged in the memory of the
// process that admitted it: settled elsewhere, it counts nothing there,
// and its charge turns into a failure in that process's limiter.)
func (g *Gate) Resume(a Attempt, token string) *Ticket {
	t := &Ticket{g: g, a: a, id: g.identify(a), token: token}
	switch {
	case token == observedToken:
		t.refusal = &Decision{Allowed: true, Observed: true, Reason: ReasonAuto}
	case token == "" || t.id.n == 0 || t.id.blacklisted:
	case strings.HasSuffix(token, localToken):
		if g.local != nil {
			t.where = chargedLocally
		}
	default:
		t.where = chargedInStore
	}
	return t
}

// localToken ends the token of an attempt the local limiter admitted.
const localToken = ".local"

// Begin is called before the password check. It refuses a blocked source
// (the Decision says why and until when; the refusal is published as a
// blocked attempt) or charges the attempt and returns its Ticket, in one
// store round trip.
//
// In observe mode a refused attempt gets a Ticket too, charged nowhere:
// the password check goes on, and its outcome counts nothing and is
// published nowhere (the attempt was published as refused, Observe).
func (g *Gate) Begin(ctx context.Context, a Attempt) (*Ticket, Decision) {
	t, d := g.begin(ctx, a)
	if t == nil && g.cfg.Mode == ModeObserve {
		d = g.observe(d)
		t = &Ticket{g: g, a: a, token: observedToken, refusal: &d}
	}
	return t, d
}

// observedToken is the Token of a ticket observe mode let through
// although it was refused: Resume rebuilds it, charged nowhere, so that
// its outcome counts nothing and is published nowhere.
const observedToken = "observed"

func (g *Gate) begin(ctx context.Context, a Attempt) (*Ticket, Decision) {
	id := g.identify(a)
	if id.blacklisted {
		g.publishAttempt(&a, &id, OutcomeBlocked, &blacklisted)
		return nil, blacklisted
	}
	t := &Ticket{g: g, a: a, id: id}
	if id.n == 0 {
		return t, Decision{Allowed: true}
	}
	t.token = g.newToken()
	op := t.op()
	if g.local != nil {
		// Counted here from now on: a late call decides with the attempts
		// still in flight to the store among the charges. And what the
		// store does not know yet of this process's attempts refuses here.
		if res, refused := g.local.reserve(localOp(op)); refused {
			g.m.degraded[g.cfg.FailMode].Inc()
			return g.begun(t, &res, g.decideLocally(&t.id, &res, nil), chargedLocally)
		}
	}
	sent := time.Now().UnixNano()
	res, err := g.call(ctx, opBegin, op, false)
	if err != nil {
		// Should the call have run all the same (its answer came too
		// late) and refused, it kept the blocks it made in its token's
		// marker (a charge it found expired): the gate asks for them
		// once the store answers.
		g.queueBeginRecall(op, t.id.ip, err)
		if d, closed := g.degraded(err); closed {
			return nil, d
		}
		g.local.release(localOp(op))
		t.token += localToken
		op.Token = t.token
		res, _ = g.local.Begin(ctx, localOp(op))
		return g.begun(t, &res, g.decideLocally(&t.id, &res, err), chargedLocally)
	}
	if g.local != nil {
		g.syncLocal(op, storeAnswer{res: &res, sent: sent, begin: true}, t.id.ip)
	}
	g.transitions(res.Transitions, ReasonAuto, false, t.id.ip, op.Token)
	return g.begun(t, &res, decide(&t.id, &res), chargedInStore)
}

// begun finishes Begin with the result of the store or of the local
// limiter (where).
func (g *Gate) begun(t *Ticket, res *Result, d Decision, where charged) (*Ticket, Decision) {
	if !res.Admitted {
		d.Allowed = false
		if len(d.BlockedBy) == 0 { // defensive: a store must say why
			d.BlockedBy = []Kind{t.id.counters[0].Kind}
		}
		g.publishAttempt(&t.a, &t.id, OutcomeBlocked, &d)
		return nil, d
	}
	d.Allowed = true
	t.where, t.lastChance = where, res.LastChance
	if t.lastChance {
		t.nextCooloff = g.nextCooloff(res)
	}
	if where == chargedInStore {
		t.begun = time.Now()
		t.counted = len(res.Counted) == t.id.n
		for _, c := range res.Counted {
			t.counted = t.counted && c
		}
		t.after = Decision{Allowed: true, Reason: ReasonAuto, Familiar: d.Familiar,
			IPFailures: d.IPFailures, UsernameFailures: d.UsernameFailures, PairFailures: d.PairFailures}
	}
	return t, d
}

// nextCooloff is the duration of the block a failure would start now.
func (g *Gate) nextCooloff(res *Result) time.Duration {
	cs := g.policy.LockoutCooloffs
	n := 0
	for _, l := range res.Lockouts {
		n = max(n, l)
	}
	return cs[min(n, len(cs)-1)]
}

// Flush waits until every outcome handed to FinishAsync so far is written,
// or ctx ends. (An outcome the store could not take waits in the backlog,
// which Close writes.)
func (g *Gate) Flush(ctx context.Context) error {
	for g.queued.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("gate flush: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Finish reports the outcome of the password check and returns the state
// after it: Allowed false means the source is blocked now (for a failure:
// this failure blocked it). One store round trip.
func (t *Ticket) Finish(ctx context.Context, success bool) Decision {
	if !t.settled.CompareAndSwap(false, true) {
		return Decision{Err: ErrSettled}
	}
	return t.g.observe(t.g.settle(ctx, t, success, true))
}

// FinishAsync reports the outcome without waiting for the store: the gate
// settles it in the background. When its queue is full it settles on the
// caller's goroutine instead, so nothing is dropped.
func (t *Ticket) FinishAsync(success bool) {
	if !t.settled.CompareAndSwap(false, true) {
		return
	}
	g := t.g
	if t.needsStore(success) {
		g.settleMu.RLock()
		if !g.closed {
			g.queued.Add(1)
			select {
			case g.settleCh[g.queueOf(&t.id)] <- settleJob{t: t, success: success}:
				g.settleMu.RUnlock()
				return
			default:
				g.queued.Add(-1)
				g.m.settleSync.Inc()
			}
		}
		g.settleMu.RUnlock()
	}
	g.settle(context.Background(), t, success, true)
}

type settleJob struct {
	t       *Ticket
	success bool
}

// Background settling: workers, the capacity of each one's queue, and
// how many queued outcomes a worker writes at once.
const (
	settleWorkers = 4
	settleQueue   = 2048
	settleBatch   = 64
)

// finishBatcher is a Store that can settle several charges in one round
// trip (RedisStore pipelines them, in order). Each result and error is
// what Finish would have returned for that op.
type finishBatcher interface {
	finishBatch(ctx context.Context, ops []Op, success []bool) ([]Result, []error)
}

// storeRecaller is a Store that keeps, in a token's marker, the blocks a
// Begin made when it refused (RedisStore, RedisClusterStore), and gives
// them back, reading only: the recall of a Begin whose answer came too
// late. (A Finish would settle the charge the Begin left pending as a
// failure, and block, before the attempt's outcome, perhaps a success,
// came.)
type storeRecaller interface {
	recall(ctx context.Context, op Op) (Result, error)
}

// queueOf picks the settle queue of an attempt's source.
func (g *Gate) queueOf(id *identity) int {
	key := id.username
	if key == "" {
		key = id.ipSubject
	}
	return int(maphash.String(g.seed, key) % settleWorkers)
}

// settleLoop writes the outcomes of one queue: what is waiting when the
// worker comes back, up to settleBatch, goes in one batch, so a busy
// gate pays one round trip for many outcomes. Order within the queue,
// hence per source, is kept.
func (g *Gate) settleLoop(ch chan settleJob) {
	defer g.workers.Done()
	batch := make([]settleJob, 0, settleBatch)
	for j := range ch {
		batch = append(batch[:0], j)
	more:
		for len(batch) < settleBatch {
			select {
			case j, ok := <-ch:
				if !ok {
					break more
				}
				batch = append(batch, j)
			default:
				break more
			}
		}
		g.settleJobs(batch)
		g.queued.Add(-int64(len(batch)))
		clear(batch) // drop the tickets
	}
}

// settleJobs writes queued outcomes (all charged in the store): in one
// batch when the store can, else one by one.
func (g *Gate) settleJobs(jobs []settleJob) {
	if g.batcher == nil || len(jobs) == 1 {
		for _, j := range jobs {
			g.settle(context.Background(), j.t, j.success, false)
		}
		return
	}
	ops := make([]Op, len(jobs))
	success := make([]bool, len(jobs))
	for i, j := range jobs {
		ops[i], success[i] = j.t.op(), j.success
	}
	sent := time.Now().UnixNano()
	res, errs := g.finishBatch(ops, success)
	for i, j := range jobs {
		if errs[i] != nil {
			g.settleFailed(j.t, ops[i], j.success, errs[i])
			continue
		}
		g.settled(j.t, ops[i], j.success, &res[i], sent)
	}
}

// finishBatch runs Finish for ops in one batch, in the background (no
// admission), within the store deadline.
func (g *Gate) finishBatch(ops []Op, success []bool) ([]Result, []error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	start := time.Now()
	res, errs := g.batcher.finishBatch(ctx, ops, success)
	cancel()
	took := time.Since(start).Seconds()
	for i := range ops {
		g.m.opDuration[opFinish].Observe(took) // each outcome waited for the whole batch
		if errs[i] != nil {
			g.m.opErrors[opFinish].Inc()
			errs[i] = fmt.Errorf("%w: finish: %w", ErrStoreUnavailable, errs[i])
		}
	}
	return res, errs
}

// outcomeOf is the outcome of a finished attempt.
func outcomeOf(success bool) Outcome {
	if success {
		return OutcomeSuccess
	}
	return OutcomeFailure
}

// settle writes an outcome where the attempt is charged. admit says a
// login waits for it (Finish, or FinishAsync with a full queue).
func (g *Gate) settle(ctx context.Context, t *Ticket, success, admit bool) Decision {
	switch t.where {
	case chargedNowhere:
		if t.refusal != nil { // observe mode let a refused attempt through
			return *t.refusal
		}
		d := Decision{Allowed: true}
		g.publishAttempt(&t.a, &t.id, outcomeOf(success), &d)
		return d
	case chargedLocally:
		// The limiter holding the charge counts the outcome, once; the
		// store learns it from the backlog, as a Record. Another
		// process's limiter admitted the attempt when the token is not
		// this one's (the gate service's outcome came to another
		// instance): its failure is counted here too, its success
		// nowhere (a replayed success must lift nothing).
		op := t.op()
		var res Result
		counted := false
		if strings.HasPrefix(t.token, g.tokenPrefix) {
			res, counted = g.local.localFinish(localOp(op), success, false)
		}
		if !counted && !success {
			// Not pending here: charged by another instance, or dropped
			// once the store answered again (see dropSettledElsewhere).
			res = g.local.localRecord(localOp(op), false)
			counted = res.Admitted
		} else if !counted {
			res, _ = g.local.Check(ctx, localOp(op))
		}
		d := g.decideLocally(&t.id, &res, nil)
		if counted {
			g.queueReplay(op, t.id.ip, false, success, !success)
		}
		g.publishAttempt(&t.a, &t.id, outcomeOf(success), &d)
		return d
	}
	if !t.needsStore(success) {
		// Counted at Begin (or expired into a failure): the store has it.
		d := t.after
		g.publishAttempt(&t.a, &t.id, outcomeOf(success), &d)
		return d
	}
	op := t.op()
	sent := time.Now().UnixNano()
	res, err := g.exec(ctx, opFinish, op, success, admit)
	if err != nil {
		return g.settleFailed(t, op, success, err)
	}
	return g.settled(t, op, success, &res, sent)
}

// settled hands on what the store answered to an outcome (a call sent at
// sent): the local limiter's copy, transitions, then the attempt's event.
func (g *Gate) settled(t *Ticket, op Op, success bool, res *Result, sent int64) Decision {
	if g.local != nil {
		g.syncLocal(op, storeAnswer{res: res, sent: sent, success: success, release: true}, t.id.ip)
	}
	g.transitions(res.Transitions, ReasonAuto, false, t.id.ip, op.Token)
	d := decide(&t.id, res)
	g.publishAttempt(&t.a, &t.id, outcomeOf(success), &d)
	return d
}

// settleFailed handles an outcome the store did not take in time: the
// local limiter counts it (FailLocal), and it waits in the backlog until
// the store answers again.
func (g *Gate) settleFailed(t *Ticket, op Op, success bool, err error) Decision {
	d, closed := g.degraded(err)
	counted := false
	if !closed {
		res, pending := g.local.localFinish(localOp(op), success, t.counted)
		counted = pending && !success
		d = g.decideLocally(&t.id, &res, err)
	}
	g.queueReplay(op, t.id.ip, true, success, counted)
	g.publishAttempt(&t.a, &t.id, outcomeOf(success), &d)
	return d
}

// Record is django-defender's one-call flow, for an attempt whose outcome
// is already known: a blocked source is refused (and nothing counted);
// otherwise the outcome is counted and the Decision is the state after it,
// so the failure that blocks gets Allowed false. One store round trip.
func (g *Gate) Record(ctx context.Context, a Attempt, success bool) Decision {
	return g.observe(g.record(ctx, a, success))
}

func (g *Gate) record(ctx context.Context, a Attempt, success bool) Decision {
	id := g.identify(a)
	if id.blacklisted {
		g.publishAttempt(&a, &id, OutcomeBlocked, &blacklisted)
		return blacklisted
	}
	outcome := outcomeOf(success)
	if id.n == 0 {
		d := Decision{Allowed: true}
		g.publishAttempt(&a, &id, outcome, &d)
		return d
	}
	// A token of its own: a replay of this Record, should its answer come
	// too late, is then the same outcome again (see Op.Token).
	op := id.op(g.newToken())
	sent := time.Now().UnixNano()
	res, err := g.call(ctx, opRecord, op, success)
	var d Decision
	switch {
	case err == nil:
		if g.local != nil {
			g.syncLocal(op, storeAnswer{res: &res, sent: sent, success: success && res.Admitted}, id.ip)
		}
		g.transitions(res.Transitions, ReasonAuto, false, id.ip, op.Token)
		d = decide(&id, &res)
	default:
		var closed bool
		if d, closed = g.degraded(err); closed {
			g.queueRecall(op, id.ip, err)
			g.publishAttempt(&a, &id, OutcomeBlocked, &d)
			return d
		}
		res = g.local.localRecord(localOp(op), success)
		if res.Admitted {
			g.queueReplay(op, id.ip, false, success, !success)
		} else {
			g.queueRecall(op, id.ip, err)
		}
		d = g.decideLocally(&id, &res, err)
	}
	// Blocked before counting (the block may be one the call made of a
	// charge it found expired): refused, nothing counted. Blocked after a
	// failure that was counted: the failure that blocked.
	if !res.Admitted {
		outcome = OutcomeBlocked
	}
	g.publishAttempt(&a, &id, outcome, &d)
	return d
}

// Subject canonicalises an operator-given subject of kind k: an address or
// IPv6 network for KindIP, KindSpray and KindSprayShared, an IPv6 network
// for KindSprayNet, a username for KindUsername and KindUsernameFamiliar,
// "ip|username" for KindPair.
func (g *Gate) Subject(k Kind, s string) (string, error) {
	switch k {
	case KindIP, KindSpray, KindSprayShared:
		return g.IPSubject(s)
	case KindSprayNet:
		p, err := ParsePrefix(s)
		if err != nil || !strings.Contains(s, "/") || !p.Addr().Is6() {
			return "", fmt.Errorf("%w: a %s subject is an IPv6 network such as 2001:db8:1::/48", ErrBadIP, k)
		}
		return p.String(), nil
	case KindUsername, KindUsernameFamiliar:
		u := NormalizeUsername(s, g.cfg.MaxUsernameLength)
		if u == "" {
			return "", errors.New("gate: empty username")
		}
		return u, nil
	case KindPair:
		ip, user, ok := strings.Cut(s, "|")
		if !ok {
			return "", errors.New(`gate: a pair is "ip|username"`)
		}
		ipS, err := g.IPSubject(ip)
		if err != nil {
			return "", err
		}
		u := NormalizeUsername(user, g.cfg.MaxUsernameLength)
		if u == "" {
			return "", errors.New("gate: empty username")
		}
		return PairSubject(ipS, u), nil
	}
	return "", fmt.Errorf("gate: unknown kind %q", k)
}

// Reindex rebuilds the store's list of blocked subjects from its block
// keys, for blocks set outside the gate (see RedisStore.Reindex), and
// returns how many were missing. Stores without such keys (memory) or
// spread over several nodes (RedisClusterStore) return an error wrapping
// errors.ErrUnsupported.
func (g *Gate) Reindex(ctx context.Context) (int, error) {
	r, ok := g.store.(interface {
		Reindex(context.Context) (int, error)
	})
	if !ok {
		return 0, fmt.Errorf("gate: the %T cannot reindex: %w", g.store, errors.ErrUnsupported)
	}
	return r.Reindex(ctx)
}

// Block blocks a subject by hand for d (0: until unblocked), publishing a
// block event with reason admin if it was not blocked already. A kind this
// configuration does not check (see Checks) is refused with ErrNotChecked:
// the block would be listed, yet refuse nobody.
func (g *Gate) Block(ctx context.Context, k Kind, subject string, d time.Duration) error {
	s, err := g.Subject(k, subject)
	if err != nil {
		return err
	}
	if !g.Checks(k) {
		return g.notChecked(k)
	}
	tr, err := g.store.Block(ctx, k, s, d)
	if err != nil {
		return fmt.Errorf("block %s %q: %w", k, s, err)
	}
	if g.local != nil {
		_, _ = g.local.Block(ctx, k, s, d) // valid: the store took it
	}
	if tr != nil {
		g.transitions([]Transition{*tr}, ReasonAdmin, false, "", "")
	}
	return nil
}

// Unblock lifts a subject's block and forgets its failures, publishing an
// unblock event with reason admin. It reports whether a block existed.
func (g *Gate) Unblock(ctx context.Context, k Kind, subject string) (bool, error) {
	return g.unblock(ctx, k, subject, ReasonAdmin)
}

// UnblockByUser lifts a username's block at its user's request (the
// notifier's unlock link), as Unblock does, with reason user. It takes no
// kind: a user may lift their username's block, never an address's or a
// pair's, which others share. With smart lockout, device (a token of
// Device; "" for none) then becomes a source familiar to the user, as a
// login from it would make it: the browser that unlocked is not locked
// out again by an attacker's failures elsewhere.
func (g *Gate) UnblockByUser(ctx context.Context, username, device string) (bool, error) {
	lifted, err := g.unblock(ctx, KindUsername, username, ReasonUser)
	if err != nil || !g.cfg.SmartLockout {
		return lifted, err
	}
	dev, ok := g.deviceID(device)
	if !ok {
		return lifted, nil
	}
	// A success of the user's two counters from the device alone, as its
	// login would be (the counters identify gives a login with no
	// address): it clears the one that applies (the unblock cleared the
	// other sources' already) and teaches the device.
	var id identity
	id.username = NormalizeUsername(username, g.cfg.MaxUsernameLength)
	id.countUser(&g.cfg, []string{deviceSource(dev)})
	id.complete(&g.cfg, netip.Addr{}, false)
	if _, err := g.store.Record(ctx, id.op(""), true); err != nil {
		return lifted, fmt.Errorf("make the device familiar to %q: %w", id.username, err)
	}
	return lifted, nil
}

func (g *Gate) unblock(ctx context.Context, k Kind, subject string, reason Reason) (bool, error) {
	s, err := g.Subject(k, subject)
	if err != nil {
		return false, err
	}
	tr, err := g.store.Unblock(ctx, k, s)
	if err != nil {
		return false, fmt.Errorf("unblock %s %q: %w", k, s, err)
	}
	if g.local != nil {
		_, _ = g.local.Unblock(ctx, k, s)
	}
	if tr != nil {
		g.transitions([]Transition{*tr}, reason, false, "", "")
	}
	return tr != nil, nil
}

// Blocked lists the subjects of kind k blocked now, at most limit (<= 0: all).
func (g *Gate) Blocked(ctx context.Context, k Kind, limit int) ([]BlockState, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("gate: unknown kind %q", k)
	}
	bs, err := g.store.Blocked(ctx, k, limit)
	if err != nil {
		return nil, fmt.Errorf("list blocked %s: %w", k, err)
	}
	return bs, nil
}

// transitions publishes block and unblock events and runs the hooks.
// local marks those the local limiter made (the store did not answer);
// ip is the address of the attempt that made them ("" for an admin's).
func (g *Gate) transitions(ts []Transition, reason Reason, local bool, ip, token string) {
	if len(ts) == 0 {
		return
	}
	now := time.Now()
	for _, t := range ts {
		r := TransitionRecord{Time: now, Kind: t.Kind, Subject: t.Subject, Blocked: t.Blocked,
			Permanent: t.Permanent, Failures: t.Failures, Reason: reason, Local: local, IP: ip,
			Observe: g.cfg.Mode == ModeObserve && reason == ReasonAuto}
		if !t.At.IsZero() && token != "" {
			// The store says when it made it: a replay of the call that
			// made it (whose answer came too late) replies it again, and
			// is announced under the same id (see TransitionRecord.ID).
			r.Time, r.ID = t.At, transitionID(t.At, token, &t)
		}
		direction := "unblock"
		if t.Blocked {
			direction = "block"
			if !t.Permanent {
				r.Until = r.Time.Add(t.Duration)
			}
			if g.logs.blocks.Allow() {
				g.log.Info("gate blocked", "kind", string(t.Kind), "subject", t.Subject,
					"failures", t.Failures, "permanent", t.Permanent, "duration", t.Duration.String(),
					"reason", string(reason), "local", local)
			}
		}
		g.m.transitions.WithLabelValues(string(t.Kind), direction, strconv.FormatBool(local)).Inc()
		if g.emit != nil {
			g.emit.EmitTransition(r)
		}
		if t.Blocked && g.hooks.OnBlock != nil {
			g.hooks.OnBlock(r)
		} else if !t.Blocked && g.hooks.OnUnblock != nil {
			g.hooks.OnUnblock(r)
		}
	}
}

// transitionID names the event of a transition t the store made at at for
// the call of token: a UUIDv7 (time-ordered, like every event id) of at's
// millisecond, whose other bits are a hash of the token and t. The same
// transition replied again (a replay) gets the same id, which JetStream's
// duplicate window, the recorder and the notifier each take once.
func transitionID(at time.Time, token string, t *Transition) uuid.UUID {
	h := sha256.New()
	for _, s := range [...]string{token, string(t.Kind), t.Subject} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write([]byte{byte(b2i(t.Blocked))})
	var id uuid.UUID
	copy(id[:], h.Sum(nil))
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = 0x70 | id[6]&0x0f // version 7
	id[8] = 0x80 | id[8]&0x3f // RFC 9562 variant
	return id
}

// publishAttempt counts an attempt and hands its event to the emitter.
func (g *Gate) publishAttempt(a *Attempt, id *identity, o Outcome, d *Decision) {
	g.m.attempts[o].Inc()
	if id.shared != "" {
		g.m.shared.WithLabelValues(id.shared).Inc()
	}
	if g.emit == nil || !g.cfg.StoreAccessAttempts {
		return
	}
	r := AttemptRecord{
		Time: time.Now(), IP: id.ip, Username: id.username, Outcome: o,
		Path: a.Path, UserAgent: a.UserAgent,
		IPFailures: d.IPFailures, UsernameFailures: d.UsernameFailures, PairFailures: d.PairFailures,
		Degraded: d.Degraded, Observe: g.cfg.Mode == ModeObserve, Shared: id.shared, Familiar: d.Familiar,
	}
	if o != OutcomeSuccess {
		r.BlockedBy = d.BlockedBy
	}
	g.emit.EmitAttempt(r)
}

// newToken returns a token for a store call, unique among this process's
// and, by its random prefix, among every gate's.
func (g *Gate) newToken() string {
	return g.tokenPrefix + strconv.FormatUint(g.tokenSeq.Add(1), 36)
}

// queueReplay puts an outcome the store did not take in the backlog:
// finish for a charge the store made, else a local admission's outcome.
// counted says the local limiter counted it as an unconfirmed failure
// (until the store has it, the limiter keeps its own count).
func (g *Gate) queueReplay(op Op, ip string, finish, success, counted bool) {
	g.queue(newReplay(op, ip, finish, success, counted))
}

// queue puts r in the backlog.
func (g *Gate) queue(r replay) {
	if g.drainClosed.Load() {
		g.m.replayDropped.WithLabelValues("closed").Inc()
		return
	}
	dropped, refused := g.backlog.push(r)
	if refused {
		g.m.replayDropped.WithLabelValues("recalls_full").Inc()
		return
	}
	g.m.backlog.Inc()
	if len(dropped) == 0 {
		return
	}
	// The limiter keeps counting the failures dropped here (they stay
	// unconfirmed until they expire): the store never learns them.
	g.m.backlog.Sub(float64(len(dropped)))
	g.m.replayDropped.WithLabelValues("full").Add(float64(len(dropped)))
	g.logs.backlogFull.Do(func() {
		g.log.Error("gate backlog full: outcomes the store did not take are dropped; their charges expire into failures (counted in defender_gate_replays_dropped_total)",
			"max_outcomes", backlogMaxItems, "max_bytes", backlogMaxBytes)
	})
}

// queueRecall puts in the backlog, for a Record that the fail mode
// refused after its call failed with err, a Finish of its token reporting
// a failure: it counts nothing, but should the Record have run in the
// store all the same (its answer came too late) and blocked, the store
// replies that block to it (see Op.Token), and the gate announces it.
// Otherwise it marks the token settled, so that the Record, if it runs
// later still, counts nothing: the attempt was refused. A call never sent
// needs none; at most backlogMaxRecalls wait.
func (g *Gate) queueRecall(op Op, ip string, err error) {
	if neverSent(err) {
		return
	}
	r := newReplay(op, ip, true, false, false)
	r.recall = true
	g.queue(r)
}

// queueBeginRecall puts in the backlog, for a Begin whose call failed with
// err, a recall of its token (storeRecaller): should the Begin have run in
// the store all the same and refused, it gets back the blocks that made,
// and the gate announces them. It reads only: a charge the Begin made
// stays for the attempt's outcome, replayed as a Record of its own, or
// its expiry. A call never sent needs none; at most backlogMaxRecalls
// wait, apart from the Records' recalls, which a flood of late Begins
// must not push out.
func (g *Gate) queueBeginRecall(op Op, ip string, err error) {
	if g.recaller == nil || neverSent(err) {
		return
	}
	r := newReplay(op, ip, true, false, false)
	r.recall, r.begin = true, true
	g.queue(r)
}

// forget releases what the local limiter kept for a replay too old to
// matter: the store has the failure already (a charge it turned into a
// failure at its pending timeout), or would have forgotten it.
func (g *Gate) forget(r replay) {
	if g.local != nil && r.counted {
		g.local.unconfirm(localOp(r.op), -1)
	}
}

// drainLoop replays the backlog whenever it holds outcomes, backing off
// while the store does not take them, until Close.
func (g *Gate) drainLoop() {
	defer close(g.drainDone)
	ctx := g.drainCtx
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.backlog.wake:
		}
		for g.backlog.len() > 0 && ctx.Err() == nil {
			if err := g.drainBatch(ctx); err == nil {
				backoff = 0
				continue
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

// drainBatch writes the oldest replays of the backlog to the store, in
// order, and removes those written or too old to matter. It stops at the
// first the store does not take, and returns its error.
func (g *Gate) drainBatch(ctx context.Context) error {
	batch := g.backlog.peek(replayBatch)
	done := 0
	defer func() {
		if done > 0 {
			g.m.backlog.Sub(float64(g.backlog.pop(batch[done-1].seq)))
		}
	}()
	now := time.Now()
	for done < len(batch) && ctx.Err() == nil {
		r := &batch[done]
		// The store turned a charge older than the pending timeout into a
		// failure by itself, and forgets failures older than the attempt
		// cool-off: such replays would change nothing right. (A Record's
		// marker lives as long as its replay may come: a recall's too.)
		record := !r.finish || r.recall
		if stale := g.policy.PendingTimeout; !record && now.Sub(r.queued) > stale ||
			record && g.policy.AttemptCooloff > 0 && now.Sub(r.queued) > g.policy.AttemptCooloff {
			g.m.replayDropped.WithLabelValues("stale").Inc()
			g.forget(*r)
			done++
			continue
		}
		var (
			res Result
			err error
		)
		sent := time.Now().UnixNano()
		switch {
		case r.begin:
			res, err = g.exec(ctx, opRecall, r.op, false, false)
		case r.finish:
			res, err = g.exec(ctx, opFinish, r.op, r.success, false)
		default:
			res, err = g.exec(ctx, opRecord, r.op, r.success, false)
		}
		if err != nil {
			return err
		}
		if g.local != nil {
			confirmed := int32(0)
			if r.counted {
				confirmed = 1
			}
			g.syncLocal(r.op, storeAnswer{res: &res, sent: sent, success: r.success, confirmed: confirmed, release: r.finish}, r.ip)
		}
		g.transitions(res.Transitions, ReasonAuto, false, r.ip, r.op.Token)
		g.m.replayed.Inc()
		done++
	}
	return nil
}
