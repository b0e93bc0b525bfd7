package gate

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// RedisClusterClient is the part of a go-redis v9 client that
// RedisClusterStore uses: *redis.ClusterClient, and also *redis.Client
// (a single Redis, or Sentinel's failover client) and *redis.Ring.
type RedisClusterClient interface {
	RedisClient
	ZAdd(ctx context.Context, key string, members ...redis.Z) *redis.IntCmd
	ZRangeWithScores(ctx context.Context, key string, start, stop int64) *redis.ZSliceCmd
	ZRemRangeByScore(ctx context.Context, key, min, max string) *redis.IntCmd
	Pipeline() redis.Pipeliner
}

var (
	_ RedisClusterClient = (*redis.ClusterClient)(nil)
	_ RedisClusterClient = (*redis.Client)(nil)
	_ Store              = (*RedisClusterStore)(nil)
)

// RedisClusterStore is the Store for Redis Cluster: every script touches
// the keys of one subject only, which share a hash slot, so the subjects
// of a deployment spread over all masters.
//
// Keys, for a counter of kind k and subject s (DESIGN.md's keys with the
// subject as hash tag):
//
//	<prefix>:failed:<k>:{<s>}    failure count, as in RedisStore
//	<prefix>:blocked:<k>:{<s>}   "blocked" while blocked
//	<prefix>:pending:<k>:{<s>}   charged tokens scored by deadline
//	<prefix>:lockouts:<k>:{<s>}  lockout count
//	<prefix>:index:blocked:<k>   blocked subjects by end (one key per kind, kept from Go)
//	<prefix>:settled:<k>:{<s>}:<token>  the token's settled marker on the subject's slot
//
// A subject starting with '}' would make an empty hash tag, which Redis
// ignores (spreading one subject's keys over several slots); such a
// subject's keys are <prefix>:<what>:<k>:~{~}<s> instead, all in one slot.
//
// One store call runs the per-counter script (the Lua shared with
// RedisStore) once per counter, in parallel, so a decision on an IP and a
// username still waits one round trip. Each counter decides atomically
// for itself; what that means across counters:
//
//   - Check, Finish, Block, Unblock act on each counter independently
//     anyway: same results as RedisStore.
//   - Begin charges each counter that admits. If another counter refuses
//     (blocked or saturated), the charges made are released (ZREM of the
//     token) before Begin returns: a refused attempt costs a second round
//     trip, an admitted one does not. Each counter's admission is atomic,
//     so the Limit+1 bound holds per counter. In the window between a
//     charge and its release the charge counts, so a concurrent Begin may
//     be refused as saturated on that counter though the attempt holding
//     the slot is being refused elsewhere: refusals can only be early,
//     never late. If the release cannot be sent (Redis unreachable), the
//     charge expires into a failure after Policy.PendingTimeout, as a
//     charge whose Finish was lost does.
//   - Record with one counter is one script. With several it is Begin
//     without the saturation rule followed by Finish on the Record's token
//     (two round trips), so no counter is counted while another one is
//     blocked; between the two, the attempt holds a pending charge like
//     any attempt being checked. The same Record again (a gate's replay)
//     charges nothing where the first one's charge is pending or settled:
//     it completes that one, and gets back the blocks it made.
//
// The blocked index of a kind lives in its own slot, so the scripts report
// transitions and this store adds the new block to the index after the
// script, scored by the block's end. Lifted and expired blocks are left in
// the index and dropped by the next Blocked, which reads every listed
// subject's block key (one pipelined round per batch, per master).
// A block whose index write was lost (the index's master down at that
// moment) is in force but not listed until it is blocked again.
type RedisClusterStore struct {
	client RedisClusterClient
	prefix string
	policy Policy
	args   redisPolicyArgs // the policy's script arguments
	charge *redisChargers  // Begin's fast path, by shape (redis_charge.go)
	clear  *redisClearers  // a success's Finish's fast path, by shape (redis_clear.go)
	log    *slog.Logger
	// indexTimeout bounds index writes and compensating releases, which
	// run even when the caller's context is done (see followUp).
	indexTimeout time.Duration
	logs         struct{ index, release rate.Sometimes }
}

