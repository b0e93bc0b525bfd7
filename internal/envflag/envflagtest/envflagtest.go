// Package envflagtest holds the one table of setting values that every
// configuration reader is tested on: the libraries' (gate, events,
// sharedip) and each binary's (cmd/gate, cmd/admin, cmd/recorder,
// cmd/notifier), whose tests run it on their own parser. A value is
// accepted by all of them with one meaning, or refused by all of them
// with an error naming the variable, so that DEFENDER_ACCESS_ATTEMPT_EXPIRATION=1.5
// cannot work in one binary and stop another.
package envflagtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Duration is one duration setting of a configuration C.
type Duration[C any] struct {
	// Name is the variable.
	Name string
	// Unit is what a bare number counts (time.Second, time.Hour, ...).
	Unit time.Duration
	// Zero says whether 0 is accepted (it means "never" or "off").
	Zero bool
	// Least is the least positive value the setting accepts (1 when
	// any positive one is); below it the reader must refuse, naming
	// the variable.
	Least time.Duration
	// Field is the setting in C.
	Field func(C) time.Duration
}

// durationValues is the table. want is the value in units of the
// setting, or a fixed duration; bad marks what the grammar refuses.
var durationValues = []struct {
	in    string
	units float64
	fixed time.Duration
	bad   bool
}{
	{in: "1.5", units: 1.5},
	{in: "36", units: 36},
	{in: " 2 ", units: 2},
	{in: "0", units: 0},
	{in: "90s", fixed: 90 * time.Second},
	{in: "1h30m", fixed: 90 * time.Minute},
	{in: "2d", fixed: 48 * time.Hour},
	{in: "-1", bad: true},
	{in: "-90s", bad: true},
	{in: "abc", bad: true},
	{in: "1,5", bad: true},
	{in: "1e3", bad: true},
	{in: "5 s", bad: true},
	{in: "9999999999999", bad: true},
	{in: "2562048h", bad: true},
}

// CheckDurations runs the table on each setting of read's configuration:
// an empty value keeps the default, a value in the grammar reads as the
// table says (or is refused, naming the variable, when the setting's
// range excludes it), and a value out of the grammar is refused with an
// error naming the variable and the value.
func CheckDurations[C any](t *testing.T, read func(lookup func(string) (string, bool)) (C, error), settings []Duration[C]) {
	t.Helper()
	def, err := read(lookup(nil))
	require.NoError(t, err, "nothing set")
	for _, s := range settings {
		t.Run(s.Name+"=", func(t *testing.T) {
			c, err := read(lookup(map[string]string{s.Name: ""}))
			require.NoError(t, err)
			assert.Equal(t, s.Field(def), s.Field(c), "empty keeps the default")
		})
		for _, v := range durationValues {
			t.Run(s.Name+"="+v.in, func(t *testing.T) {
				c, err := read(lookup(map[string]string{s.Name: v.in}))
				if v.bad {
					require.Error(t, err)
					assert.Contains(t, err.Error(), s.Name+": "+strconv.Quote(v.in))
					return
				}
				want := v.fixed
				if v.fixed == 0 {
					want = time.Duration(v.units * float64(s.Unit))
				}
				if (want == 0 && !s.Zero) || (want > 0 && want < s.Least) {
					require.Error(t, err, "out of the setting's range")
					assert.Contains(t, err.Error(), s.Name+":")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, want, s.Field(c))
			})
		}
	}
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// Over returns a lookup of l's variables, then base's: for a reader that
// needs other settings (DEFENDER_NATS_URL, ...) to read at all.
func Over(l func(string) (string, bool), base map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if v, ok := l(k); ok {
			return v, true
		}
		v, ok := base[k]
		return v, ok
	}
}
