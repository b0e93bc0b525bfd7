package gate

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/envflag"
)

// FailMode says what the gate does when its store does not answer in
// time: slow, hung, down, or with too many calls in flight already.
type FailMode string

// Mode says whether the gate refuses (DEFENDER_MODE).
type Mode string

const (
	// ModeEnforce, the default, refuses what its decisions refuse.
	ModeEnforce Mode = "enforce"
	// ModeObserve computes and counts every decision as enforce would, but
	// refuses nothing, whatever the fail mode: for rolling the gate out on
	// a live site. The store evolves exactly as under enforce: an attempt
	// that would be refused is counted as refused (nothing charged, its
	// success clears nothing). Decisions say Observed, attempt events
	// Observe, and would-be blocks are published as observe events, on
	// subjects of their own, which no subscriber of block subjects sees.
	ModeObserve Mode = "observe"
)

const (
	// FailLocal, the default, decides with the gate's local limiter: the
	// same rules over what this process has seen (the blocks and counts
	// its store answered, the attempts the store admitted to it, and what
	// it decided itself). The decision says Degraded. At most limit+1
	// attempts per subject reach the password check per process and
	// cool-off, however the store fails; logins go on.
	FailLocal FailMode = "local"
	// FailClosed refuses the attempt (the middleware answers 503): no
	// guessing while the store is late, but no logins either, and an
	// attacker who loads the store makes everyone's login a 503.
	FailClosed FailMode = "closed"
	// FailOpen is the former name of FailLocal, kept so that
	// DEFENDER_FAIL_MODE=open keeps working; it no longer lets attempts
	// through uncounted.
	//
	// Deprecated: use FailLocal.
	FailOpen FailMode = "open"
)

// canonical is m with its former name replaced.
func (m FailMode) canonical() FailMode {
	if m == FailOpen {
		return FailLocal
	}
	return m
}

// DefaultMemoryMaxBytes is the default of MemoryOptions.MaxBytes and of
// DEFENDER_MEMORY_MAX_BYTES.
const DefaultMemoryMaxBytes = 128 << 20