// RedisClusterOption configures a RedisClusterStore.
type RedisClusterOption func(*RedisClusterStore)

// WithRedisClusterLogger sets where a RedisClusterStore logs index writes
// and releases it could not make (slog.Default otherwise).
func WithRedisClusterLogger(l *slog.Logger) RedisClusterOption {
	return func(s *RedisClusterStore) { s.log = l }
}

// NewRedisClusterStore returns a store keeping its keys under prefix
// (DEFENDER_CACHE_PREFIX) and applying p: a gate's store applies the
// gate's, Config.Policy(). The prefix must not contain '{' or '}': the
// hash tag is the subject.
func NewRedisClusterStore(client RedisClusterClient, prefix string, p Policy, opts ...RedisClusterOption) (*RedisClusterStore, error) {
	if prefix == "" || strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis cluster store: prefix %q must be non-empty, without '{' or '}'", prefix)
	}
	p = p.clone()
	s := &RedisClusterStore{client: client, prefix: prefix, policy: p, args: newRedisPolicyArgs(&p), charge: newRedisChargers(&p), clear: newRedisClearers(&p),
		log: slog.Default(), indexTimeout: 2 * time.Second}
	s.logs.index.Interval, s.logs.release.Interval = time.Minute, time.Minute
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

var (
	redisScriptReserve = redis.NewScript("#!lua\n" + redisLuaCommon + redisLuaReserve) // see redisScriptBegin
	redisScriptUnindex = redis.NewScript(redisLuaUnindex)
	redisScriptIndex   = redis.NewScript(redisLuaIndex)
	redisScriptRelease = redis.NewScript(redisLuaRelease)
)

//go:embed redis_release.lua
var redisLuaRelease string

// Policy returns the policy the store applies.
func (s *RedisClusterStore) Policy() Policy { return s.policy.clone() }

// permanentScore is the index score of a permanent block started at ms:
// after every expiring block (ends are ms since 1970, far below), and
// distinct per block so that Blocked's compare-and-delete never drops a
// newer permanent block of the same subject.
const permanentScore = 4e15

// Check implements Store.
func (s *RedisClusterStore) Check(ctx context.Context, op Op) (Result, error) {
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis check: %w", err)
	}
	rs, errs := s.each(ctx, op, "check", redisScriptCheck, false)
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	return mergeRedisResults(op, rs, false), nil
}

// Begin implements Store.
func (s *RedisClusterStore) Begin(ctx context.Context, op Op) (Result, error) {
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis begin: %w", err)
	}
	if op.Token == "" {
		return Result{}, errors.New("redis begin: empty token")
	}
	rs, errs := s.each(ctx, op, "begin", redisScriptBegin, false)
	s.index(ctx, rs, errs)
	admitted := s.settleAdmission(ctx, op, rs, errs, false)
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	res := mergeRedisResults(op, rs, admitted)
	res.Lockouts, res.Pending = make([]int, len(op.Counters)), make([]int, len(op.Counters))
	if admitted {
		res.Counted = make([]bool, len(op.Counters))
	}
	for i, r := range rs {
		if len(r.Lockouts) == 1 {
			res.Lockouts[i] = r.Lockouts[0]
		}
		counted := len(r.Counted) == 1 && r.Counted[0]
		if admitted {
			res.Counted[i] = counted
		}
		if len(r.Pending) == 1 {
			res.Pending[i] = r.Pending[0]
			if r.Admitted && !admitted && !counted {
				res.Pending[i]-- // released above: another counter refused
			}
		}
		if r.Admitted && !admitted && counted {
			res.Failures[i]-- // released above
		}
	}
	return res, nil
}

// recall implements storeRecaller: each counter's slot keeps its own
// marker. The blocks it gets back are indexed here, as their Begin's
// answer, which would have, never came.
func (s *RedisClusterStore) recall(ctx context.Context, op Op) (Result, error) {
	return s.settle(ctx, op, "recall", redisScriptRecall, false)
}

