package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// The store pass measures what a login costs redis-server, the store every
// gate service instance shares, which the throughput passes cannot show on
// two shared cores: the gate's Redis store against django-defender's
// command sequence and against the least any store could do (the floor).
// It calls the stores directly from this process, without HTTP.
const passStore = "store"

// The store pass's contenders, in the order of its tables.
const (
	ctGate        = "gate"
	ctGateNoSpray = "gate, spraying off"
	ctGateSmart   = "gate, smart lockout on too"
	ctDjango      = "django-defender"
	ctFloor       = "floor"
	ctFloorSpray  = "floor with spraying"
	ctFloorKnown  = "floor, outcome known"
	ctFloorSmart  = "floor with spraying and smart lockout"
)

// storeWorkloads are the store pass's workloads: the counting path and
// the clearing path.
var storeWorkloads = []string{wlFailure, wlSuccess}

// storeContenders are the contenders measured in workload wl. The floor
// with the outcome known is a success written once the password is
// checked; a failure is the floor's script either way.
func storeContenders(wl string) []string {
	if wl == wlSuccess {
		return []string{ctGate, ctGateSmart, ctGateNoSpray, ctGateBefore, ctDjango, ctFloor, ctFloorSpray, ctFloorSmart, ctFloorKnown}
	}
	return []string{ctGate, ctGateSmart, ctGateNoSpray, ctGateBefore, ctDjango, ctFloor, ctFloorSpray, ctFloorSmart}
}

// storeDB is the Redis database of the store pass: its own, so that
// emptying it before every cell leaves the other passes' keys (the IPs
// blocked by hand) alone.
const storeDB = 1

// The store pass's key prefixes, one per contender.
const (
	prefixGate   = "store-gate"
	prefixDjango = "store-django"
	prefixFloor  = "store-floor"
)

// failureTTL is django-defender's ATTEMPT_COOLOFF_TIME default (300 s),
// the life of a failure counter in the replay and the floor.
const failureTTL = 300 * time.Second

// storeCell is one contender's measurement in one workload and round.
type storeCell struct {
	Round     int
	Workload  string
	Contender string
	Logins    int
	// Elapsed is the wall time of the logins, outcomes settled.
	Elapsed time.Duration
	// RedisCPU is redis-server's CPU time (user + system) over the
	// logins; ClientCPU this process's, where the contenders run.
	RedisCPU, ClientCPU time.Duration
	// Scripts and Commands are INFO commandstats' calls over the logins:
	// scripts (EVAL, EVALSHA and their read-only forms) and every command
	// run, those inside scripts and transactions included (MULTI and EXEC
	// count too).
	Scripts, Commands int64
	// RoundTrips is the contender's requests to Redis (a command, a
	// pipeline or a transaction each), counted by a go-redis hook.
	RoundTrips int64
	// Degraded is the gate's Begins decided by its local limiter because
	// Redis did not answer in time: logins Redis did not see whole.
	Degraded int64
	// Pinned says redis-server ran on a core of its own, this process on
	// the others (pinApart).
	Pinned bool `json:",omitempty"`
}

// storeAttempt is one login of the store pass.
type storeAttempt struct {
	ip   netip.Addr
	ipS  string // ip, as the replay and the floor key it
	user string
}

// storeAttempts draws n logins from seed: a random IP of numIPs and a
// random user of numUsers each, the same for every contender of a cell.
func storeAttempts(n int, seed uint64) []storeAttempt {
	rng := rand.New(rand.NewPCG(seed, 0))
	as := make([]storeAttempt, n)
	for i := range as {
		ip := sourceIP(rng.IntN(numIPs))
		as[i] = storeAttempt{ip: netip.MustParseAddr(ip), ipS: ip, user: "user" + strconv.Itoa(rng.IntN(numUsers))}
	}
	return as
}