// Config holds every setting of the gate. DefaultConfig gives the defaults;
// ConfigFromEnv reads DEFENDER_* variables over them. Field comments name
// the variable.
type Config struct {
	// FailureLimit is the number of failures tolerated before a block
	// (DEFENDER_LOGIN_FAILURE_LIMIT, 3): failure limit+1 blocks.
	FailureLimit int
	// IPFailureLimit (DEFENDER_LOGIN_FAILURE_LIMIT_IP) and
	// UsernameFailureLimit (DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME) override
	// FailureLimit per side; ConfigFromEnv defaults them to FailureLimit.
	IPFailureLimit       int
	UsernameFailureLimit int
	// LockOutByIPAndUsername is combo mode
	// (DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME): failures are counted for the
	// (IP, username) pair with FailureLimit, so one user behind a shared IP
	// cannot lock out the others. A success never clears the IP.
	LockOutByIPAndUsername bool
	// DisableIPLockout (DEFENDER_DISABLE_IP_LOCKOUT) and
	// DisableUsernameLockout (DEFENDER_DISABLE_USERNAME_LOCKOUT) turn one
	// side off. In combo mode, disabling a side counts the other side alone.
	DisableIPLockout       bool
	DisableUsernameLockout bool
	// AttemptCooloff is how long failures are remembered after the latest
	// one (DEFENDER_ATTEMPT_COOLOFF_TIME, default DEFENDER_COOLOFF_TIME =
	// 300 s); 0 = forever.
	AttemptCooloff time.Duration
	// LockoutCooloffs are the durations of the first, second, ... block of a
	// subject (DEFENDER_LOCKOUT_COOLOFF_TIME, one value or a comma list that
	// escalates; default DEFENDER_COOLOFF_TIME). 0 = never expires.
	LockoutCooloffs []time.Duration
	// BehindReverseProxy (DEFENDER_BEHIND_REVERSE_PROXY) takes the client
	// address from ReverseProxyHeader (DEFENDER_REVERSE_PROXY_HEADER,
	// X-Forwarded-For), read from the right, skipping TrustedProxies
	// (DEFENDER_TRUSTED_PROXIES, CIDR list). When TrustedProxies is set, the
	// header is ignored unless the direct peer is one of them.
	BehindReverseProxy bool
	ReverseProxyHeader string
	TrustedProxies     []netip.Prefix
	// IPv6Prefix is the prefix length by which IPv6 clients are counted
	// (DEFENDER_IPV6_PREFIX, 64): an attacker holds a whole /64.
	IPv6Prefix int
	// SprayLimit is the number of distinct usernames that may fail from
	// one source (an address, an IPv6 client by IPv6Prefix) within the
	// attempt cool-off before the source is blocked (DEFENDER_SPRAY_LIMIT,
	// 10; 0 turns spraying detection off): the next new username's
	// failure blocks it (KindSpray). A username that logs in from the
	// source stops counting there; no success clears the others. Counted
	// in every lockout mode, combo mode included.
	SprayLimit int
	// SprayIPv6Prefix is the wider network by which IPv6 sources are
	// counted too (DEFENDER_SPRAY_IPV6_PREFIX, 48), with SprayNetLimit
	// (DEFENDER_SPRAY_LIMIT_NET, 20), so that a sprayer rotating its /64s
	// is still seen (KindSprayNet). Equal to IPv6Prefix: not counted.
	SprayIPv6Prefix int
	SprayNetLimit   int
	// Mode is ModeEnforce or ModeObserve (DEFENDER_MODE, enforce).
	Mode Mode
	// SmartLockout (DEFENDER_SMART_LOCKOUT, false) counts a user's
	// failures apart for the sources familiar to the user and for the
	// others, so that attackers who block the user's unfamiliar counter
	// leave the user's own sources their access. A source (address, or
	// signed device) that logged in as a user is familiar to that user for
	// FamiliarFor after its latest login (DEFENDER_FAMILIAR_DAYS, 30 days);
	// FamiliarMax (DEFENDER_FAMILIAR_MAX, 20) is how many a user keeps,
	// the least recent dropped first. Off by default: its successes teach
	// their sources through the store's full rules, which cost Redis about
	// twice an ordinary success (see docs/DESIGN.md).
	SmartLockout bool
	FamiliarFor  time.Duration
	FamiliarMax  int
	// DeviceKey signs device tokens (DEFENDER_DEVICE_KEY, 16 bytes or
	// more, the same on every instance); empty: a random key per process,
	// so devices are familiar to this process only, until it restarts.
	DeviceKey []byte
	// UsernameFormField is the form field holding the username
	// (DEFENDER_USERNAME_FORM_FIELD, "username").
	UsernameFormField string
	// MaxUsernameLength caps usernames, in characters, after normalisation
	// (DEFENDER_MAX_USERNAME_LENGTH, 255).
	MaxUsernameLength int
	// KeyPrefix prefixes every store key (DEFENDER_CACHE_PREFIX, "defender").
	KeyPrefix string
	// LockoutURL, if set, answers a locked-out request with a 302 there
	// (DEFENDER_LOCKOUT_URL).
	LockoutURL string
	// LockoutTemplate, if set, is the path of an html/template rendered as
	// the lockout page (DEFENDER_LOCKOUT_TEMPLATE) with cooloff_time_seconds,
	// cooloff_time_minutes and failure_limit.
	LockoutTemplate string
	// RedisURL selects the Redis store (DEFENDER_REDIS_URL); empty means the
	// in-memory store.
	RedisURL string
	// StoreTimeout bounds every store call, the wait for its turn included
	// (DEFENDER_REDIS_TIMEOUT, 100 ms).
	StoreTimeout time.Duration
	// StoreMaxInFlight bounds the store calls a login waits for at once in
	// this process (DEFENDER_REDIS_MAX_IN_FLIGHT, default 0: 8 per CPU).
	// A call that cannot start before its deadline is decided by FailMode
	// at once instead of queueing past it.
	StoreMaxInFlight int
	// FailMode decides when the store does not answer in time
	// (DEFENDER_FAIL_MODE, local).
	FailMode FailMode
	// IPWhitelist (DEFENDER_IP_WHITELIST, CIDR or addresses) and
	// UsernameWhitelist (DEFENDER_USERNAME_WHITELIST) are never blocked;
	// IPBlacklist (DEFENDER_IP_BLACKLIST) is always refused.
	IPWhitelist       []netip.Prefix
	UsernameWhitelist []string
	IPBlacklist       []netip.Prefix
	// StoreAccessAttempts publishes an event for every attempt
	// (DEFENDER_STORE_ACCESS_ATTEMPTS, true). Block events are always sent.
	StoreAccessAttempts bool
	// AccessAttemptExpiration is how long attempts are kept in the history
	// and lockouts counted for escalation (DEFENDER_ACCESS_ATTEMPT_EXPIRATION,
	// 24 h; a bare number is hours, decimals allowed, as in every binary).
	AccessAttemptExpiration time.Duration
	// PendingTimeout is how long an attempt may stay between Begin and its
	// outcome before it counts as a failure (DEFENDER_PENDING_TIMEOUT, 30 s).
	PendingTimeout time.Duration
	// MemoryMaxEntries and MemoryMaxBytes bound the in-memory store, and
	// the local limiter beside a Redis store (DEFENDER_MEMORY_MAX_ENTRIES,
	// 1,000,000; DEFENDER_MEMORY_MAX_BYTES, 128 MiB).
	MemoryMaxEntries int
	MemoryMaxBytes   int64
}

