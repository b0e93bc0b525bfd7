package envflag_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/envflag"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		unit time.Duration
		want time.Duration
		err  error // nil: want; errAny: any error
	}{
		{"300", time.Second, 300 * time.Second, nil},
		{"0", time.Second, 0, nil},
		{"1.5", time.Hour, 90 * time.Minute, nil},
		{"24", time.Hour, 24 * time.Hour, nil},
		{"250", time.Millisecond, 250 * time.Millisecond, nil},
		{"0.5", time.Millisecond, 500 * time.Microsecond, nil},
		{"30", envflag.Day, 30 * 24 * time.Hour, nil},
		{"90s", time.Hour, 90 * time.Second, nil},
		{"1h30m", time.Second, 90 * time.Minute, nil},
		{"+5m", time.Second, 5 * time.Minute, nil},
		{"7d", time.Second, 7 * 24 * time.Hour, nil},
		{"1.5d", time.Hour, 36 * time.Hour, nil},
		{"2562047h", time.Second, 2562047 * time.Hour, nil},
		{"-1", time.Second, 0, envflag.ErrNegative},
		{"-1h", time.Hour, 0, envflag.ErrNegative},
		{"-0.5", time.Hour, 0, envflag.ErrNegative},
		{"2562048h", time.Second, 0, envflag.ErrTooLarge},
		{"9999999999999", time.Millisecond, 0, envflag.ErrTooLarge},
		{"99999999999999999999", time.Second, 0, envflag.ErrTooLarge},
		{"106752d", time.Second, 0, envflag.ErrTooLarge},
		{"abc", time.Second, 0, errAny},
		{"", time.Second, 0, errAny},
		{"1.", time.Second, 0, errAny},
		{".5", time.Second, 0, errAny},
		{"1,5", time.Hour, 0, errAny},
		{"1e3", time.Second, 0, errAny},
		{"0x10", time.Second, 0, errAny},
		{"5 s", time.Second, 0, errAny},
		{"d", time.Second, 0, errAny},
		{"NaN", time.Second, 0, errAny},
	}
	for _, tc := range tests {
		t.Run(tc.in+"/"+envflag.UnitName(tc.unit), func(t *testing.T) {
			d, err := envflag.ParseDuration(tc.in, tc.unit)
			switch tc.err {
			case nil:
				require.NoError(t, err)
				assert.Equal(t, tc.want, d)
			case errAny:
				assert.Error(t, err)
			default:
				assert.ErrorIs(t, err, tc.err)
			}
		})
	}
}

var errAny = errors.New("any error")

// A reader keeps defaults for what is unset or blank, and collects every
// bad value, each naming its variable and value.
func TestReader(t *testing.T) {
	env := map[string]string{
		"N": " 42 ", "B": "YES", "D": "1.5", "L": "a, ,b", "S": " s ", "P": " pass ", "DS": "[60, 5m, 0]", "Z": "  ",
		"BAD_N": "three", "BAD_B": "maybe", "BAD_D": "-1", "BAD_RANGE": "70000", "BAD_ZERO": "0", "BAD_DS": "60,x",
	}
	r := envflag.NewReader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var (
		n, z, badN, badRange = 1, 7, 2, 3
		b, badB              bool
		d, badD, badZero     = time.Minute, time.Minute, time.Minute
		l                    []string
		s, p, unset          = "", "", "default"
		ds, badDS            []time.Duration
	)
	r.Int("N", &n)
	r.Int("Z", &z)
	r.Int("UNSET", &z)
	r.Bool("B", &b)
	r.Duration("D", &d, time.Hour)
	r.List("L", &l)
	r.String("S", &s)
	r.Secret("P", &p)
	r.String("UNSET", &unset)
	r.Durations("DS", &ds, time.Second)
	r.Int("BAD_N", &badN)
	r.Bool("BAD_B", &badB)
	r.Duration("BAD_D", &badD, time.Second)
	r.IntIn("BAD_RANGE", &badRange, 1, 65535)
	r.PositiveDuration("BAD_ZERO", &badZero, time.Second)
	r.Durations("BAD_DS", &badDS, time.Second)

	assert.Equal(t, 42, n)
	assert.Equal(t, 7, z, "blank keeps the default")
	assert.True(t, b)
	assert.Equal(t, 90*time.Minute, d)
	assert.Equal(t, []string{"a", "b"}, l)
	assert.Equal(t, "s", s)
	assert.Equal(t, " pass ", p, "a secret is taken as given")
	assert.Equal(t, "default", unset)
	assert.Equal(t, []time.Duration{time.Minute, 5 * time.Minute, 0}, ds)
	assert.Equal(t, 2, badN, "a bad value keeps the default")
	assert.Equal(t, 3, badRange)
	assert.Equal(t, time.Minute, badZero)
	assert.Nil(t, badDS)

	err := r.Err()
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	assert.Equal(t, []string{
		`BAD_N: "three" is not a whole number: invalid syntax`,
		`BAD_B: "maybe" is not a boolean: want true/false, 1/0, yes/no or on/off`,
		`BAD_D: "-1" is not a duration like 90s, 1h30m, 7d or a number of seconds: negative`,
		`BAD_RANGE: "70000" is not a whole number from 1 to 65535: out of range`,
		`BAD_ZERO: "0" is not a positive duration like 90s, 1h30m, 7d or a number of seconds: zero`,
		`BAD_DS: "60,x" is not a comma list of durations like 90s, 1h30m, 7d or a number of seconds, such as 60,300,0: "x": bad syntax`,
	}, lines)
}

func TestReaderNoErrors(t *testing.T) {
	r := envflag.NewReader(func(string) (string, bool) { return "", false })
	n := 5
	r.Int("X", &n)
	r.Add(nil)
	assert.NoError(t, r.Err())
	assert.Equal(t, 5, n)
}

// FuzzParseDuration: whatever the input, a value it accepts is not
// negative and reads back the same from its Go spelling, and a bare
// number of seconds reads as the Go duration with an "s" does.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"300", "1.5", "90s", "1h30m", "7d", "-1", "abc", "", "9999999999999", "0.000000001", "2562047h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := envflag.ParseDuration(s, time.Second)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, d, time.Duration(0))
		back, err := envflag.ParseDuration(d.String(), time.Second)
		require.NoError(t, err, d.String())
		require.Equal(t, d, back)
		if strings.Trim(s, "0123456789") == "" {
			g, gerr := time.ParseDuration(s + "s")
			if gerr == nil {
				require.Equal(t, g, d, s)
			}
		}
	})
}
