package gate

import (
	_ "embed"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// The charge script is Begin's fast path, the one script of an ordinary
// login. Redis spends on it, besides the commands, about a microsecond per
// key and argument it is sent and per line of Lua it runs, so it is not
// one general script but one per shape of op, written here in straight
// lines: what does not change from login to login (the limits, the
// cool-off, which counter counts distinct members or has a condition, how
// long a source stays familiar) is written into the script, and a login
// sends only its keys and its members. A gate has a handful of shapes
// (IPv4 or IPv6, combo mode, smart lockout), so a handful of scripts.
//
// The script of a shape takes
//
//	KEYS  the failed, blocked and pending key of each counter, in turn;
//	      then, when a counter has a condition and op has familiar
//	      sources, the user's set of familiar sources
//	ARGV  the member of each counter of distinct members, in turn; then
//	      those sources and the familiar clock's time (redisFamiliarNow)
//
// It reads familiarity first (ZSCORE of each source until one hits),
// leaving out the counters whose condition does not hold. One EXISTS over
// the block keys and pending sets of the others then finds a blocked
// attempt or a charge in flight (redis_charge_found.lua: refused when
// blocked or when the pending charges saturate a counter, else -1, and
// the caller runs the full rules, redis_begin.lua, which count it beside
// them or settle one past its deadline). Otherwise it counts the attempt
// as a failure at once on each (INCR, or SADD and SCARD), renews their
// TTLs and replies the short form of redis_common.lua (no charge pending:
// the EXISTS said so), so that a failure needs no second call and a
// success is one clear (redis_clear.go). A count that passes its limit is
// undone (redis_charge_over.lua) and left to the full rules: the last
// chance, once per block.
//
// Nothing a client sends reaches a script's text: subjects, members and
// sources travel as KEYS and ARGV; the text holds only the op's numbers
// (limits, durations, counts), which validateOp checked.
//
// The pending sets are in the EXISTS although only the full rules write
// them (a last chance; every attempt of a first-protocol gate): a count
// can fall back below its limit while a last chance is in flight (a
// success clears it, a member leaves a set of distinct members, a count
// expires), and an attempt counted then without reading the charge would
// be one guess past limit+1. The pending key costs a login one key per
// counter.

var (
	//go:embed redis_charge_found.lua
	redisLuaChargeFound string
	//go:embed redis_charge_over.lua
	redisLuaChargeOver string
)

// redisChargeShapes bounds the charge scripts a store writes: past it, an
// op of a new shape goes to the full rules (a caller of the Store
// interface may send limits of its own on every call).
const redisChargeShapes = 64

// redisShapeScripts keeps the scripts a store writes per shape of op, at
// most redisChargeShapes of them.
type redisShapeScripts struct {
	mu      sync.Mutex
	scripts atomic.Pointer[map[string]*redis.Script] // replaced whole, read without a lock
}

// get returns the script of shape, written by write the first time; nil
// past the bound.
func (c *redisShapeScripts) get(shape []byte, write func() string) *redis.Script {
	if m := c.scripts.Load(); m != nil {
		if s := (*m)[string(shape)]; s != nil {
			return s
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[string]*redis.Script
	if m := c.scripts.Load(); m != nil {
		old = *m
	}
	if s := old[string(shape)]; s != nil {
		return s
	}
	if len(old) >= redisChargeShapes {
		return nil
	}
	s := redis.NewScript(write())
	scripts := make(map[string]*redis.Script, len(old)+1)
	for k, v := range old {
		scripts[k] = v
	}
	scripts[string(shape)] = s
	c.scripts.Store(&scripts)
	return s
}

// redisChargers writes and keeps a store's charge scripts by shape.
type redisChargers struct {
	redisShapeScripts
	cooloff string // the attempt cool-off in ms, "0": never forgotten
}

func newRedisChargers(p *Policy) *redisChargers {
	return &redisChargers{cooloff: redisMillis(p.AttemptCooloff)}
}

// redisChargeFast reports whether op can take a charge script: a
// report-only counter goes to the full rules.
func redisChargeFast(op *Op) bool {
	for i := range op.Counters {
		if op.Counters[i].ReportOnly {
			return false
		}
	}
	return true
}

// familiarSources reports whether op's charge reads familiarity: a
// counter with a condition and sources to look up.
func (op *Op) familiarSources() bool {
	return op.Familiar != nil && len(op.Familiar.Sources) > 0 && op.conditional()
}

// script returns the charge script of op's shape, nil when op goes to
// the full rules.
func (c *redisChargers) script(op *Op) *redis.Script {
	if !redisChargeFast(op) {
		return nil
	}
	var buf [96]byte
	return c.get(redisChargeShape(buf[:0], op), func() string { return c.source(op) })
}

// redisChargeShape appends to b what the charge script of op depends on:
// per counter its kind of count, its condition and its limit; with
// familiar sources, how long one stays familiar and how many op has.
func redisChargeShape(b []byte, op *Op) []byte {
	for i := range op.Counters {
		ct := &op.Counters[i]
		b = append(b, "pm"[b2i(ct.distinct())], "-fu"[ct.When])
		b = strconv.AppendInt(b, int64(ct.Limit), 10)
		b = append(b, ',')
	}
	if op.familiarSources() {
		b = append(b, redisMillis(op.Familiar.For)...)
		b = append(b, '#')
		b = strconv.AppendInt(b, int64(len(op.Familiar.Sources)), 10)
	}
	return b
}

// keys appends to keys the charge script's KEYS for op, each counter's
// keys named by key (the store's naming: plain, or hash-tagged on a
// cluster), and familiar the key of the user's set of familiar sources.
func (c *redisChargers) keys(keys []string, op *Op, key func(what string, ct *Counter) string, familiar func(*Familiar) string) []string {
	return redisShapeKeys(keys, op, key, familiar, op.familiarSources())
}

// args is the charge script's ARGV for op.
func (c *redisChargers) args(op *Op) []any {
	return redisShapeArgs(nil, op, op.familiarSources())
}

// redisShapeKeys appends to keys what the scripts written per shape take
// of op: each counter's failed, blocked and pending key, named by key,
// then, with fam, the user's set of familiar sources, named by familiar.
func redisShapeKeys(keys []string, op *Op, key func(what string, ct *Counter) string, familiar func(*Familiar) string, fam bool) []string {
	for i := range op.Counters {
		keys = append(keys, key("failed", &op.Counters[i]), key("blocked", &op.Counters[i]), key("pending", &op.Counters[i]))
	}
	if fam {
		keys = append(keys, familiar(op.Familiar))
	}
	return keys
}

// redisShapeArgs appends to args what the scripts written per shape take
// of op as arguments: the member of each counter of distinct members,
// then, with fam, op's familiar sources and the familiar clock's time
// (redisFamiliarNow).
func redisShapeArgs(args []any, op *Op, fam bool) []any {
	for i := range op.Counters {
		if op.Counters[i].distinct() {
			args = append(args, op.Counters[i].Member)
		}
	}
	if fam {
		for _, s := range op.Familiar.Sources {
			args = append(args, s)
		}
		args = append(args, redisFamiliarNow())
	}
	return args
}

// luaText is a script being written by shape.
type luaText struct{ strings.Builder }

// line writes parts, then a line break.
func (t *luaText) line(parts ...string) {
	for _, p := range parts {
		t.WriteString(p)
	}
	t.WriteByte('\n')
}

// when writes stmt, under cond unless cond is "" (always).
func (t *luaText) when(cond, stmt string) {
	if cond == "" {
		t.line(stmt)
		return
	}
	t.line("if ", cond, " then ", stmt, " end")
}

// inFlight returns the Lua condition that a counter that applies is
// blocked or has a charge pending: one EXISTS over their blocked and
// pending keys (the expressions blocked(i), pending(i)). With conditions
// (applies[i], as for when), it first writes that EXISTS in two branches,
// one per value of known, each naming its keys: a list built at run time
// and unpacked cost Redis 4.8k instructions per smart-lockout charge
// (callgrind, the two scripts side by side).
func (t *luaText) inFlight(applies []string, blocked, pending func(i int) string) string {
	keys := func(known bool) []string {
		var ks []string
		for i, a := range applies {
			if holds(a, known) {
				ks = append(ks, blocked(i), pending(i))
			}
		}
		return ks
	}
	if !slices.ContainsFunc(applies, func(a string) bool { return a != "" }) {
		return "redis.call('EXISTS', " + strings.Join(keys(true), ", ") + ") ~= 0"
	}
	t.line("local ex = 0")
	t.byKnown(func(known bool) string {
		if ks := keys(known); len(ks) > 0 {
			return "ex = redis.call('EXISTS', " + strings.Join(ks, ", ") + ")"
		}
		return ""
	})
	return "ex ~= 0"
}

// byKnown writes stmt(true) under known and stmt(false) under not known
// (a statement of "" writes nothing there).
func (t *luaText) byKnown(stmt func(known bool) string) {
	yes, no := stmt(true), stmt(false)
	switch {
	case yes != "" && no != "":
		t.line("if known then ", yes, " else ", no, " end")
	case yes != "":
		t.when("known", yes)
	case no != "":
		t.when("not known", no)
	}
}

// holds reports whether a counter's condition (applies[i] of
// redisShapeParts: "", "known" or "not known") holds for known.
func holds(cond string, known bool) bool {
	return cond == "" || (cond == "known") == known
}

// redisShapeParts is what the scripts written per shape say of op, its
// arguments laid out as redisShapeArgs sends them (arg(k): the k-th): per
// counter, the Lua expression of its member ("" for a plain count) and
// the condition under which it applies ("known", "not known"; "" always);
// then, with fam, the expressions of op's familiar sources and of the
// familiar clock's time in ms (a number).
func redisShapeParts(op *Op, arg func(k int) string, fam bool) (member, applies, sources []string, clock string) {
	member, applies = make([]string, len(op.Counters)), make([]string, len(op.Counters))
	k := 0
	for i := range op.Counters {
		if op.Counters[i].distinct() {
			k++
			member[i] = arg(k)
		}
		switch op.Counters[i].When {
		case IfFamiliar:
			applies[i] = "known"
		case IfUnfamiliar:
			applies[i] = "not known"
		}
	}
	if fam {
		for range op.Familiar.Sources {
			k++
			sources = append(sources, arg(k))
		}
		clock = "tonumber(" + arg(k+1) + ")"
	}
	return member, applies, sources, clock
}

// known writes the Lua that sets known when one of the sources (their
// ARGV expressions) logged in as the user within f.For of clock (the
// familiar clock's time): ZSCORE of each in the set fkey until one hits.
// No source, or no set, leaves known false.
func (t *luaText) known(fkey string, sources []string, clock string, f *Familiar) {
	t.line("local known = false")
	if len(sources) == 0 {
		return
	}
	age := redisMillis(f.For)
	for _, src := range sources {
		t.line("if not known then")
		t.line("  local s = redis.call('ZSCORE', ", fkey, ", ", src, ")")
		t.line("  known = s and tonumber(s) >= ", clock, " - ", age)
		t.line("end")
	}
}

// source writes the charge script of op's shape.
func (c *redisChargers) source(op *Op) string {
	n := len(op.Counters)
	var b luaText
	w := b.line
	itoa := strconv.Itoa
	// The shebang: at maxmemory Redis refuses the script whole, before it
	// writes anything (see the counting scripts in redis.go).
	w("#!lua")
	w("-- defender's charge script for one shape of op, written by redis_charge.go")
	w("local n = ", itoa(n))
	member, applies, sources, clock := redisShapeParts(op, func(k int) string { return "ARGV[" + itoa(k) + "]" }, op.familiarSources())
	always := slices.Contains(applies, "")
	if op.conditional() {
		b.known("KEYS["+itoa(3*n+1)+"]", sources, clock, op.Familiar)
		if !always {
			// No counter applies: nothing to do.
			none := make([]string, n)
			cond := make([]string, n)
			for i := range none {
				none[i], cond[i] = "-1", "("+applies[i]+")"
			}
			w("if not (", strings.Join(cond, " or "), ") then return {1, 0, n, ", strings.Join(none, ", "), "} end")
		}
	}
	// Each counter's descriptor for the slow paths, with extra fields.
	desc := func(extra func(i int) string) string {
		var d strings.Builder
		d.WriteString("local cs = {")
		for i := range op.Counters {
			if i > 0 {
				d.WriteString(", ")
			}
			e := "{f = KEYS[" + itoa(3*i+1) + "], b = KEYS[" + itoa(3*i+2) + "], p = KEYS[" + itoa(3*i+3) + "], l = " + itoa(op.Counters[i].Limit)
			if member[i] != "" {
				e += ", m = " + member[i]
			}
			if applies[i] != "" {
				e += ", skip = not (" + applies[i] + ")"
			}
			d.WriteString(e + extra(i) + "}")
		}
		d.WriteString("}")
		return d.String()
	}
	// The check for a block or a charge in flight.
	w("if ", b.inFlight(applies, func(i int) string { return "KEYS[" + itoa(3*i+2) + "]" },
		func(i int) string { return "KEYS[" + itoa(3*i+3) + "]" }), " then")
	w(desc(func(int) string { return "" }))
	w(redisLuaChargeFound)
	w("end")
	// The counts.
	over := make([]string, n)
	counts := make([]string, n)
	for i, ct := range op.Counters {
		c, d, fk := "c"+itoa(i+1), "d"+itoa(i+1), "KEYS["+itoa(3*i+1)+"]"
		counts[i] = c
		sadd, incr := d+" = redis.call('SADD', "+fk+", "+member[i]+") == 1; "+c+" = redis.call('SCARD', "+fk+")", c+" = redis.call('INCR', "+fk+")"
		switch {
		case ct.distinct() && applies[i] == "":
			w("local ", d, " = redis.call('SADD', ", fk, ", ", member[i], ") == 1")
			w("local ", c, " = redis.call('SCARD', ", fk, ")")
		case ct.distinct():
			w("local ", c, ", ", d, " = -1, false")
			w("if ", applies[i], " then ", sadd, " end")
		case applies[i] == "":
			w("local ", incr)
		default:
			w("local ", c, " = -1")
			w("if ", applies[i], " then ", incr, " end")
		}
		if ct.distinct() {
			over[i] = "(" + d + " and " + c + " > " + itoa(ct.Limit) + ")"
		} else {
			over[i] = c + " > " + itoa(ct.Limit)
		}
	}
	w("if ", strings.Join(over, " or "), " then")
	w(desc(func(i int) string {
		s := ", c = c" + itoa(i+1)
		if member[i] != "" {
			s += ", d = d" + itoa(i+1)
		}
		return s
	}))
	w(redisLuaChargeOver)
	w("end")
	// The sliding TTLs.
	if c.cooloff != "0" {
		for i := range op.Counters {
			b.when(applies[i], "redis.call('PEXPIRE', KEYS["+itoa(3*i+1)+"], "+c.cooloff+")")
		}
	}
	w("return {1, 0, n, ", strings.Join(counts, ", "), "}")
	return b.String()
}