// Finish implements Store.
func (s *RedisClusterStore) Finish(ctx context.Context, op Op, success bool) (Result, error) {
	return s.settle(ctx, op, "finish", redisScriptFinish, success)
}

// settle runs script, Finish's or recall's, for op's token on every
// counter, and indexes the blocks the results report.
func (s *RedisClusterStore) settle(ctx context.Context, op Op, name string, script *redis.Script, success bool) (Result, error) {
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis %s: %w", name, err)
	}
	if op.Token == "" {
		return Result{}, fmt.Errorf("redis %s: empty token", name)
	}
	rs, errs := s.each(ctx, op, name, script, success)
	s.index(ctx, rs, errs)
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	return mergeRedisResults(op, rs, false), nil
}

// Record implements Store: one script for one counter, else a reserve
// round and a Finish round (see RedisClusterStore).
func (s *RedisClusterStore) Record(ctx context.Context, op Op, success bool) (Result, error) {
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis record: %w", err)
	}
	if op.Token == "" {
		op.Token = "record-" + randomToken()
	}
	if len(op.Counters) == 1 {
		rs, errs := s.each(ctx, op, "record", redisScriptRecord, success)
		s.index(ctx, rs, errs)
		if err := errors.Join(errs...); err != nil {
			return Result{}, err
		}
		return mergeRedisResults(op, rs, rs[0].Admitted), nil
	}
	// Over several counters, a reserve round charges the token and a
	// Finish round settles it. The same Record again (the token of one
	// whose reply came too late) charges nothing where the first call's
	// charge is pending or settled, and its Finish round replies what
	// the first one's made (redis_reserve.lua).
	rs, errs := s.each(ctx, op, "record reserve", redisScriptReserve, false)
	s.index(ctx, rs, errs)
	if !s.settleAdmission(ctx, op, rs, errs, true) {
		if err := errors.Join(errs...); err != nil {
			return Result{}, err
		}
		return mergeRedisResults(op, rs, false), nil
	}
	reserved := rs
	rs, errs = s.eachOf(ctx, op, "record finish", redisScriptFinish, success, true)
	s.index(ctx, rs, errs)
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	res := mergeRedisResults(op, rs, true) // counted
	// The reserve round's own (a block by a charge it found expired),
	// not those it recalled from a marker, which the Finish round
	// recalled too.
	var ts []Transition
	for _, r := range reserved {
		for _, t := range r.Transitions {
			if !slices.Contains(res.Transitions, t) {
				ts = append(ts, t)
			}
		}
	}
	res.Transitions = append(ts, res.Transitions...)
	return res, nil
}

// Block implements Store.
func (s *RedisClusterStore) Block(ctx context.Context, kind Kind, subject string, d time.Duration) (*Transition, error) {
	if d < 0 {
		return nil, fmt.Errorf("redis block %s %q: negative duration %s", kind, subject, d)
	}
	t, err := s.admin(ctx, "block", redisScriptBlock, kind, subject, redisMillis(d))
	if err != nil {
		return nil, err
	}
	// A block replaced by hand has a new end: index it, transition or not
	// (a longer one raises the entry; see indexBlocks for a shorter one).
	s.indexBlocks(ctx, []Transition{{Kind: kind, Subject: subject, Blocked: true, Duration: d, Permanent: d == 0}})
	return t, nil
}

// Unblock implements Store.
func (s *RedisClusterStore) Unblock(ctx context.Context, kind Kind, subject string) (*Transition, error) {
	return s.admin(ctx, "unblock", redisScriptUnblock, kind, subject)
}

// admin runs an admin script (block, unblock) on a subject's slot: its
// keys, and the subject followed by args (see redis_common.lua).
func (s *RedisClusterStore) admin(ctx context.Context, name string, script *redis.Script, kind Kind, subject string, args ...any) (*Transition, error) {
	if err := validateSubject(kind, subject); err != nil {
		return nil, fmt.Errorf("redis %s: %w", name, err)
	}
	c := Counter{Kind: kind, Subject: subject}
	keys := []string{s.key("failed", kind, subject), s.key("blocked", kind, subject),
		s.key("pending", kind, subject), s.key("lockouts", kind, subject)}
	reply, err := script.Run(ctx, s.client, keys, append([]any{subject}, args...)...).Result()
	if err != nil {
		err = s.scriptError(name, c, err)
		if errors.Is(err, ErrStoreUnavailable) {
			s.reload(ctx)
		}
		return nil, err
	}
	res, err := s.decodeOne(name, reply, Op{Counters: []Counter{c}}, false)
	return redisTransition(res), err
}