// DefaultConfig returns the defaults of django-defender and of the new settings.
func DefaultConfig() Config {
	return Config{
		FailureLimit:            3,
		IPFailureLimit:          3,
		UsernameFailureLimit:    3,
		AttemptCooloff:          300 * time.Second,
		LockoutCooloffs:         []time.Duration{300 * time.Second},
		ReverseProxyHeader:      "X-Forwarded-For",
		IPv6Prefix:              64,
		SprayLimit:              10,
		SprayIPv6Prefix:         48,
		SprayNetLimit:           20,
		Mode:                    ModeEnforce,
		FamiliarFor:             30 * 24 * time.Hour,
		FamiliarMax:             20,
		UsernameFormField:       "username",
		MaxUsernameLength:       255,
		KeyPrefix:               "defender",
		StoreTimeout:            100 * time.Millisecond,
		FailMode:                FailLocal,
		StoreAccessAttempts:     true,
		AccessAttemptExpiration: 24 * time.Hour,
		PendingTimeout:          30 * time.Second,
		MemoryMaxEntries:        1_000_000,
		MemoryMaxBytes:          DefaultMemoryMaxBytes,
	}
}

// Validate reports the first setting that cannot work, naming its variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	for name, v := range map[string]int{
		"DEFENDER_LOGIN_FAILURE_LIMIT":          c.FailureLimit,
		"DEFENDER_LOGIN_FAILURE_LIMIT_IP":       c.IPFailureLimit,
		"DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME": c.UsernameFailureLimit,
	} {
		if v < 0 || v > 1_000_000 {
			bad(name, "%d is out of range 0..1000000", v)
		}
	}
	if c.DisableIPLockout && c.DisableUsernameLockout {
		bad("DEFENDER_DISABLE_IP_LOCKOUT", "both IP and username lockout are disabled: the gate would protect nothing")
	}
	if c.AttemptCooloff < 0 {
		bad("DEFENDER_ATTEMPT_COOLOFF_TIME", "negative")
	}
	if len(c.LockoutCooloffs) == 0 {
		bad("DEFENDER_LOCKOUT_COOLOFF_TIME", "needs at least one value")
	}
	for _, d := range c.LockoutCooloffs {
		if d < 0 {
			bad("DEFENDER_LOCKOUT_COOLOFF_TIME", "negative value %s", d)
		}
	}
	if c.BehindReverseProxy && c.ReverseProxyHeader == "" {
		bad("DEFENDER_REVERSE_PROXY_HEADER", "empty")
	}
	if strings.EqualFold(c.ReverseProxyHeader, "Forwarded") {
		// Its entries are for=... pairs, which the gate does not parse:
		// every client would be counted as the proxy, and one attacker
		// would block everybody behind it.
		bad("DEFENDER_REVERSE_PROXY_HEADER", "Forwarded (RFC 7239) is not supported; have the proxy set X-Forwarded-For or X-Real-IP")
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		bad("DEFENDER_IPV6_PREFIX", "%d is out of range 1..128", c.IPv6Prefix)
	}
	// A source's set holds up to limit+1 names: the bound is its memory.
	if c.SprayLimit < 0 || c.SprayLimit > 1_000_000 {
		bad("DEFENDER_SPRAY_LIMIT", "%d is out of range 0..1000000", c.SprayLimit)
	}
	if c.SprayNetLimit < 1 || c.SprayNetLimit > 1_000_000 {
		bad("DEFENDER_SPRAY_LIMIT_NET", "%d is out of range 1..1000000", c.SprayNetLimit)
	}
	if c.SprayIPv6Prefix < 16 || c.SprayIPv6Prefix > 128 {
		// At or beyond DEFENDER_IPV6_PREFIX it adds nothing: not counted.
		bad("DEFENDER_SPRAY_IPV6_PREFIX", "%d is out of range 16..128", c.SprayIPv6Prefix)
	}
	if c.Mode != ModeEnforce && c.Mode != ModeObserve && c.Mode != "" {
		bad("DEFENDER_MODE", "%q is neither enforce nor observe", c.Mode)
	}
	if c.FamiliarFor < 24*time.Hour || c.FamiliarFor > 3650*24*time.Hour {
		bad("DEFENDER_FAMILIAR_DAYS", "%s is out of range 1..3650 days", c.FamiliarFor)
	}
	if c.FamiliarMax < 1 || c.FamiliarMax > 1000 {
		bad("DEFENDER_FAMILIAR_MAX", "%d is out of range 1..1000", c.FamiliarMax)
	}
	if n := len(c.DeviceKey); n > 0 && n < 16 {
		bad("DEFENDER_DEVICE_KEY", "%d bytes is too short, use at least 16 (e.g. openssl rand -hex 32)", n)
	}
	if c.UsernameFormField == "" {
		bad("DEFENDER_USERNAME_FORM_FIELD", "empty")
	}
	if c.MaxUsernameLength < 1 || c.MaxUsernameLength > 4096 {
		bad("DEFENDER_MAX_USERNAME_LENGTH", "%d is out of range 1..4096", c.MaxUsernameLength)
	}
	if c.KeyPrefix == "" || strings.ContainsAny(c.KeyPrefix, " \t\r\n") {
		bad("DEFENDER_CACHE_PREFIX", "%q must be non-empty without spaces", c.KeyPrefix)
	}
	if c.StoreTimeout <= 0 {
		bad("DEFENDER_REDIS_TIMEOUT", "must be positive")
	}
	if m := c.FailMode.canonical(); m != FailLocal && m != FailClosed {
		bad("DEFENDER_FAIL_MODE", "%q is neither local nor closed (open is the former name of local)", c.FailMode)
	}
	if c.StoreMaxInFlight < 0 || c.StoreMaxInFlight > 100_000 {
		bad("DEFENDER_REDIS_MAX_IN_FLIGHT", "%d is out of range 0..100000", c.StoreMaxInFlight)
	}
	if c.AccessAttemptExpiration <= 0 {
		bad("DEFENDER_ACCESS_ATTEMPT_EXPIRATION", "must be positive")
	}
	if c.PendingTimeout <= 0 {
		bad("DEFENDER_PENDING_TIMEOUT", "must be positive")
	}
	if c.MemoryMaxEntries < 1 {
		bad("DEFENDER_MEMORY_MAX_ENTRIES", "must be positive")
	}
	if c.MemoryMaxBytes < 1<<20 {
		bad("DEFENDER_MEMORY_MAX_BYTES", "%d is below 1 MiB", c.MemoryMaxBytes)
	}
	return errors.Join(errs...)
}