// contender is a store as a login handler uses it.
type contender interface {
	// login does one login's store work, the outcome known to be success
	// or not; admitted is false when the store refused it as blocked.
	login(ctx context.Context, a *storeAttempt, success bool) (admitted bool, err error)
	// settle waits until every outcome handed off so far is written.
	settle(ctx context.Context) error
	// failures reads the failure counts of a's IP and username.
	failures(ctx context.Context, a *storeAttempt) (ip, user int, err error)
	// degraded is how many logins were decided without the store.
	degraded() int64
	close() error
}

// newContender builds a contender on rdb; storeTimeout, when set, is the
// gate's store deadline (DEFENDER_REDIS_TIMEOUT) instead of its default.
func newContender(name string, rdb *redis.Client, storeTimeout time.Duration) (contender, error) {
	switch name {
	case ctGate:
		return newGateContender(rdb, true, false, storeTimeout)
	case ctGateSmart:
		return newGateContender(rdb, true, true, storeTimeout)
	case ctGateNoSpray:
		return newGateContender(rdb, false, false, storeTimeout)
	case ctGateBefore:
		return newGateBeforeContender(rdb), nil
	case ctDjango:
		return &djangoContender{rdb: rdb, keys: keyScheme{prefixDjango}}, nil
	case ctFloor:
		return &floorContender{rdb: rdb, keys: keyScheme{prefixFloor}}, nil
	case ctFloorKnown:
		return &floorContender{rdb: rdb, keys: keyScheme{prefixFloor}, outcomeKnown: true}, nil
	case ctFloorSpray:
		return &floorContender{rdb: rdb, keys: keyScheme{prefixFloor}, spraying: true}, nil
	case ctFloorSmart:
		return &floorContender{rdb: rdb, keys: keyScheme{prefixFloor}, spraying: true, smart: true}, nil
	}
	return nil, fmt.Errorf("no contender %q", name)
}

// gateContender is the gate on its Redis store, used as the middleware
// uses it: Begin before the password check, the outcome written in the
// background (batched) after it.
type gateContender struct {
	g     *gate.Gate
	local atomic.Int64
}

func newGateContender(rdb *redis.Client, spraying, smart bool, storeTimeout time.Duration) (*gateContender, error) {
	cfg := gateConfig(prefixGate)
	if storeTimeout > 0 {
		cfg.StoreTimeout = storeTimeout
	}
	if !spraying {
		cfg.SprayLimit = 0
	}
	cfg.SmartLockout = smart
	g, err := gate.New(cfg, gate.NewRedisStore(rdb, prefixGate, cfg.Policy()), gate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	return &gateContender{g: g}, nil
}

func (c *gateContender) login(ctx context.Context, a *storeAttempt, success bool) (bool, error) {
	t, d := c.g.Begin(ctx, gate.Attempt{IP: a.ip, Username: a.user})
	if d.Degraded {
		c.local.Add(1)
	}
	if !d.Allowed {
		return false, nil
	}
	t.FinishAsync(success)
	return true, nil
}

func (c *gateContender) settle(ctx context.Context) error { return c.g.Flush(ctx) }

func (c *gateContender) failures(ctx context.Context, a *storeAttempt) (int, int, error) {
	d := c.g.Check(ctx, gate.Attempt{IP: a.ip, Username: a.user})
	if d.Degraded {
		return 0, 0, fmt.Errorf("gate check: Redis did not answer: %v", d.Err)
	}
	return d.IPFailures, d.UsernameFailures, nil
}

func (c *gateContender) degraded() int64 { return c.local.Load() }

func (c *gateContender) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.g.Close(ctx)
}

// keyScheme is django-defender's Redis keys, which the floor shares.
type keyScheme struct{ prefix string }

func (k keyScheme) blockedIP(a *storeAttempt) string {
	return k.prefix + ":blocked:ip:" + a.ipS
}

func (k keyScheme) blockedUser(a *storeAttempt) string {
	return k.prefix + ":blocked:username:" + a.user
}

func (k keyScheme) failedIP(a *storeAttempt) string {
	return k.prefix + ":failed:ip:" + a.ipS
}