// Blocked implements Store. Subjects come soonest-ending first, permanent
// blocks last. The index is read in batches; each batch's block keys are
// read in one pipeline, which go-redis sends to every master in parallel.
func (s *RedisClusterStore) Blocked(ctx context.Context, kind Kind, limit int) ([]BlockState, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("redis blocked: invalid kind %q", kind)
	}
	index := s.indexKey(kind)
	// Entries that ended a minute ago (by the clock of the gate that
	// indexed them) are gone for sure, even with some clock skew.
	old := time.Now().Add(-time.Minute).UnixMilli()
	if err := s.client.ZRemRangeByScore(ctx, index, "-inf", "("+strconv.FormatInt(old, 10)).Err(); err != nil {
		return nil, redisStoreError("blocked "+string(kind), err)
	}
	const batch = 128
	var out []BlockState
	var stale []any
	seen := map[string]bool{}
	for start := int64(0); ; start += batch {
		zs, err := s.client.ZRangeWithScores(ctx, index, start, start+batch-1).Result()
		if err != nil {
			return nil, redisStoreError("blocked "+string(kind), err)
		}
		pipe := s.client.Pipeline()
		ttls := make([]*redis.DurationCmd, len(zs))
		for i, z := range zs {
			subject, ok := z.Member.(string)
			if !ok {
				return nil, fmt.Errorf("redis blocked %s: unexpected member %T", kind, z.Member)
			}
			ttls[i] = pipe.PTTL(ctx, s.key("blocked", kind, subject))
		}
		if len(zs) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, redisStoreError("blocked "+string(kind), err)
			}
		}
		for i, z := range zs {
			subject := z.Member.(string) // checked above
			ttl := ttls[i].Val()
			switch {
			case ttl == -2:
				stale = append(stale, subject, strconv.FormatFloat(z.Score, 'g', -1, 64))
				continue
			case seen[subject]:
				continue
			}
			seen[subject] = true
			st := BlockState{Kind: kind, Subject: subject}
			if ttl < 0 {
				st.Permanent = true
			} else {
				st.TTL = max(ttl, time.Millisecond) // PTTL 0: its last millisecond
			}
			out = append(out, st)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		if len(zs) < batch || (limit > 0 && len(out) >= limit) {
			break
		}
	}
	if len(stale) > 0 {
		if err := redisScriptUnindex.Run(ctx, s.client, []string{index}, stale...).Err(); err != nil {
			return nil, redisStoreError("blocked "+string(kind)+" unindex", err)
		}
	}
	return out, nil
}

// key names one key of a subject; see RedisClusterStore for the layout.
func (s *RedisClusterStore) key(what string, kind Kind, subject string) string {
	if strings.HasPrefix(subject, "}") {
		return s.prefix + ":" + what + ":" + string(kind) + ":~{~}" + subject
	}
	return s.prefix + ":" + what + ":" + string(kind) + ":{" + subject + "}"
}

// counterKey is c's key of the given kind, on its subject's slot.
func (s *RedisClusterStore) counterKey(what string, c *Counter) string {
	return s.key(what, c.Kind, c.Subject)
}

// familiarKey is the user's set of familiar sources, on the user's slot.
func (s *RedisClusterStore) familiarKey(f *Familiar) string {
	return s.key("familiar", KindUsername, f.User)
}

func (s *RedisClusterStore) indexKey(kind Kind) string {
	return s.prefix + ":index:blocked:" + string(kind)
}

