package gate

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClient is the part of a go-redis v9 client that RedisStore uses:
// *redis.Client, *redis.ClusterClient and *redis.Ring all satisfy it.
type RedisClient interface {
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd
	ScriptLoad(ctx context.Context, script string) *redis.StringCmd
}

// RedisStore is the Store shared by any number of gate instances through one
// Redis (7.0 or later). Every method is one Lua script run with EVALSHA
// (EVAL when the server lost the script), so each is atomic and one round
// trip.
//
// Keys, for a counter of kind k (ip, username, pair) and subject s:
//
//	<prefix>:failed:<k>:<s>     failure count; TTL Policy.AttemptCooloff, renewed by each failure
//	<prefix>:blocked:<k>:<s>    "blocked" while blocked; TTL the lockout cool-off (none if permanent)
//	<prefix>:pending:<k>:<s>    sorted set of charged tokens scored by deadline (ms since epoch)
//	<prefix>:lockouts:<k>:<s>   lockout count; TTL Policy.LockoutMemory after the latest lockout
//	<prefix>:settled:<token>    exists once the token's outcome was reported; TTL Policy.PendingTimeout
//	<prefix>:index:blocked:<k>  sorted set of blocked subjects scored by the block's end (+inf if permanent)
//
// The first two are django-defender's keys, so operators' scripts keep
// working: a block key deleted by hand is honoured at once (its index entry
// is dropped by the next Blocked), and one set by hand blocks, though
// Blocked does not list it.
//
// One call touches the keys of all its counters and the per-kind index, so
// on Redis Cluster the prefix must carry a hash tag ("{defender}") that
// puts every key in one slot, on one master; RedisClusterStore spreads the
// subjects over all masters instead.
type RedisStore struct {
	client RedisClient
	prefix string
	policy Policy
	args   redisPolicyArgs // the policy's script arguments
	charge *redisChargers  // Begin's fast path, by shape (redis_charge.go)
	clear  *redisClearers  // a success's Finish's fast path, by shape (redis_clear.go)
}

var (
	_ Store         = (*RedisStore)(nil)
	_ finishBatcher = (*RedisStore)(nil)
	_ storeRecaller = (*RedisStore)(nil)
	_ storeRecaller = (*RedisClusterStore)(nil)
)

// NewRedisStore returns a store keeping its keys under prefix
// (DEFENDER_CACHE_PREFIX, "defender" by default) and applying p: a
// gate's store applies the gate's, Config.Policy().
func NewRedisStore(client RedisClient, prefix string, p Policy) *RedisStore {
	p = p.clone()
	return &RedisStore{client: client, prefix: prefix, policy: p, args: newRedisPolicyArgs(&p), charge: newRedisChargers(&p), clear: newRedisClearers(&p)}
}

// Policy returns the policy the store applies.
func (s *RedisStore) Policy() Policy { return s.policy.clone() }