func (k keyScheme) failedUser(a *storeAttempt) string {
	return k.prefix + ":failed:username:" + a.user
}

// failures reads the two failure counters (a missing key is 0).
func (k keyScheme) failures(ctx context.Context, rdb *redis.Client, a *storeAttempt) (int, int, error) {
	var n [2]int
	for i, key := range []string{k.failedIP(a), k.failedUser(a)} {
		v, err := rdb.Get(ctx, key).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, 0, err
		}
		n[i] = v
	}
	return n[0], n[1], nil
}

// djangoContender replays django-defender 0.9.8's Redis commands for a
// login, as traced with MONITOR, each round trip as redis-py sends it: a
// GET per block key, then a transaction per failure counter (redis-py's
// pipeline is MULTI/EXEC by default), or one transaction clearing all
// four keys on success.
type djangoContender struct {
	rdb  *redis.Client
	keys keyScheme
}

func (c *djangoContender) login(ctx context.Context, a *storeAttempt, success bool) (bool, error) {
	for _, key := range []string{c.keys.blockedIP(a), c.keys.blockedUser(a)} {
		err := c.rdb.Get(ctx, key).Err()
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, redis.Nil) {
			return false, err
		}
	}
	if success {
		_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, c.keys.failedIP(a))
			p.Del(ctx, c.keys.blockedIP(a))
			p.Del(ctx, c.keys.failedUser(a))
			p.Del(ctx, c.keys.blockedUser(a))
			return nil
		})
		return true, err
	}
	for _, key := range []string{c.keys.failedIP(a), c.keys.failedUser(a)} {
		_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.IncrBy(ctx, key, 1)
			p.Expire(ctx, key, failureTTL)
			return nil
		})
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

func (c *djangoContender) settle(context.Context) error { return nil }

func (c *djangoContender) failures(ctx context.Context, a *storeAttempt) (int, int, error) {
	return c.keys.failures(ctx, c.rdb, a)
}

func (c *djangoContender) degraded() int64 { return 0 }
func (c *djangoContender) close() error    { return nil }

// The floor's scripts. KEYS: blocked IP, blocked username, failed IP,
// failed username. Either answers {-1, ttl} when a block is on.
var (
	// floorCharge checks both blocks and counts a failure on both
	// counters before the password is checked (a login cannot wait for
	// its outcome to be counted: a guesser would just not wait either);
	// ARGV[1] is the counters' life in ms. It answers the two counts.
	floorCharge = redis.NewScript(`
local ip, user = redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])
if ip ~= -2 or user ~= -2 then return {-1, math.max(ip, user)} end
local n1 = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
local n2 = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[1])
return {n1, n2}`)
	// floorSuccess is a success when the outcome is known before the
	// store is asked: check both blocks and clear both counters.
	// floorSprayCharge is floorCharge that also counts the username among
	// the names failing from the address (KEYS[5] its block, KEYS[6] its
	// set; ARGV[2] the username): what counting spraying needs at least.
	floorSprayCharge = redis.NewScript(`
local ip, user, spray = redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]), redis.call('PTTL', KEYS[5])
if ip ~= -2 or user ~= -2 or spray ~= -2 then return {-1, math.max(ip, user, spray)} end
local n1 = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
local n2 = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[2])
local n3 = redis.call('SCARD', KEYS[6])
redis.call('PEXPIRE', KEYS[6], ARGV[1])
return {n1, n2, n3}`)
	// floorSmartCharge is floorSprayCharge with smart lockout: it first
	// reads whether the address logged in as the user within the familiar
	// age (ZSCORE of KEYS[7], the user's familiar sources; ARGV[3] the
	// address, ARGV[4] the oldest familiar score), then checks and counts
	// the username counter that applies: KEYS[2] and KEYS[4] for an
	// unfamiliar source, KEYS[8] and KEYS[9] for a familiar one.
	floorSmartCharge = redis.NewScript(`
local seen = redis.call('ZSCORE', KEYS[7], ARGV[3])
local ub, uf = KEYS[2], KEYS[4]
if seen and tonumber(seen) >= tonumber(ARGV[4]) then ub, uf = KEYS[8], KEYS[9] end
local ip, user, spray = redis.call('PTTL', KEYS[1]), redis.call('PTTL', ub), redis.call('PTTL', KEYS[5])
if ip ~= -2 or user ~= -2 or spray ~= -2 then return {-1, math.max(ip, user, spray)} end
local n1 = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
local n2 = redis.call('INCR', uf)
redis.call('PEXPIRE', uf, ARGV[1])
redis.call('SADD', KEYS[6], ARGV[2])
local n3 = redis.call('SCARD', KEYS[6])
redis.call('PEXPIRE', KEYS[6], ARGV[1])
return {n1, n2, n3, ub == KEYS[8] and 1 or 0}`)
	floorSuccess = redis.NewScript(`
local ip, user = redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])
if ip ~= -2 or user ~= -2 then return {-1, math.max(ip, user)} end
redis.call('DEL', KEYS[3], KEYS[4])
return {0, 0}`)
)