// each runs script once per counter of op, each with that counter alone
// on its slot, in one pipeline (go-redis sends each master its part at
// once), and returns the results and errors by counter index. Begin and
// a plain success's Finish first run their fast scripts (charge, clear)
// so, and the full script only for the counters those leave to it.
func (s *RedisClusterStore) each(ctx context.Context, op Op, name string, script *redis.Script, success bool) ([]Result, []error) {
	return s.eachOf(ctx, op, name, script, success, false)
}

// eachOf is each; record says the script is the Finish round of a Record
// over several counters, whose marker keeps its transitions as long as
// Record's (redis_common.lua's marker_ttl).
func (s *RedisClusterStore) eachOf(ctx context.Context, op Op, name string, script *redis.Script, success, record bool) ([]Result, []error) {
	pa := &s.args
	n := len(op.Counters)
	rs, errs := make([]Result, n), make([]error, n)
	ones := make([]Op, n)
	lastConditional := -1
	for i := range op.Counters {
		ones[i] = Op{Counters: op.Counters[i : i+1], Token: op.Token}
		if op.Counters[i].When != Always && op.Familiar != nil {
			// On the user's slot, like its set of familiar sources. The
			// scripts of one slot run in pipeline order: only the last
			// teaches, so that each reads familiarity before a success
			// teaches it. (Another client's login between them may still
			// make both apply, or neither, once.)
			f := *op.Familiar
			f.Learn = false
			ones[i].Familiar = &f
			lastConditional = i
		}
	}
	if lastConditional >= 0 {
		ones[lastConditional].Familiar.Learn = op.Familiar.Learn
	}
	left := make([]int, 0, n) // counters for the full script
	switch {
	case op.Familiar != nil && script == redisScriptFinish && op.conditional():
		for i := range n {
			left = append(left, i)
		}
	case script == redisScriptBegin, script == redisScriptFinish && redisClears(op, success):
		clear := script == redisScriptFinish
		fast, keys, args, at := make([]*redis.Script, 0, n), make([][]string, 0, n), make([][]any, 0, n), make([]int, 0, n)
		for i, c := range op.Counters {
			var fs *redis.Script
			if clear {
				fs = s.clear.script(&ones[i])
			} else {
				fs = s.charge.script(&ones[i])
			}
			if fs == nil {
				left = append(left, i)
				continue
			}
			fast = append(fast, fs)
			if clear {
				keys = append(keys, s.clear.keys(nil, &ones[i], s.settledKey(c, op.Token), s.counterKey, s.familiarKey))
				args = append(args, s.clear.args(nil, &ones[i]))
			} else {
				keys = append(keys, s.charge.keys(nil, &ones[i], s.counterKey, s.familiarKey))
				args = append(args, s.charge.args(&ones[i]))
			}
			at = append(at, i)
		}
		replies, rerrs := s.pipeline(ctx, fast, keys, args)
		for j, reply := range replies {
			i := at[j]
			switch {
			case rerrs[j] != nil:
				errs[i] = s.scriptError(name, op.Counters[i], rerrs[j])
			case redisFallback(reply):
				left = append(left, i)
			case clear:
				if v := redisClearReply(reply, 0, &ones[i]); redisClearFallback(v) {
					left = append(left, i)
				} else {
					rs[i], errs[i] = redisCleared(ones[i], v)
				}
			default:
				rs[i], errs[i] = s.decodeOne(name, reply, ones[i], true)
			}
		}
		slices.Sort(left)
	default:
		for i := range n {
			left = append(left, i)
		}
	}
	if len(left) > 0 {
		keys, args := make([][]string, len(left)), make([][]any, len(left))
		for j, i := range left {
			c := op.Counters[i]
			keys[j] = []string{s.key("failed", c.Kind, c.Subject), s.key("blocked", c.Kind, c.Subject),
				s.key("pending", c.Kind, c.Subject), s.key("lockouts", c.Kind, c.Subject)}
			if redisMarked(script) {
				keys[j] = append(keys[j], s.settledKey(c, op.Token))
			}
			if f := ones[i].Familiar; f != nil {
				keys[j] = append(keys[j], s.familiarKey(f))
			}
			args[j] = pa.counter(ones[i], success)
			if record {
				args[j][4] = redisRecordFlags[b2i(success)] // ARGV[5]
			}
		}
		replies, rerrs := s.pipeline(ctx, slices.Repeat([]*redis.Script{script}, len(keys)), keys, args)
		for j, i := range left {
			if rerrs[j] != nil {
				errs[i] = s.scriptError(name, op.Counters[i], rerrs[j])
				continue
			}
			rs[i], errs[i] = s.decodeOne(name, replies[j], ones[i], script == redisScriptBegin)
		}
	}
	for _, err := range errs {
		if errors.Is(err, ErrStoreUnavailable) {
			s.reload(ctx)
			break
		}
	}
	return rs, errs
}