var (
	//go:embed redis_familiar.lua
	redisLuaFamiliar string
	//go:embed redis_common.lua
	redisLuaRules string
	// redisLuaCommon is what every full script starts with: smart
	// lockout's rules (shared with the fast scripts), then the others.
	redisLuaCommon = redisLuaFamiliar + redisLuaRules
	//go:embed redis_check.lua
	redisLuaCheck string
	//go:embed redis_recall.lua
	redisLuaRecall string
	//go:embed redis_begin.lua
	redisLuaBegin string
	//go:embed redis_finish.lua
	redisLuaFinish string
	//go:embed redis_record_fast.lua
	redisLuaRecordFast string
	//go:embed redis_record.lua
	redisLuaRecord string
	//go:embed redis_block.lua
	redisLuaBlock string
	//go:embed redis_unblock.lua
	redisLuaUnblock string
	//go:embed redis_blocked.lua
	redisLuaBlocked string
	//go:embed redis_reserve.lua
	redisLuaReserve string
	//go:embed redis_unindex.lua
	redisLuaUnindex string
	//go:embed redis_index.lua
	redisLuaIndex string
	//go:embed redis_reindex.lua
	redisLuaReindex string

	// The check script carries the no-writes flag (a shebang must open the
	// script), which lets Redis run it on replicas and under memory pressure.
	redisScriptCheck = redis.NewScript("#!lua flags=no-writes\n" + redisLuaCommon + redisLuaCheck)
	// The recall script reads only, as Check (see storeRecaller).
	redisScriptRecall = redis.NewScript("#!lua flags=no-writes\n" + redisLuaCommon + redisLuaRecall)
	// The counting scripts carry a shebang without flags: at maxmemory
	// (with the noeviction policy the gate needs, see
	// CheckRedisMemoryPolicy) Redis refuses them whole, before they run,
	// and the gate decides with its local limiter. Without it a script
	// ran until its first command refused for memory, leaving what it
	// had written before (a charge removed, no failure counted).
	//
	//
	// An ordinary login runs the fast paths, charge (Begin, written per
	// shape of op: redis_charge.go) and clear (a success's Finish):
	// scripts of their own with only the keys and arguments they need, as
	// each one costs Redis time on every login.
	// They answer -1 for what they leave to the full rules. Record's fast
	// path comes first in its script, returning before the shared rules'
	// functions are even built (each call builds them anew).
	redisScriptBegin   = redis.NewScript("#!lua\n" + redisLuaCommon + redisLuaBegin)
	redisScriptFinish  = redis.NewScript("#!lua\n" + redisLuaCommon + redisLuaFinish)
	redisScriptRecord  = redis.NewScript("#!lua\n" + redisLuaRecordFast + redisLuaCommon + redisLuaRecord)
	redisScriptBlock   = redis.NewScript(redisLuaCommon + redisLuaBlock)
	redisScriptUnblock = redis.NewScript(redisLuaCommon + redisLuaUnblock)
	redisScriptBlocked = redis.NewScript(redisLuaCommon + redisLuaBlocked)
	redisScriptReindex = redis.NewScript(redisLuaReindex)
)

// Reindex adds to the blocked index every block key of every kind, and
// returns how many were missing. Blocks come into the index when the gate
// sets them; one set by hand (SET <prefix>:blocked:ip:<ip> blocked EX 300,
// as django-defender's operators do) is refused by the gate at once but
// listed by Blocked only after a Reindex. It walks the keyspace with SCAN
// in small steps (each one script), so Redis keeps serving logins; run it
// after such scripts, not on a schedule.
func (s *RedisStore) Reindex(ctx context.Context) (int, error) {
	total := 0
	for _, kind := range Kinds {
		index, base := s.blockKeys(kind)
		keys := []string{index}
		cursor := "0"
		for {
			reply, err := redisScriptReindex.Run(ctx, s.client, keys, cursor, globEscape(base)+"*", base, 1000).Result()
			if err != nil {
				return total, redisStoreError("reindex "+string(kind), err)
			}
			vals, ok := reply.([]any)
			if !ok || len(vals) != 2 {
				return total, fmt.Errorf("redis reindex %s: unexpected reply %T (%v)", kind, reply, reply)
			}
			next, ok := vals[0].(string)
			added, ok2 := vals[1].(int64)
			if !ok || !ok2 {
				return total, fmt.Errorf("redis reindex %s: unexpected reply %v", kind, vals)
			}
			total += int(added)
			if cursor = next; cursor == "0" {
				break
			}
		}
	}
	return total, nil
}

// globEscape quotes the characters SCAN's MATCH treats as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Check implements Store.
func (s *RedisStore) Check(ctx context.Context, op Op) (Result, error) {
	return s.run(ctx, "check", redisScriptCheck, op, false)
}

