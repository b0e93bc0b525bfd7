package gate

import (
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The clear script is Finish's fast path for a success, off the login's
// path, one call for all the successes of one shape in a batch. Like the
// charge script (redis_charge.go), it is written per shape of op, in
// straight lines, with what does not change from login to login in its
// text (the marker's life, which counter counts distinct members or has
// a condition, smart lockout's age and bound), so that a success sends
// only its keys and its members and sources.
//
// The script of a shape takes, per success in turn,
//
//	KEYS  the token's settled marker; the failed, blocked and pending key
//	      of each counter; then, when op has familiar arguments, the
//	      user's set of familiar sources
//	ARGV  the member of each counter of distinct members; then, with
//	      familiar arguments, the sources and the familiar clock's time
//	      (redisFamiliarNow)
//
// For each success where no counter that applies is blocked and none has
// a charge pending (one EXISTS tells both), it deletes the failure counts
// (this attempt's charge among them; of distinct members, only this
// attempt's member goes), teaches its sources to its user when told to
// (teach in redis_familiar.lua) and marks the token settled, once: 1 in
// the reply, followed, for a success with flags, by each counter's count
// (a counter of distinct members keeps its other names; a counter whose
// condition does not hold replies -1 and is left as it is). Otherwise
// (something to lift or settle, or the token settled already) it changes
// nothing there: -1 (and zeros for the counts), and the caller runs
// redis_finish.lua for that one. The reply is one flat array, each
// success's values (redisClearWidth) in turn: a table per success cost
// Redis 4.7k instructions more per default success (callgrind, the two
// scripts side by side).

// redisClearers writes and keeps a store's clear scripts by shape.
type redisClearers struct {
	redisShapeScripts
	markerTTL string // how long a settled marker lives, in ms
}

func newRedisClearers(p *Policy) *redisClearers {
	return &redisClearers{markerTTL: redisMarkerTTL(p)}
}

// script returns the clear script of op's shape, nil when op's success
// goes to the full rules.
func (c *redisClearers) script(op *Op) *redis.Script {
	var buf [96]byte
	return c.get(redisClearShape(buf[:0], op), func() string { return c.source(op) })
}

// redisClearShape appends to b what the clear script of op depends on:
// the charge script's shape (its limits are not in the clear script, but
// a gate's do not change), then, with familiar arguments, how many
// sources op has, how long one stays familiar, how many a user keeps and
// whether a success teaches.
func redisClearShape(b []byte, op *Op) []byte {
	b = append(redisChargeShape(b, op), '|')
	if f := op.Familiar; f != nil {
		b = strconv.AppendInt(b, int64(len(f.Sources)), 10)
		b = append(b, ',')
		b = append(b, redisMillis(f.For)...)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(f.Max), 10)
		b = append(b, ',', "01"[b2i(f.Learn)])
	}
	return b
}

// keys appends to keys the clear script's KEYS for op's success: marker,
// the token's settled marker, then each counter's keys named by key, and
// familiar the key of the user's set of familiar sources.
func (c *redisClearers) keys(keys []string, op *Op, marker string, key func(what string, ct *Counter) string, familiar func(*Familiar) string) []string {
	return redisShapeKeys(append(keys, marker), op, key, familiar, op.Familiar != nil)
}

// args appends to args the clear script's ARGV for op's success.
func (c *redisClearers) args(args []any, op *Op) []any {
	return redisShapeArgs(args, op, op.Familiar != nil)
}

// redisClearWidth is how many values the clear script of op's shape
// replies per success: its answer (1, or -1 for the full rules), then,
// for a success with flags, each counter's count.
func redisClearWidth(op *Op) int {
	flags := op.Familiar != nil || op.conditional() || slices.ContainsFunc(op.Counters, func(c Counter) bool { return c.distinct() })
	return 1 + b2i(flags)*len(op.Counters)
}

// source writes the clear script of op's shape.
func (c *redisClearers) source(op *Op) string {
	n := len(op.Counters)
	f := op.Familiar
	var b luaText
	w := b.line
	itoa := strconv.Itoa
	key := func(k int) string { return "KEYS[o + " + itoa(k) + "]" }
	arg := func(k int) string { return "ARGV[a + " + itoa(k) + "]" }
	member, applies, sources, clock := redisShapeParts(op, arg, f != nil)
	members := 0
	for _, m := range member {
		if m != "" {
			members++
		}
	}
	conditional := op.conditional()
	width := redisClearWidth(op) // values per success in the reply
	teaches := f != nil && f.Learn && len(sources) > 0
	stride := itoa(1 + 3*n + b2i(f != nil)) // keys per success
	fkey := key(2 + 3*n)
	failed := func(i int) string { return key(2 + 3*i) }
	// The shebang: at maxmemory Redis refuses the script whole, before it
	// writes anything (see the counting scripts in redis.go).
	w("#!lua")
	w("-- defender's clear script for one shape of op, written by redis_clear.go")
	if teaches {
		w(redisLuaFamiliar)
	}
	w("local out = {}")
	w("for j = 0, #KEYS / ", stride, " - 1 do")
	w("local o, a, r = j * ", stride, ", j * ", itoa(members+len(sources)+b2i(f != nil)), ", j * ", itoa(width))
	if conditional {
		b.known(fkey, sources, clock, f)
	}
	mark := "not redis.call('SET', " + key(1) + ", '1', 'NX', 'PX', " + c.markerTTL + ")"
	w("if ", b.inFlight(applies, func(i int) string { return key(3 + 3*i) }, func(i int) string { return key(4 + 3*i) }), " or ", mark, " then")
	w("out[r + 1] = -1")
	for k := 2; k <= width; k++ {
		w("out[r + ", itoa(k), "] = 0")
	}
	w("else")
	// The plain counters' counts go in one DEL.
	del := func(known bool) string {
		var ks []string
		for i := range n {
			if member[i] == "" && holds(applies[i], known) {
				ks = append(ks, failed(i))
			}
		}
		if len(ks) == 0 {
			return ""
		}
		return "redis.call('DEL', " + strings.Join(ks, ", ") + ")"
	}
	if conditional {
		b.byKnown(del)
	} else if d := del(true); d != "" {
		w(d)
	}
	counts := make([]string, n)
	for i := range n {
		switch {
		case member[i] != "":
			w("redis.call('SREM', ", failed(i), ", ", member[i], ")")
			counts[i] = "redis.call('SCARD', " + failed(i) + ")"
		case applies[i] != "":
			counts[i] = "(" + applies[i] + ") and 0 or -1"
		default:
			counts[i] = "0"
		}
	}
	if teaches {
		w("teach(", fkey, ", a + ", itoa(members+1), ", a + ", itoa(members+len(sources)), ", ", clock, ", ", redisMillis(f.For), ", ", itoa(f.Max), ")")
	}
	w("out[r + 1] = 1")
	if width > 1 {
		for i := range n {
			w("out[r + ", itoa(2+i), "] = ", counts[i])
		}
	}
	w("end")
	w("end")
	w("return out")
	return b.String()
}