// settledKey is the settled marker of token on counter c's slot.
func (s *RedisClusterStore) settledKey(c Counter, token string) string {
	return s.key("settled", c.Kind, c.Subject) + ":" + token
}

// pipeline runs script once per keys[i], args[i] in one pipeline, and
// returns each reply and error. A master that lost the script (a
// restart) gets it again by Run.
func (s *RedisClusterStore) pipeline(ctx context.Context, scripts []*redis.Script, keys [][]string, args [][]any) ([]any, []error) {
	cmds := make([]*redis.Cmd, len(keys))
	pipe := s.client.Pipeline()
	for i := range keys {
		cmds[i] = scripts[i].EvalSha(ctx, pipe, keys[i], args[i]...)
	}
	_, _ = pipe.Exec(ctx) // every command keeps its own error
	replies, errs := make([]any, len(keys)), make([]error, len(keys))
	for i, cmd := range cmds {
		replies[i], errs[i] = cmd.Result()
		if redis.HasErrorPrefix(errs[i], "NOSCRIPT") {
			replies[i], errs[i] = scripts[i].Run(ctx, s.client, keys[i], args[i]...).Result()
		}
	}
	return replies, errs
}

// scriptError wraps the error of counter c's script.
func (s *RedisClusterStore) scriptError(name string, c Counter, err error) error {
	return redisStoreError(fmt.Sprintf("%s %s %.64q", name, c.Kind, c.Subject), err)
}

// decodeOne decodes the reply of a one-counter script. Its transitions
// name the counter of the one-counter op; the kind and subject are the
// same in op.
func (s *RedisClusterStore) decodeOne(name string, reply any, one Op, begin bool) (Result, error) {
	res, err := decodeRedisResult(reply, one, begin)
	if err != nil {
		return Result{}, fmt.Errorf("redis %s %s: %w", name, one.Counters[0].Kind, err)
	}
	return res, nil
}

// reload asks a cluster client to read the slot map again (in the
// background, coalesced), so that after a failover it finds the promoted
// replica at once: go-redis otherwise learns it from a MOVED reply, which a
// dead master never sends, or from its periodic reload.
func (s *RedisClusterStore) reload(ctx context.Context) {
	if c, ok := s.client.(interface{ ReloadState(context.Context) }); ok {
		c.ReloadState(ctx)
	}
}

// settleAdmission reports whether every counter admitted the charge of
// op.Token (no error, Admitted). If not, it releases the charges that were
// made, before returning, even if ctx is done. For Record's reserve round
// (reserve), only those this call made: its reply says so in LastChance
// (redis_reserve.lua); a charge its first call made stays, and becomes
// the failure it would have been.
func (s *RedisClusterStore) settleAdmission(ctx context.Context, op Op, rs []Result, errs []error, reserve bool) bool {
	var charged []Counter
	var counted []string
	admitted := 0
	for i, r := range rs {
		if errs[i] != nil || !r.Admitted {
			continue
		}
		admitted++
		if reserve && !r.LastChance {
			continue // charged by the first call, or settled by it
		}
		isCounted := len(r.Counted) == 1 && r.Counted[0]
		if isCounted && op.Counters[i].distinct() {
			// Not taken back: the member may have been in the set before
			// this attempt, and removing it would hide a failure. The
			// attempt counts as one distinct name, an over-count on the
			// safe side, and only when another counter refused it.
			continue
		}
		charged = append(charged, op.Counters[i])
		counted = append(counted, redisFlags[b2i(isCounted)].(string))
	}
	if admitted == len(op.Counters) {
		return true
	}
	if len(charged) == 0 {
		return false
	}
	ctx, cancel := s.followUp(ctx)
	defer cancel()
	// Rare (one counter refused while another admitted), so one call
	// each: Run loads the script where a restarted master lost it.
	var err error
	for i, c := range charged {
		keys := []string{s.key("failed", c.Kind, c.Subject), s.key("pending", c.Kind, c.Subject)}
		err = errors.Join(err, redisScriptRelease.Run(ctx, s.client, keys, op.Token, counted[i]).Err())
	}
	if err != nil {
		s.logs.release.Do(func() {
			s.log.Warn("redis cluster store: charge not released; it counts as a failure (repeats within a minute not logged)",
				"err", err, "kind", string(charged[0].Kind), "subject", charged[0].Subject)
		})
	}
	return false
}