// Begin implements Store: the charge script of op's shape, and the full
// rules when it leaves the attempt to them (a last chance, charges in
// flight, one to settle) or op has no charge script (a report-only
// counter).
func (s *RedisStore) Begin(ctx context.Context, op Op) (Result, error) {
	if op.Token == "" {
		return Result{}, errors.New("redis begin: empty token")
	}
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis begin: %w", err)
	}
	charge := s.charge.script(&op)
	if charge == nil {
		return s.run(ctx, "begin", redisScriptBegin, op, false)
	}
	keys := s.charge.keys(make([]string, 0, 3*len(op.Counters)+1), &op, s.counterKey, s.familiarKey)
	reply, err := charge.Run(ctx, s.client, keys, s.charge.args(&op)...).Result()
	if err == nil && redisFallback(reply) {
		return s.run(ctx, "begin", redisScriptBegin, op, false)
	}
	return s.decode("begin", redisScriptBegin, op, reply, err)
}

// neverSent reports whether a store call failed with err before its
// command left the process: refused by admission (errOverloaded), no
// connection from the pool in time, or no connection made. Such a call
// ran nowhere: there is nothing to ask the store about it.
func neverSent(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, errOverloaded) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.As(err, &opErr) && opErr.Op == "dial"
}

// recall implements storeRecaller.
func (s *RedisStore) recall(ctx context.Context, op Op) (Result, error) {
	if op.Token == "" {
		return Result{}, errors.New("redis recall: empty token")
	}
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis recall: %w", err)
	}
	return s.run(ctx, "recall", redisScriptRecall, op, false)
}

// Finish implements Store: a success runs the clear script, and the full
// rules when it leaves the outcome to them (something to lift or settle,
// a counter kept on success, a token settled already).
func (s *RedisStore) Finish(ctx context.Context, op Op, success bool) (Result, error) {
	if op.Token == "" {
		return Result{}, errors.New("redis finish: empty token")
	}
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis finish: %w", err)
	}
	if clear := s.clearScript(op, success); clear != nil {
		reply, err := clear.Run(ctx, s.client, s.clear.keys(nil, &op, s.markerKey(op.Token), s.counterKey, s.familiarKey), s.clear.args(nil, &op)...).Result()
		if err != nil {
			return s.decode("finish", redisScriptFinish, op, reply, err)
		}
		if v := redisClearReply(reply, 0, &op); v != nil && !redisClearFallback(v) {
			return redisCleared(op, v)
		}
	}
	return s.run(ctx, "finish", redisScriptFinish, op, success)
}

// redisClears reports whether a Finish goes to the clear script first: a
// success where no counter is kept on success.
func redisClears(op Op, success bool) bool {
	if !success {
		return false
	}
	for _, c := range op.Counters {
		if c.KeepOnSuccess {
			return false
		}
	}
	return true
}

// clearScript returns the clear script of op's success, nil when the
// outcome goes to the full rules.
func (s *RedisStore) clearScript(op Op, success bool) *redis.Script {
	if !redisClears(op, success) {
		return nil
	}
	return s.clear.script(&op)
}

// markerKey is the settled marker of a token.
func (s *RedisStore) markerKey(token string) string {
	return s.prefix + ":settled:" + token
}

// redisFallback reports a fast script's -1: the full rules decide.
func redisFallback(reply any) bool {
	n, ok := reply.(int64)
	return ok && n == -1
}

// redisClearReply is the clear script's answer for its success j in
// reply, the redisClearWidth(op) values from there: 1 and, for a success
// with flags, each counter's count; -1 (and zeros) where the full rules
// decide. nil when the reply is not what the script sends.
func redisClearReply(reply any, j int, op *Op) []any {
	w := redisClearWidth(op)
	vals, ok := reply.([]any)
	if !ok || j < 0 || (j+1)*w > len(vals) {
		return nil
	}
	return vals[j*w : (j+1)*w]
}

// redisClearFallback reports a clear script's answer v that leaves the
// success to the full rules: -1, or not what the script sends (they
// decide then too).
func redisClearFallback(v []any) bool {
	if len(v) == 0 {
		return true
	}
	n, ok := v[0].(int64)
	return !ok || n != 1
}