// countsPairs reports combo mode with both sides on: the gate counts
// (IP, username) pairs alone. With one side disabled, combo mode counts
// the other side alone.
func (c *Config) countsPairs() bool {
	return c.LockOutByIPAndUsername && !c.DisableIPLockout && !c.DisableUsernameLockout
}

// Policy is the timings a store under a gate with this configuration
// must apply: its attempt and lockout cool-offs, its lockout memory
// (DEFENDER_ACCESS_ATTEMPT_EXPIRATION) and its pending timeout. Build the
// store with it, NewRedisStore(client, prefix, cfg.Policy()) or
// NewMemoryStore(MemoryOptions{Policy: cfg.Policy()}); New refuses a
// store that applies another.
func (c Config) Policy() Policy {
	return Policy{
		AttemptCooloff:  c.AttemptCooloff,
		LockoutCooloffs: slices.Clone(c.LockoutCooloffs),
		LockoutMemory:   c.AccessAttemptExpiration,
		PendingTimeout:  c.PendingTimeout,
	}
}

// EnvVars lists every variable ConfigFromEnv reads, each a Name and a
// one-line Usage, default included, for flags and docs.
var EnvVars = []envflag.Var{
	{Name: "DEFENDER_LOGIN_FAILURE_LIMIT", Usage: "failures tolerated before a block (default 3)"},
	{Name: "DEFENDER_LOGIN_FAILURE_LIMIT_IP", Usage: "failure limit per IP (default DEFENDER_LOGIN_FAILURE_LIMIT)"},
	{Name: "DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME", Usage: "failure limit per username (default DEFENDER_LOGIN_FAILURE_LIMIT)"},
	{Name: "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME", Usage: "count and block the (IP, username) pair only (default false)"},
	{Name: "DEFENDER_DISABLE_IP_LOCKOUT", Usage: "never block by IP (default false)"},
	{Name: "DEFENDER_DISABLE_USERNAME_LOCKOUT", Usage: "never block by username (default false)"},
	{Name: "DEFENDER_COOLOFF_TIME", Usage: "seconds failures are remembered and blocks last; 0 = forever (default 300)"},
	{Name: "DEFENDER_ATTEMPT_COOLOFF_TIME", Usage: "seconds failures are remembered (default DEFENDER_COOLOFF_TIME)"},
	{Name: "DEFENDER_LOCKOUT_COOLOFF_TIME", Usage: "seconds a block lasts, or an escalating list like 60,300,0 (default DEFENDER_COOLOFF_TIME)"},
	{Name: "DEFENDER_BEHIND_REVERSE_PROXY", Usage: "take the client address from DEFENDER_REVERSE_PROXY_HEADER (default false)"},
	{Name: "DEFENDER_REVERSE_PROXY_HEADER", Usage: "header holding the client address behind a proxy (default X-Forwarded-For)"},
	{Name: "DEFENDER_TRUSTED_PROXIES", Usage: "CIDR list of the proxies whose header is believed"},
	{Name: "DEFENDER_IPV6_PREFIX", Usage: "prefix length by which IPv6 clients are counted (default 64)"},
	{Name: "DEFENDER_SPRAY_LIMIT", Usage: "distinct usernames that may fail from one source within the attempt cool-off before it is blocked; 0 = off (default 10)"},
	{Name: "DEFENDER_SPRAY_IPV6_PREFIX", Usage: "wider IPv6 network by which spraying is counted too (default 48)"},
	{Name: "DEFENDER_SPRAY_LIMIT_NET", Usage: "distinct usernames that may fail from one such IPv6 network (default 20)"},
	{Name: "DEFENDER_MODE", Usage: "enforce, or observe: decide and count as enforce would, refuse nothing (default enforce)"},
	{Name: "DEFENDER_SMART_LOCKOUT", Usage: "count a user's failures apart for the sources it logged in from and the others, whose block leaves the user's own sources their access (default false)"},
	{Name: "DEFENDER_FAMILIAR_DAYS", Usage: "smart lockout: days a source that logged in as a user stays familiar to it (default 30)"},
	{Name: "DEFENDER_FAMILIAR_MAX", Usage: "familiar sources a user keeps at most (default 20)"},
	{Name: "DEFENDER_DEVICE_KEY", Usage: "key signing device tokens (16+ bytes), the same on every instance (default: random per process)"},
	{Name: "DEFENDER_USERNAME_FORM_FIELD", Usage: "form field holding the username (default username)"},
	{Name: "DEFENDER_MAX_USERNAME_LENGTH", Usage: "characters of a username kept after normalisation (default 255)"},
	{Name: "DEFENDER_CACHE_PREFIX", Usage: "prefix of store keys (default defender)"},
	{Name: "DEFENDER_LOCKOUT_URL", Usage: "redirect locked-out requests there"},
	{Name: "DEFENDER_LOCKOUT_TEMPLATE", Usage: "html/template of the lockout page"},
	{Name: "DEFENDER_REDIS_URL", Usage: "Redis shared by every instance: redis://host:6379/0, redis+cluster://h1:7000,h2:7001 or redis+sentinel://s1:26379/master (default: in-memory store, single instance)"},
	{Name: "DEFENDER_REDIS_TIMEOUT", Usage: "bound of every store call, milliseconds or a duration like 250ms (default 100)"},
	{Name: "DEFENDER_REDIS_MAX_IN_FLIGHT", Usage: "store calls a process waits for at once; the others are decided by the fail mode at once (default 8 per CPU)"},
	{Name: "DEFENDER_FAIL_MODE", Usage: "when the store does not answer in time: local (decide with this process's local limiter) or closed (503); open is the former name of local (default local)"},
	{Name: "DEFENDER_IP_WHITELIST", Usage: "addresses or CIDRs never blocked"},
	{Name: "DEFENDER_USERNAME_WHITELIST", Usage: "usernames never blocked"},
	{Name: "DEFENDER_IP_BLACKLIST", Usage: "addresses or CIDRs always refused"},
	{Name: "DEFENDER_STORE_ACCESS_ATTEMPTS", Usage: "publish an event per attempt; block events are always published (default true)"},
	{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Usage: "how long lockouts count for escalation: hours (1.5 is 90 minutes) or a duration like 36h (default 24)"},
	{Name: "DEFENDER_PENDING_TIMEOUT", Usage: "seconds a two-phase attempt may wait for its outcome before it counts as a failure (default 30)"},
	{Name: "DEFENDER_MEMORY_MAX_ENTRIES", Usage: "subjects the in-memory store, or the local limiter, tracks at most (default 1000000)"},
	{Name: "DEFENDER_MEMORY_MAX_BYTES", Usage: "bytes the in-memory store, or the local limiter, takes at most, e.g. 256MiB; the heap may grow to twice this (default 128MiB)"},
}