// index adds the new blocks reported by the successful results to the
// blocked index.
func (s *RedisClusterStore) index(ctx context.Context, rs []Result, errs []error) {
	var ts []Transition
	for i, r := range rs {
		if errs[i] != nil {
			continue
		}
		for _, t := range r.Transitions {
			if t.Blocked {
				ts = append(ts, t)
			}
		}
	}
	if len(ts) > 0 {
		s.indexBlocks(ctx, ts)
	}
}

// followUpFloor is the least time a follow-up write gets when the
// caller's deadline has (almost) passed.
const followUpFloor = 25 * time.Millisecond

// followUp bounds a write that follows a script and must be tried even
// when the caller has given up (the index of a new block, the release of
// a charge): by the caller's deadline, but at least followUpFloor and at
// most indexTimeout. A master that hangs then delays an answer by the
// floor, not by indexTimeout.
func (s *RedisClusterStore) followUp(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.indexTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, max(time.Until(dl), followUpFloor))
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// indexBlocks adds blocks to the index of their kind, scored by their end
// as seen now (after the script: never before the real end), even if ctx
// is done: a block must be listed. A score only rises and every write
// changes it (redis_index.lua says why): one script per block, all in
// one pipeline (each kind's index is on its own slot).
func (s *RedisClusterStore) indexBlocks(ctx context.Context, ts []Transition) {
	ctx, cancel := s.followUp(ctx)
	defer cancel()
	now := time.Now()
	keys, args := make([][]string, len(ts)), make([][]any, len(ts))
	for i, t := range ts {
		score := now.Add(t.Duration).UnixMilli()
		if t.Permanent {
			score = permanentScore + now.UnixMilli()
		}
		keys[i], args[i] = []string{s.indexKey(t.Kind)}, []any{score, t.Subject}
	}
	_, errs := s.pipeline(ctx, slices.Repeat([]*redis.Script{redisScriptIndex}, len(ts)), keys, args)
	if err := errors.Join(errs...); err != nil {
		s.logs.index.Do(func() {
			s.log.Warn("redis cluster store: block not indexed; Blocked will not list it (repeats within a minute not logged)",
				"err", err, "kind", string(ts[0].Kind), "subject", ts[0].Subject)
		})
	}
}

// mergeRedisResults combines one-counter results into the Result of op,
// in Op.Counters order, as RedisStore's one script would have replied:
// a blocked counter hides the saturation of the others.
func mergeRedisResults(op Op, rs []Result, admitted bool) Result {
	res := Result{Admitted: admitted, Failures: make([]int, len(op.Counters))}
	var saturated []Kind
	for i, r := range rs {
		if len(r.Failures) == 1 {
			res.Failures[i] = r.Failures[0]
		}
		res.Blocked = append(res.Blocked, r.Blocked...)
		saturated = append(saturated, r.Saturated...)
		res.Transitions = append(res.Transitions, r.Transitions...)
		res.LastChance = res.LastChance || (admitted && r.LastChance)
		res.Familiar = res.Familiar || r.Familiar
	}
	if len(res.Blocked) == 0 {
		res.Saturated = saturated
	}
	return res
}

// randomToken returns 16 random bytes in hex.
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