// redisCleared is the Result of a success the clear script wrote and
// answered with v (not a fallback): nothing blocked, every counter at 0,
// or, for a success with flags, the counts v holds (of distinct members
// what is left; -1 for a counter whose condition did not hold).
func redisCleared(op Op, v []any) (Result, error) {
	if len(v) == 1 {
		return Result{Failures: make([]int, len(op.Counters))}, nil
	}
	short := make([]int64, 3+len(op.Counters)) // the short form: 0 (not admitted), 0, n, counts
	short[2] = int64(len(op.Counters))
	for i, x := range v[1:] {
		n, ok := x.(int64)
		if !ok {
			return Result{}, fmt.Errorf("redis finish: clear reply element %d: unexpected %T", i+1, x)
		}
		short[3+i] = n
	}
	return decodeShortRedisResult(short, op, false), nil
}

// counterKey is c's key of the given kind ("failed", "blocked", ...).
func (s *RedisStore) counterKey(what string, c *Counter) string {
	return s.prefix + ":" + what + ":" + string(c.Kind) + ":" + c.Subject
}

// familiarKey is the user's set of familiar sources.
func (s *RedisStore) familiarKey(f *Familiar) string {
	return s.prefix + ":familiar:" + f.User
}

// redisDistinct reports whether a counter of op counts distinct members.
func redisDistinct(op Op) bool {
	for i := range op.Counters {
		if op.Counters[i].distinct() {
			return true
		}
	}
	return false
}

// redisFlag is a counter's flag in the scripts' ARGV (redis_common.lua):
// "m:<member>" or "r:<member>" for distinct members, else whether it is
// kept on success.
func redisFlag(c Counter) any {
	switch {
	case c.ReportOnly:
		return "r:" + c.Member
	case c.distinct():
		return "m:" + c.Member
	}
	switch c.When {
	case IfFamiliar:
		return "f"
	case IfUnfamiliar:
		return "u"
	}
	return redisFlags[b2i(c.KeepOnSuccess)]
}

// redisMarkerTTL is how long a token's settled marker lives: as long as
// its charge may (the pending timeout), a day when charges never expire.
func redisMarkerTTL(p *Policy) string {
	if p.PendingTimeout <= 0 {
		return "86400000"
	}
	return redisMillis(p.PendingTimeout)
}

// Record implements Store.
func (s *RedisStore) Record(ctx context.Context, op Op, success bool) (Result, error) {
	if op.Token == "" {
		op.Token = "record-" + randomToken()
	}
	return s.run(ctx, "record", redisScriptRecord, op, success)
}

// Block implements Store.
func (s *RedisStore) Block(ctx context.Context, kind Kind, subject string, d time.Duration) (*Transition, error) {
	if d < 0 {
		return nil, fmt.Errorf("redis block %s %q: negative duration %s", kind, subject, d)
	}
	return s.admin(ctx, "block", redisScriptBlock, kind, subject, redisMillis(d))
}

// Unblock implements Store.
func (s *RedisStore) Unblock(ctx context.Context, kind Kind, subject string) (*Transition, error) {
	return s.admin(ctx, "unblock", redisScriptUnblock, kind, subject)
}

// admin runs an admin script (block, unblock) on a subject: its keys, and
// the subject followed by args (see redis_common.lua).
func (s *RedisStore) admin(ctx context.Context, name string, script *redis.Script, kind Kind, subject string, args ...any) (*Transition, error) {
	if err := validateSubject(kind, subject); err != nil {
		return nil, fmt.Errorf("redis %s: %w", name, err)
	}
	op := Op{Counters: []Counter{{Kind: kind, Subject: subject}}}
	reply, err := script.Run(ctx, s.client, s.counterKeys(op, false), append([]any{subject}, args...)...).Result()
	res, err := s.decode(name, script, op, reply, err)
	return redisTransition(res), err
}