// floorContender is the least a store can do for a login: one script,
// plus, for a success, the clear of the counters it charged (its own
// round trip, once the password is checked). With outcomeKnown a success
// is one script instead, a reference for what knowing the outcome first
// would save.
type floorContender struct {
	rdb          *redis.Client
	keys         keyScheme
	outcomeKnown bool
	spraying     bool // also count the names failing from each address
	smart        bool // and keep each user's familiar addresses (spraying too)
}

// familiarFor is how long an address stays familiar in the floor with
// smart lockout, and familiarMax how many a user keeps: the gate's
// defaults (DEFENDER_FAMILIAR_DAYS, DEFENDER_FAMILIAR_MAX).
const (
	familiarFor = 30 * 24 * time.Hour
	familiarMax = 20
)

func (c *floorContender) login(ctx context.Context, a *storeAttempt, success bool) (bool, error) {
	keys := []string{c.keys.blockedIP(a), c.keys.blockedUser(a), c.keys.failedIP(a), c.keys.failedUser(a)}
	script, args := floorCharge, []any{failureTTL.Milliseconds()}
	if c.spraying {
		keys = append(keys, c.keys.prefix+":blocked:spray:"+a.ipS, c.keys.prefix+":failed:spray:"+a.ipS)
		script, args = floorSprayCharge, append(args, a.user)
	}
	now := time.Now()
	if c.smart {
		keys = append(keys, c.keys.prefix+":familiar:"+a.user,
			c.keys.prefix+":blocked:username_familiar:"+a.user, c.keys.prefix+":failed:username_familiar:"+a.user)
		script, args = floorSmartCharge, append(args, a.ipS, now.Add(-familiarFor).UnixMilli())
	}
	if success && c.outcomeKnown {
		script, args = floorSuccess, nil
	}
	res, err := script.Run(ctx, c.rdb, keys, args...).Int64Slice()
	if err != nil {
		return false, err
	}
	if len(res) > 0 && res[0] < 0 {
		return false, nil
	}
	if success && c.spraying {
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			user := keys[3]
			if c.smart && res[3] == 1 {
				user = keys[8]
			}
			p.Del(ctx, keys[2], user)
			p.SRem(ctx, keys[5], a.user)
			if c.smart {
				// Teaching is bounded (DEFENDER_FAMILIAR_MAX): all
				// but the latest familiarMax go, one command whatever the
				// size.
				p.ZAdd(ctx, keys[6], redis.Z{Score: float64(now.UnixMilli()), Member: a.ipS})
				p.ZRemRangeByRank(ctx, keys[6], 0, -familiarMax-1)
				p.PExpire(ctx, keys[6], familiarFor)
			}
			return nil
		})
		return true, err
	}
	if success && !c.outcomeKnown {
		return true, c.rdb.Del(ctx, keys[2], keys[3]).Err()
	}
	return true, nil
}

