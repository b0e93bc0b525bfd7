// Package envflag makes every environment variable of a binary also a
// command-line flag of the same meaning. A binary lists its variables;
// Bind registers one string flag per variable (DEFENDER_LOGIN_FAILURE_LIMIT
// becomes --login-failure-limit) and returns a lookup that prefers a flag
// given on the command line over the environment. The lookup has the
// signature of os.LookupEnv, so configuration readers such as
// gate.ConfigFromEnv take it unchanged and keep naming the variable in
// their errors whichever way the value came.
//
// Reader reads the values with one grammar per type for every binary and
// library (see ParseDuration): DEFENDER_ACCESS_ATTEMPT_EXPIRATION=1.5
// means 90 minutes wherever it is read.
package envflag

import (
	"flag"
	"strings"
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