// Blocked implements Store. Subjects come soonest-ending first, permanent
// blocks last.
func (s *RedisStore) Blocked(ctx context.Context, kind Kind, limit int) ([]BlockState, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("redis blocked: invalid kind %q", kind)
	}
	limit = max(limit, 0)
	index, base := s.blockKeys(kind)
	reply, err := redisScriptBlocked.Run(ctx, s.client, []string{index}, base, limit).Result()
	if err != nil {
		return nil, redisStoreError("blocked "+string(kind), err)
	}
	vals, ok := reply.([]any)
	if !ok || len(vals)%2 != 0 {
		return nil, fmt.Errorf("redis blocked %s: unexpected reply %T (%v)", kind, reply, reply)
	}
	out := make([]BlockState, 0, len(vals)/2)
	for i := 0; i < len(vals); i += 2 {
		subject, ok := vals[i].(string)
		ttl, ok2 := vals[i+1].(int64)
		if !ok || !ok2 {
			return nil, fmt.Errorf("redis blocked %s: unexpected entry %T, %T", kind, vals[i], vals[i+1])
		}
		st := BlockState{Kind: kind, Subject: subject}
		if ttl < 0 {
			st.Permanent = true
		} else {
			// A block read in its last millisecond (PTTL 0) still ends.
			st.TTL = max(time.Duration(ttl)*time.Millisecond, time.Millisecond)
		}
		out = append(out, st)
	}
	return out, nil
}

// blockKeys names the blocked index of kind and the block key of its
// subjects minus the subject (see the key layout above).
func (s *RedisStore) blockKeys(kind Kind) (index, base string) {
	return s.prefix + ":index:blocked:" + string(kind), s.prefix + ":blocked:" + string(kind) + ":"
}

// run executes one counter script (see redis_common.lua for its arguments
// and reply) and decodes the reply.
func (s *RedisStore) run(ctx context.Context, name string, script *redis.Script, op Op, success bool) (Result, error) {
	if err := validateOp(op, &s.policy); err != nil {
		return Result{}, fmt.Errorf("redis %s: %w", name, err)
	}
	reply, err := script.Run(ctx, s.client, s.counterKeys(op, redisMarked(script)), s.args.counter(op, success)...).Result()
	return s.decode(name, script, op, reply, err)
}

// redisMarked reports whether script takes its token's settled marker
// (see redis_common.lua).
func redisMarked(script *redis.Script) bool {
	return script == redisScriptFinish || script == redisScriptRecord || script == redisScriptReserve ||
		script == redisScriptBegin || script == redisScriptRecall
}

// counterKeys is KEYS of a counter script for op (see redis_common.lua),
// with the token's settled marker for the scripts that take it (marker).
// The keys are written into one string and sliced from it: one
// allocation for all of them rather than one each.
func (s *RedisStore) counterKeys(op Op, marker bool) []string {
	var b strings.Builder
	size := 0
	for _, c := range op.Counters {
		size += 4*(len(s.prefix)+len(c.Kind)+len(c.Subject)+3) + len("failed") + len("blocked") + len("pending") + len("lockouts") +
			len(s.prefix) + len(":index:blocked:") + len(c.Kind)
	}
	if marker {
		size += len(s.prefix) + len(":settled:") + len(op.Token)
	}
	b.Grow(size)
	ends := make([]int, 0, 11)
	for _, c := range op.Counters {
		for _, what := range [...]string{"failed", "blocked", "pending", "lockouts"} {
			b.WriteString(s.prefix)
			b.WriteByte(':')
			b.WriteString(what)
			b.WriteByte(':')
			b.WriteString(string(c.Kind))
			b.WriteByte(':')
			b.WriteString(c.Subject)
			ends = append(ends, b.Len())
		}
	}
	if marker {
		b.WriteString(s.prefix)
		b.WriteString(":settled:")
		b.WriteString(op.Token)
		ends = append(ends, b.Len())
	}
	for _, c := range op.Counters {
		b.WriteString(s.prefix)
		b.WriteString(":index:blocked:")
		b.WriteString(string(c.Kind))
		ends = append(ends, b.Len())
	}
	if op.Familiar != nil {
		b.WriteString(s.prefix)
		b.WriteString(":familiar:")
		b.WriteString(op.Familiar.User)
		ends = append(ends, b.Len())
	}
	all := b.String()
	keys := make([]string, len(ends))
	start := 0
	for i, end := range ends {
		keys[i], start = all[start:end], end
	}
	return keys
}