func (c *floorContender) settle(context.Context) error { return nil }

func (c *floorContender) failures(ctx context.Context, a *storeAttempt) (int, int, error) {
	return c.keys.failures(ctx, c.rdb, a)
}

func (c *floorContender) degraded() int64 { return 0 }
func (c *floorContender) close() error    { return nil }

// drive runs the logins of as on conc goroutines, each taking the next
// one, until as is used up, or, when until is set, until then (as
// repeated). It stops at the first error or refused login: nothing may
// block with limits of 1,000,000.
func drive(ctx context.Context, c contender, as []storeAttempt, success bool, conc int, until time.Time) error {
	var next atomic.Int64
	var stop atomic.Bool
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if until.IsZero() && i >= len(as) || !until.IsZero() && time.Now().After(until) {
					return
				}
				a := &as[i%len(as)]
				admitted, err := c.login(ctx, a, success)
				if err == nil && !admitted {
					err = fmt.Errorf("login of %s from %s refused as blocked, with limits that never block", a.user, a.ipS)
				}
				if err != nil {
					errs[w] = err
					stop.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// roundTrips counts a go-redis client's requests: one per command,
// pipeline or transaction sent.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// runStore runs the store pass: o.Rounds rounds of both workloads, the
// contenders rotated so that none always runs first.
func (e *env) runStore(ctx context.Context) ([]storeCell, error) {
	// The gate's client, as newTarget makes it; the other contenders use
	// the same, so that the client is not the difference.
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr, PoolSize: 64, DB: storeDB})
	defer rdb.Close()
	// The passes before leave hundreds of thousands of keys in Redis,
	// which it expires in the background while this pass runs, and a
	// large heap in this process: both would count in the cells (the full
	// run's store figures were 1.45× the floor where a store pass alone
	// measured 1.15×). The other passes are done with them.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return nil, fmt.Errorf("store pass: flush the earlier passes' keys: %w", err)
	}
	runtime.GC()
	undo, pinned, err := pinApart(e.redis.Pid())
	if err != nil {
		// A machine that refuses CPU affinity still gets figures, marked
		// unpinned in the report.
		e.logf("store pass: not pinned: %v", err)
	}
	defer undo()
	rt := &roundTrips{}
	rdb.AddHook(rt)
	var cells []storeCell
	for round := range e.o.Rounds {
		for wi, wl := range storeWorkloads {
			for _, name := range rotate(storeContenders(wl), round+wi) {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				c, err := e.measureStore(ctx, round, wl, name, rdb, rt)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s, %s, %s: %w", round+1, passStore, wl, name, err)
				}
				c.Pinned = pinned
				n := float64(c.Logins)
				e.logf("round %d  %-7s %-8s %-20s redis-server %5.1f µs/login, this process %5.1f µs/login, %.2f commands/login (%d logins in %s)",
					round+1, passStore, wl, name, usPer(c.RedisCPU, n), usPer(c.ClientCPU, n), float64(c.Commands)/n, c.Logins, c.Elapsed.Round(time.Millisecond))
				cells = append(cells, c)
			}
		}
	}
	return cells, rdb.FlushDB(ctx).Err()
}

