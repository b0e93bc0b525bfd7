package envflag

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Day is the unit of settings counted in days (DEFENDER_FAMILIAR_DAYS).
const Day = 24 * time.Hour

// Reader reads typed settings through a lookup (os.LookupEnv, or Bind's)
// with one grammar per type for every binary and library. A value that is
// unset, empty or blank leaves the setting at its default; a bad one is
// collected, as an error naming the variable and the value, and leaves
// the default too. Err returns them all at once.
type Reader struct {
	lookup func(string) (string, bool)
	errs   []error
}

// NewReader returns a Reader over lookup.
func NewReader(lookup func(string) (string, bool)) *Reader {
	return &Reader{lookup: lookup}
}

// Get returns the value of name without surrounding spaces, and whether
// it is set to something.
func (r *Reader) Get(name string) (string, bool) {
	v, ok := r.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// Errorf collects "name: <message>".
func (r *Reader) Errorf(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// Add collects err (a library's configuration error, which names its
// variables already); nil is ignored.
func (r *Reader) Add(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// Err returns every error collected, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Parse sets *p to parse(value) when name is set; a failure is collected
// as `name: "value" is not <want>: <error>`. The typed methods are Parse
// with this package's grammars; a library uses it for its own types.
func Parse[T any](r *Reader, name string, p *T, want string, parse func(string) (T, error)) {
	v, ok := r.Get(name)
	if !ok {
		return
	}
	x, err := parse(v)
	if err != nil {
		r.Errorf(name, "%q is not %s: %v", v, want, err)
		return
	}
	*p = x
}

// String sets *p to the value of name.
func (r *Reader) String(name string, p *string) {
	if v, ok := r.Get(name); ok {
		*p = v
	}
}

// Secret sets *p to the value of name exactly as given, spaces included
// (a password may end in one), when it is set at all.
func (r *Reader) Secret(name string, p *string) {
	if v, ok := r.lookup(name); ok {
		*p = v
	}
}

// Bool reads true, 1, yes or on; false, 0, no or off, in any case.
func (r *Reader) Bool(name string, p *bool) {
	Parse(r, name, p, "a boolean", ParseBool)
}

// Int reads a whole number in decimal; its range is the caller's to check.
func (r *Reader) Int(name string, p *int) {
	Parse(r, name, p, "a whole number", ParseInt)
}

// IntIn reads a whole number from least to most.
func (r *Reader) IntIn(name string, p *int, least, most int) {
	Parse(r, name, p, fmt.Sprintf("a whole number from %d to %d", least, most), func(s string) (int, error) {
		n, err := ParseInt(s)
		if err == nil && (n < least || n > most) {
			err = errors.New("out of range")
		}
		return n, err
	})
}

// Bytes reads a size (see ParseBytes).
func (r *Reader) Bytes(name string, p *int64) {
	Parse(r, name, p, "a size like 268435456, 256MiB or 1GB", ParseBytes)
}

// Duration reads a duration (see ParseDuration) whose bare numbers count
// unit; 0 is accepted.
func (r *Reader) Duration(name string, p *time.Duration, unit time.Duration) {
	Parse(r, name, p, "a duration "+durationForms(unit), func(s string) (time.Duration, error) { return ParseDuration(s, unit) })
}

// PositiveDuration reads a duration as Duration does, refusing 0.
func (r *Reader) PositiveDuration(name string, p *time.Duration, unit time.Duration) {
	Parse(r, name, p, "a positive duration "+durationForms(unit), func(s string) (time.Duration, error) {
		d, err := ParseDuration(s, unit)
		if err == nil && d == 0 {
			err = errors.New("zero")
		}
		return d, err
	})
}

// Durations reads a comma list of durations, each as Duration reads
// one; Python's brackets around it ([60, 300, 0]) are allowed.
func (r *Reader) Durations(name string, p *[]time.Duration, unit time.Duration) {
	Parse(r, name, p, "a comma list of durations "+durationForms(unit)+", such as 60,300,0", func(s string) ([]time.Duration, error) {
		var out []time.Duration
		for part := range strings.SplitSeq(strings.Trim(s, "[]"), ",") {
			d, err := ParseDuration(strings.TrimSpace(part), unit)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", strings.TrimSpace(part), err)
			}
			out = append(out, d)
		}
		return out, nil
	})
}

// List reads a comma list, each item trimmed, empty items dropped.
func (r *Reader) List(name string, p *[]string) {
	Parse(r, name, p, "a comma list", func(s string) ([]string, error) { return SplitList(s), nil })
}

// SplitList splits a comma list, trimming each item and dropping empty ones.
func SplitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// ParseBool reads true, 1, yes or on; false, 0, no or off, in any case.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, errors.New("want true/false, 1/0, yes/no or on/off")
}

// ParseInt reads a whole number in decimal.
func ParseInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return 0, ne.Err
	}
	return n, err
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	// longest suffixes first
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseBytes reads a byte count with an optional unit: KiB, MiB, GiB,
// TiB (or K, M, G, T) are powers of 1024; KB, MB, GB, TB powers of 1000.
func ParseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > (1<<63-1)/mult {
		return 0, errors.New("out of range")
	}
	return n * mult, nil
}

// Errors of ParseDuration.
var (
	ErrNegative = errors.New("negative")
	ErrTooLarge = errors.New("too large")
)

// ParseDuration is the one grammar of a duration setting: a Go duration
// ("90s", "1h30m", "250ms"), a number of days ("7d", "1.5d"), or a bare
// number, whole or decimal, in the setting's unit ("300" seconds,
// "1.5" hours). Negative values and values past about 290 years are
// refused.
func ParseDuration(s string, unit time.Duration) (time.Duration, error) {
	if strings.HasPrefix(s, "-") {
		return 0, ErrNegative
	}
	if isNumber(s) {
		return scale(s, unit)
	}
	if days, ok := strings.CutSuffix(s, "d"); ok && isNumber(days) {
		return scale(days, Day)
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && goDuration.MatchString(s):
		return 0, ErrTooLarge // well formed: time.ParseDuration overflowed
	case err != nil:
		return 0, errors.New("bad syntax")
	case d < 0:
		return 0, ErrNegative
	}
	return d, nil
}

// goDuration is the syntax time.ParseDuration takes.
var goDuration = regexp.MustCompile(`^\+?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

// isNumber: digits, optionally a point and more digits.
func isNumber(s string) bool {
	whole, frac, point := strings.Cut(s, ".")
	return digits(whole) && (!point || digits(frac))
}

func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// scale is the decimal number s (isNumber) times unit, exactly for the
// whole part.
func scale(s string, unit time.Duration) (time.Duration, error) {
	whole, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, ErrTooLarge
	}
	d := time.Duration(n) * unit
	if frac != "" {
		f, _ := strconv.ParseFloat("0."+frac, 64)
		add := time.Duration(math.Round(f * float64(unit)))
		if d > math.MaxInt64-add {
			return 0, ErrTooLarge
		}
		d += add
	}
	return d, nil
}

// durationForms describes the grammar for unit, for error messages.
func durationForms(unit time.Duration) string {
	return "like 90s, 1h30m, 7d or a number of " + UnitName(unit)
}

// UnitName is the plural name of a duration setting's unit.
func UnitName(unit time.Duration) string {
	switch unit {
	case time.Millisecond:
		return "milliseconds"
	case time.Second:
		return "seconds"
	case time.Minute:
		return "minutes"
	case time.Hour:
		return "hours"
	case Day:
		return "days"
	}
	return unit.String() + "s"
}