// decode turns a counter script's reply, or its error, into a Result.
func (s *RedisStore) decode(name string, script *redis.Script, op Op, reply any, err error) (Result, error) {
	if err != nil {
		c := op.Counters[0]
		return Result{}, redisStoreError(fmt.Sprintf("%s %s %.64q", name, c.Kind, c.Subject), err)
	}
	res, err := decodeRedisResult(reply, op, script == redisScriptBegin)
	if err != nil {
		return Result{}, fmt.Errorf("redis %s: %w", name, err)
	}
	return res, nil
}

// redisPipeliner is a client that can send several commands in one write
// (*redis.Client, *redis.ClusterClient and *redis.Ring can).
type redisPipeliner interface {
	Pipeline() redis.Pipeliner
}

// finishBatch settles several charges in one round trip: their scripts
// (clear for a plain success, else Finish) go in one pipeline and run in
// order. Without a pipelining client, for a script Redis lost, and for a
// success the clear script leaves to the full rules (something blocked or
// pending on its subjects), they are run one by one after it.
func (s *RedisStore) finishBatch(ctx context.Context, ops []Op, success []bool) ([]Result, []error) {
	res, errs := make([]Result, len(ops)), make([]error, len(ops))
	p, ok := s.client.(redisPipeliner)
	if !ok {
		for i := range ops {
			res[i], errs[i] = s.Finish(ctx, ops[i], success[i])
		}
		return res, errs
	}
	pipe := p.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	// Plain successes of one shape in a row go in one clear script, in
	// their place; clearAt[i] is op i's place in its script (-1: not in
	// one).
	var clearScript *redis.Script
	var clearKeys []string
	var clearArgv []any
	clearN := 0 // successes in the script being gathered
	clearAt := make([]int, len(ops))
	clearCmd := make([]*redis.Cmd, len(ops))
	run := 0 // first op of the run of successes being gathered
	flush := func(end int) {
		if clearScript != nil {
			cmd := clearScript.EvalSha(ctx, pipe, clearKeys, clearArgv...)
			for j := run; j < end; j++ {
				clearCmd[j] = cmd
			}
		}
		clearScript, clearKeys, clearArgv = nil, nil, nil
	}
	for i, op := range ops {
		clearAt[i] = -1
		if err := validateOp(op, &s.policy); err != nil || op.Token == "" {
			continue // Finish says why
		}
		clear := s.clearScript(op, success[i])
		if clear == nil {
			flush(i)
			cmds[i] = redisScriptFinish.EvalSha(ctx, pipe, s.counterKeys(op, true), s.args.counter(op, success[i])...)
			continue
		}
		if clear != clearScript {
			flush(i)
			run, clearScript, clearN = i, clear, 0
		}
		clearAt[i] = clearN
		clearN++
		clearKeys = s.clear.keys(clearKeys, &op, s.markerKey(op.Token), s.counterKey, s.familiarKey)
		clearArgv = s.clear.args(clearArgv, &op)
	}
	flush(len(ops))
	_, _ = pipe.Exec(ctx) // every command keeps its own error
	for i, cmd := range cmds {
		if clearAt[i] >= 0 {
			reply, err := clearCmd[i].Result()
			v := redisClearReply(reply, clearAt[i], &ops[i])
			switch {
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				res[i], errs[i] = s.Finish(ctx, ops[i], success[i])
			case err != nil:
				res[i], errs[i] = s.decode("finish", redisScriptFinish, ops[i], nil, err)
			case v == nil || redisClearFallback(v):
				res[i], errs[i] = s.run(ctx, "finish", redisScriptFinish, ops[i], success[i])
			default:
				res[i], errs[i] = redisCleared(ops[i], v)
			}
			continue
		}
		if cmd == nil || redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			res[i], errs[i] = s.Finish(ctx, ops[i], success[i])
			continue
		}
		reply, err := cmd.Result()
		res[i], errs[i] = s.decode("finish", redisScriptFinish, ops[i], reply, err)
	}
	return res, errs
}