// measureStore measures one contender in one workload: a warm-up (scripts
// loaded, connections dialled), the database emptied, then the logins
// with redis-server's and this process's CPU and Redis's commandstats
// read around them, outcomes settled before the second reading.
func (e *env) measureStore(ctx context.Context, round int, wl, name string, rdb *redis.Client, rt *roundTrips) (storeCell, error) {
	c := storeCell{Round: round, Workload: wl, Contender: name}
	ct, err := newContender(name, rdb, 0)
	if err != nil {
		return c, err
	}
	defer ct.close()
	success := wl == wlSuccess
	sd := seed(round, passStore, wl)
	if e.o.Warmup > 0 {
		if err := drive(ctx, ct, storeAttempts(e.o.StoreLogins, sd+1), success, e.o.Concurrency, time.Now().Add(e.o.Warmup)); err != nil {
			return c, fmt.Errorf("warm-up: %w", err)
		}
		if err := ct.settle(ctx); err != nil {
			return c, err
		}
	}
	as := storeAttempts(e.o.StoreLogins, sd)
	var s0 redisCommands
	var rt0, d0 int64
	var redis0, self0 time.Duration
	var t0 time.Time
	err = measureLogins(ctx, ct, rdb, as, success, e.o.Concurrency, func() (err error) {
		s0, err = commandStats(ctx, e.ping)
		rt0, d0 = rt.n.Load(), ct.degraded()
		redis0, self0 = procCPU(e.redis.Pid()), procCPU(os.Getpid())
		t0 = time.Now()
		return err
	}, func() error {
		c.Elapsed = time.Since(t0)
		c.RedisCPU, c.ClientCPU = procCPU(e.redis.Pid())-redis0, procCPU(os.Getpid())-self0
		c.RoundTrips, c.Degraded = rt.n.Load()-rt0, ct.degraded()-d0
		s1, err := commandStats(ctx, e.ping)
		c.Logins = len(as)
		c.Scripts, c.Commands = s1.scripts-s0.scripts, s1.commands-s0.commands
		return err
	})
	return c, err
}

// measureLogins runs one cell's logins as on ct: the database emptied (no
// cell sees the counters of another, or of its warm-up), before read,
// the logins on conc goroutines, their outcomes settled, after read, then
// the last logins' counters checked (checkCounted).
func measureLogins(ctx context.Context, ct contender, rdb *redis.Client, as []storeAttempt, success bool, conc int, before, after func() error) error {
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return err
	}
	if err := before(); err != nil {
		return err
	}
	if err := drive(ctx, ct, as, success, conc, time.Time{}); err != nil {
		return err
	}
	if err := ct.settle(ctx); err != nil {
		return err
	}
	if err := after(); err != nil {
		return err
	}
	return checkCounted(ctx, ct, as, success)
}

// checkCounted reads the counters of the cell's last logins: after
// failures both must be counted, after successes both cleared. A
// contender that skipped its writes would look cheap.
func checkCounted(ctx context.Context, ct contender, as []storeAttempt, success bool) error {
	for i := max(0, len(as)-5); i < len(as); i++ {
		a := &as[i]
		ip, user, err := ct.failures(ctx, a)
		if err != nil {
			return fmt.Errorf("reading the counters: %w", err)
		}
		if !success && (ip <= 0 || user <= 0) {
			return fmt.Errorf("failures not counted: %s from %s has %d IP and %d username failures after failing", a.user, a.ipS, ip, user)
		}
		if success && (ip != 0 || user != 0) {
			return fmt.Errorf("failures not cleared: %s from %s has %d IP and %d username failures after successes only", a.user, a.ipS, ip, user)
		}
	}
	return nil
}

// redisCommands is a reading of INFO commandstats.
type redisCommands struct{ scripts, commands int64 }

// commandStats reads how many scripts and commands Redis has run. The
// INFO commands themselves (the measurement's) are left out.
func commandStats(ctx context.Context, c *redis.Client) (redisCommands, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return redisCommands{}, fmt.Errorf("info commandstats: %w", err)
	}
	stats, err := testenv.ParseCommandStatLines(info)
	if err != nil {
		return redisCommands{}, err
	}
	scripts, _, err := testenv.ScriptStats(info)
	if err != nil {
		return redisCommands{}, err
	}
	var r redisCommands
	r.scripts = scripts
	for name, st := range stats {
		if name != "info" {
			r.commands += st.Calls
		}
	}
	return r, nil
}

// usPer is d in µs per one of n.
func usPer(d time.Duration, n float64) float64 {
	return float64(d) / float64(time.Microsecond) / n
}