// ConfigFromEnv reads DEFENDER_* variables through lookup (os.LookupEnv in
// a main) over DefaultConfig, and validates the result. Every error names
// the variable at fault, and all of them are returned together. Durations
// are a Go duration ("90s", "1h30m"), days ("7d") or a bare number, whole
// or decimal, in the variable's documented unit: seconds, but hours for
// DEFENDER_ACCESS_ATTEMPT_EXPIRATION, milliseconds for
// DEFENDER_REDIS_TIMEOUT and days for DEFENDER_FAMILIAR_DAYS.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	r := envflag.NewReader(lookup)
	r.Int("DEFENDER_LOGIN_FAILURE_LIMIT", &c.FailureLimit)
	c.IPFailureLimit, c.UsernameFailureLimit = c.FailureLimit, c.FailureLimit
	r.Int("DEFENDER_LOGIN_FAILURE_LIMIT_IP", &c.IPFailureLimit)
	r.Int("DEFENDER_LOGIN_FAILURE_LIMIT_USERNAME", &c.UsernameFailureLimit)
	r.Bool("DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME", &c.LockOutByIPAndUsername)
	r.Bool("DEFENDER_DISABLE_IP_LOCKOUT", &c.DisableIPLockout)
	r.Bool("DEFENDER_DISABLE_USERNAME_LOCKOUT", &c.DisableUsernameLockout)
	cooloff := c.AttemptCooloff
	r.Duration("DEFENDER_COOLOFF_TIME", &cooloff, time.Second)
	c.AttemptCooloff, c.LockoutCooloffs = cooloff, []time.Duration{cooloff}
	r.Duration("DEFENDER_ATTEMPT_COOLOFF_TIME", &c.AttemptCooloff, time.Second)
	r.Durations("DEFENDER_LOCKOUT_COOLOFF_TIME", &c.LockoutCooloffs, time.Second)
	r.Bool("DEFENDER_BEHIND_REVERSE_PROXY", &c.BehindReverseProxy)
	r.String("DEFENDER_REVERSE_PROXY_HEADER", &c.ReverseProxyHeader)
	c.ReverseProxyHeader = headerName(c.ReverseProxyHeader)
	envflag.Parse(r, "DEFENDER_TRUSTED_PROXIES", &c.TrustedProxies, prefixesWant, parsePrefixes)
	r.Int("DEFENDER_IPV6_PREFIX", &c.IPv6Prefix)
	r.Int("DEFENDER_SPRAY_LIMIT", &c.SprayLimit)
	c.SprayIPv6Prefix = min(c.SprayIPv6Prefix, c.IPv6Prefix)
	r.Int("DEFENDER_SPRAY_IPV6_PREFIX", &c.SprayIPv6Prefix)
	r.Int("DEFENDER_SPRAY_LIMIT_NET", &c.SprayNetLimit)
	mode, failMode := string(c.Mode), string(c.FailMode)
	r.String("DEFENDER_MODE", &mode)
	c.Mode = Mode(strings.ToLower(mode))
	r.Bool("DEFENDER_SMART_LOCKOUT", &c.SmartLockout)
	r.Duration("DEFENDER_FAMILIAR_DAYS", &c.FamiliarFor, envflag.Day)
	r.Int("DEFENDER_FAMILIAR_MAX", &c.FamiliarMax)
	if k, ok := r.Get("DEFENDER_DEVICE_KEY"); ok {
		c.DeviceKey = []byte(k)
	}
	r.String("DEFENDER_USERNAME_FORM_FIELD", &c.UsernameFormField)
	r.Int("DEFENDER_MAX_USERNAME_LENGTH", &c.MaxUsernameLength)
	r.String("DEFENDER_CACHE_PREFIX", &c.KeyPrefix)
	r.String("DEFENDER_LOCKOUT_URL", &c.LockoutURL)
	r.String("DEFENDER_LOCKOUT_TEMPLATE", &c.LockoutTemplate)
	r.String("DEFENDER_REDIS_URL", &c.RedisURL)
	r.Duration("DEFENDER_REDIS_TIMEOUT", &c.StoreTimeout, time.Millisecond)
	r.Int("DEFENDER_REDIS_MAX_IN_FLIGHT", &c.StoreMaxInFlight)
	r.String("DEFENDER_FAIL_MODE", &failMode)
	c.FailMode = FailMode(strings.ToLower(failMode)).canonical()
	envflag.Parse(r, "DEFENDER_IP_WHITELIST", &c.IPWhitelist, prefixesWant, parsePrefixes)
	r.List("DEFENDER_USERNAME_WHITELIST", &c.UsernameWhitelist)
	envflag.Parse(r, "DEFENDER_IP_BLACKLIST", &c.IPBlacklist, prefixesWant, parsePrefixes)
	r.Bool("DEFENDER_STORE_ACCESS_ATTEMPTS", &c.StoreAccessAttempts)
	r.Duration("DEFENDER_ACCESS_ATTEMPT_EXPIRATION", &c.AccessAttemptExpiration, time.Hour)
	r.Duration("DEFENDER_PENDING_TIMEOUT", &c.PendingTimeout, time.Second)
	r.Int("DEFENDER_MEMORY_MAX_ENTRIES", &c.MemoryMaxEntries)
	r.Bytes("DEFENDER_MEMORY_MAX_BYTES", &c.MemoryMaxBytes)
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// headerName accepts Django's META spelling (HTTP_X_FORWARDED_FOR) as well
// as the header name.
func headerName(s string) string {
	if rest, ok := strings.CutPrefix(strings.ToUpper(s), "HTTP_"); ok {
		s = strings.ReplaceAll(rest, "_", "-")
	}
	return s
}

const prefixesWant = "a comma list of addresses or CIDR prefixes"

// parsePrefixes reads a comma list of ParsePrefix's forms.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range envflag.SplitList(s) {
		p, err := ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix parses "10.0.0.0/8", "2001:db8::/32" or a single address
// (a /32 or /128), masking host bits; IPv4-mapped IPv6 becomes IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