// counter is ARGV of a counter script for op (see redis_common.lua).
func (a *redisPolicyArgs) counter(op Op, success bool) []any {
	args := make([]any, 0, 6+3*len(op.Counters)+len(a.cooloffs))
	args = append(args, a.head[:]...)
	args = append(args, op.Token, redisFlags[b2i(success)], len(op.Counters))
	for _, c := range op.Counters {
		args = append(args, c.Subject, c.Limit, redisFlag(c))
	}
	args = appendFamiliar(args, op.Familiar)
	return append(args, a.cooloffs...)
}

// appendFamiliar appends the familiar arguments of a counter script
// (redis_common.lua): their number, then the age, the most kept, whether
// a success teaches, the familiar clock's time, and the sources.
func appendFamiliar(args []any, f *Familiar) []any {
	if f == nil {
		return append(args, redisFlags[0])
	}
	args = append(args, 4+len(f.Sources), redisMillis(f.For), f.Max, redisFlags[b2i(f.Learn)], redisFamiliarNow())
	for _, s := range f.Sources {
		args = append(args, s)
	}
	return args
}

// redisFamiliarNow is the familiar clock: the time in ms, by the gate's
// clock, that a success scores a familiar source with and that the age of
// a familiar source is read against. Every other time in the scripts is
// Redis's own (TIME), so that gates agree on expiries; here a skew of
// seconds between gates is nothing to an age of days (DEFENDER_FAMILIAR_DAYS),
// and Redis's TIME in a script cost 17k of the 262k instructions of a
// smart-lockout success (6%, once to teach; one more on a familiar hit),
// measured under callgrind with the clear script with and without it.
func redisFamiliarNow() int64 { return time.Now().UnixMilli() }

// redisFlags are "0" and "1", boxed once: ARGV[5] for a failure and a
// success, and a counter's keep flag.
var redisFlags = [2]any{"0", "1"}

// redisRecordFlags are ARGV[5] of the Finish round of a Record over
// several counters (RedisClusterStore), for a failure and a success.
var redisRecordFlags = [2]any{"r0", "r1"}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// redisPolicyArgs is a Policy's part of the scripts' ARGV, formatted and
// boxed once, by the store that applies the policy.
type redisPolicyArgs struct {
	head     [3]any // ARGV[1..3] of a counter script
	cooloffs []any  // the lockout cool-offs at its end
}

func newRedisPolicyArgs(p *Policy) redisPolicyArgs {
	a := redisPolicyArgs{
		head: [3]any{redisMillis(p.AttemptCooloff), redisMillis(p.PendingTimeout), redisMillis(p.LockoutMemory)},
	}
	for _, d := range p.LockoutCooloffs {
		a.cooloffs = append(a.cooloffs, redisMillis(d))
	}
	return a
}

