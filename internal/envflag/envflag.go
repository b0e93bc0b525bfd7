// Package envflag makes every environment variable of a binary also a
// command-line flag of the same meaning. A binary lists its variables;
// Bind registers one string flag per variable (DEFENDER_LOGIN_FAILURE_LIMIT
// becomes --login-failure-limit) and returns a lookup that prefers a flag
// given on the command line over the environment. The lookup has the
// signature of os.LookupEnv, so configuration readers such as
// gate.ConfigFromEnv take it unchanged and keep naming the variable in
// their errors whichever way the value came.
package envflag

import (
	"errors"
	"flag"
	"strconv"
	"strings"
	"time"
)

// Prefix is stripped from variable names to make flag names.
const Prefix = "DEFENDER_"

// Var describes one variable.
type Var struct {
	// Name of the environment variable, e.g. DEFENDER_HTTP_ADDR.
	Name string
	// Usage is a short description for -h, default included ("" prints
	// only the variable).
	Usage string
}

// FlagName is the flag of a variable: without Prefix, lower case, with
// dashes for underscores (DEFENDER_LOGIN_FAILURE_LIMIT → login-failure-limit).
func FlagName(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, Prefix)), "_", "-")
}

// value is a string flag that remembers whether it was given.
type value struct {
	s   string
	set bool
}

func (v *value) String() string { return v.s }

func (v *value) Set(s string) error {
	v.s, v.set = s, true
	return nil
}

// Bind registers a string flag on fs for each variable and returns the
// lookup of settings: the flag's value when the flag was given (even if
// empty), else env(name) (os.LookupEnv in a main). Call the lookup after
// fs.Parse. Names not in vars are looked up in env only. A variable listed
// twice is registered once, with its first description: a binary rewords
// a library's variable by listing its own Var before the library's.
func Bind(fs *flag.FlagSet, vars []Var, env func(string) (string, bool)) func(string) (string, bool) {
	values := make(map[string]*value, len(vars))
	for _, v := range vars {
		if _, dup := values[v.Name]; dup {
			continue
		}
		val := &value{}
		values[v.Name] = val
		usage := "env " + v.Name
		if v.Usage != "" {
			usage = v.Usage + " (env " + v.Name + ")"
		}
		fs.Var(val, FlagName(v.Name), usage)
	}
	return func(name string) (string, bool) {
		if v, ok := values[name]; ok && v.set {
			return v.s, true
		}
		if env == nil {
			return "", false
		}
		return env(name)
	}
}

// Names turns a list of variable names into Vars without descriptions.
func Names(names ...string) []Var {
	out := make([]Var, len(names))
	for i, n := range names {
		out[i] = Var{Name: n}
	}
	return out
}

// Vars turns a library's list of variables (gate.EnvVars, events.EnvVars:
// structs of a Name and a Usage, like Var) into Vars.
func Vars[V ~struct{ Name, Usage string }](vs []V) []Var {
	out := make([]Var, len(vs))
	for i, v := range vs {
		out[i] = Var(v)
	}
	return out
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

// ParseDuration is the grammar of a duration setting: a Go duration
// ("90s", "1h30m"), a whole number of days ("7d") or plain seconds;
// negative values are refused.
func ParseDuration(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		d = time.Duration(n) * time.Second
		if n > int64(1<<63-1)/int64(time.Second) {
			return 0, errors.New("too large")
		}
	} else if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > int64(1<<63-1)/int64(24*time.Hour) {
			return 0, errors.New("bad days")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, err
		}
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}