// decodeRedisResult reads the flat integer reply described in redis_common.lua.
// withLockouts fills Result.Lockouts and Result.Pending (Begin).
func decodeRedisResult(reply any, op Op, withLockouts bool) (Result, error) {
	vals, ok := reply.([]any)
	if !ok {
		return Result{}, fmt.Errorf("unexpected reply %T", reply)
	}
	n := make([]int64, len(vals))
	for i, v := range vals {
		if n[i], ok = v.(int64); !ok {
			return Result{}, fmt.Errorf("reply element %d: unexpected %T", i, v)
		}
	}
	const head, perCounter, perTransition = 3, 6, 7
	nc := len(op.Counters)
	if len(n) == head+nc && nc > 0 && n[2] == int64(nc) {
		return decodeShortRedisResult(n, op, withLockouts), nil
	}
	if len(n) < head || n[2] != int64(nc) || (len(n)-head-perCounter*nc) < 0 ||
		(len(n)-head-perCounter*nc)%perTransition != 0 {
		return Result{}, fmt.Errorf("malformed reply of %d values for %d counters", len(n), nc)
	}
	res := Result{
		Admitted:   n[0] == 1,
		LastChance: n[1] == 1,
		Failures:   make([]int, nc),
	}
	if withLockouts {
		res.Lockouts, res.Pending = make([]int, nc), make([]int, nc)
		if n[0] == 1 {
			res.Counted = make([]bool, nc)
		}
	}
	for i, c := range op.Counters {
		v := n[head+perCounter*i:]
		res.Familiar = res.Familiar || familiarBy(c.When, v[0])
		if v[0] == -1 { // its condition did not hold: not read, not written
			if res.Counted != nil {
				res.Counted[i] = true // nothing to settle there
			}
			continue
		}
		res.Failures[i] = int(v[0])
		switch v[1] {
		case 1:
			res.Blocked = append(res.Blocked, BlockState{Kind: c.Kind, Subject: c.Subject, TTL: time.Duration(v[2]) * time.Millisecond})
		case 2:
			res.Blocked = append(res.Blocked, BlockState{Kind: c.Kind, Subject: c.Subject, Permanent: true})
		}
		switch {
		case v[3] == 1:
			res.Saturated = append(res.Saturated, c.Kind)
		case v[3] == 2 && res.Counted != nil:
			res.Counted[i] = true
		}
		if withLockouts {
			res.Lockouts[i], res.Pending[i] = int(v[4]), int(v[5])
		}
	}
	for t := n[head+perCounter*nc:]; len(t) > 0; t = t[perTransition:] {
		i := t[0] - 1
		if i < 0 || i >= int64(nc) {
			return Result{}, fmt.Errorf("transition of counter %d out of range", t[0])
		}
		c := op.Counters[i]
		tr := Transition{
			Kind:      c.Kind,
			Subject:   c.Subject,
			Blocked:   t[1] == 1,
			Duration:  time.Duration(t[2]) * time.Millisecond,
			Permanent: t[3] == 1,
			Failures:  int(t[4]),
			Lockouts:  int(t[5]),
		}
		if t[6] > 0 {
			tr.At = time.UnixMilli(t[6])
		}
		res.Transitions = append(res.Transitions, tr)
	}
	return res, nil
}

// familiarBy reports whether a counter's failures in a reply say the
// source was familiar: a counter for familiar sources that applied, or one
// for unfamiliar sources left out (-1).
func familiarBy(w When, failures int64) bool {
	if failures == -1 {
		return w == IfUnfamiliar
	}
	return w == IfFamiliar
}

// decodeShortRedisResult reads the short reply of a fast path (see
// redis_common.lua): admitted, 0, n, then each counter's failures.
func decodeShortRedisResult(n []int64, op Op, begin bool) Result {
	nc := int(n[2])
	res := Result{Admitted: n[0] == 1, Failures: make([]int, nc)}
	for i := range nc {
		res.Familiar = res.Familiar || familiarBy(op.Counters[i].When, n[3+i])
		if n[3+i] != -1 { // -1: its condition did not hold, not read nor written
			res.Failures[i] = int(n[3+i])
		}
	}
	if begin {
		res.Counted, res.Lockouts, res.Pending = make([]bool, nc), make([]int, nc), make([]int, nc)
		for i := range nc {
			res.Counted[i], res.Lockouts[i] = true, -1
		}
	}
	return res
}

// redisTransition returns the one transition of an admin call, or nil.
func redisTransition(res Result) *Transition {
	if len(res.Transitions) == 0 {
		return nil
	}
	t := res.Transitions[0]
	return &t
}

// redisMillis is d in whole milliseconds for PEXPIRE and friends, rounded up so
// that a positive duration never becomes 0 ("none").
func redisMillis(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

// redisStoreError wraps a failed script call. Errors that Redis itself replied
// (a wrong key type, a script error) are returned as they are; anything
// else means Redis could not be reached in time and also wraps
// ErrStoreUnavailable.
func redisStoreError(what string, err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) && !redisTransient(err) {
		return fmt.Errorf("redis %s: %w", what, err)
	}
	return fmt.Errorf("redis %s: %w: %w", what, ErrStoreUnavailable, err)
}

// redisTransient reports a Redis reply that means "not now" rather than a fault
// of the request: the server is loading, busy, out of memory or has lost
// its master.
func redisTransient(err error) bool {
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "OOM"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
