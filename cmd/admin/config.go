package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

// Config holds every setting of the admin. Each field is an environment
// variable and a flag of the same meaning; a flag wins over the variable.
type Config struct {
	// RedisURL is the Redis holding the gate's state (DEFENDER_REDIS_URL, required).
	RedisURL string
	// ClickHouseURL is the history store
	// (DEFENDER_CLICKHOUSE_URL, clickhouse://127.0.0.1:9000/defender; native protocol).
	ClickHouseURL string
	// NATSURL is where block and unblock events are published and followed
	// (DEFENDER_NATS_URL). Empty: no live updates and no events.
	NATSURL string
	// CachePrefix prefixes the gate's Redis keys (DEFENDER_CACHE_PREFIX, "defender").
	CachePrefix string
	// SubjectPrefix prefixes NATS subjects (DEFENDER_SUBJECT_PREFIX, "defender").
	SubjectPrefix string
	// AdminUser and AdminPassword guard every page but /healthz
	// (DEFENDER_ADMIN_USER, "admin"; DEFENDER_ADMIN_PASSWORD, required to serve).
	AdminUser     string
	AdminPassword string
	// HTTPAddr is the listen address (DEFENDER_HTTP_ADDR, ":8081").
	HTTPAddr string
	// Gate holds the gate settings (IPv6 prefix, username length, ...), read
	// with gate.ConfigFromEnv.
	Gate gate.Config
}

// setting binds one Config field to its variable and flag.
type setting struct {
	env, flag, def, usage string
	dst                   func(*Config) *string
}

var settings = []setting{
	{"DEFENDER_REDIS_URL", "redis-url", "", "Redis URL of the gate's state (required)", func(c *Config) *string { return &c.RedisURL }},
	{"DEFENDER_CLICKHOUSE_URL", "clickhouse-url", "clickhouse://127.0.0.1:9000/defender", "ClickHouse URL (native protocol)", func(c *Config) *string { return &c.ClickHouseURL }},
	{"DEFENDER_NATS_URL", "nats-url", "", "NATS URL for block events and live updates (optional)", func(c *Config) *string { return &c.NATSURL }},
	{"DEFENDER_CACHE_PREFIX", "cache-prefix", "defender", "prefix of the gate's Redis keys", func(c *Config) *string { return &c.CachePrefix }},
	{"DEFENDER_SUBJECT_PREFIX", "subject-prefix", "defender", "prefix of NATS subjects", func(c *Config) *string { return &c.SubjectPrefix }},
	{"DEFENDER_ADMIN_USER", "admin-user", "admin", "basic auth user", func(c *Config) *string { return &c.AdminUser }},
	{"DEFENDER_ADMIN_PASSWORD", "admin-password", "", "basic auth password (required to serve; prefer the variable)", func(c *Config) *string { return &c.AdminPassword }},
	{"DEFENDER_HTTP_ADDR", "http-addr", ":8081", "listen address", func(c *Config) *string { return &c.HTTPAddr }},
}

// bindConfig registers the settings' flags on fs, with defaults taken from
// the environment through lookup, and returns the Config they fill.
func bindConfig(fs *flag.FlagSet, lookup func(string) (string, bool)) *Config {
	c := &Config{}
	for _, s := range settings {
		def := s.def
		if v, ok := lookup(s.env); ok {
			def = v
		}
		fs.StringVar(s.dst(c), s.flag, def, s.usage+" ("+s.env+")")
	}
	return c
}

// finish reads the gate settings and checks the values; need says which
// services the command uses. Errors name the variable at fault.
func (c *Config) finish(lookup func(string) (string, bool), need needs) error {
	gc, err := gate.ConfigFromEnv(lookup)
	if err != nil {
		return err
	}
	gc.KeyPrefix = c.CachePrefix
	gc.RedisURL = c.RedisURL
	c.Gate = gc
	var errs []error
	if need.redis && c.RedisURL == "" {
		errs = append(errs, errors.New("DEFENDER_REDIS_URL: required (e.g. redis://127.0.0.1:6379/0)"))
	}
	if need.clickhouse {
		if _, err := record.ParseURL(c.ClickHouseURL); err != nil {
			errs = append(errs, fmt.Errorf("DEFENDER_CLICKHOUSE_URL: %w", err))
		}
	}
	if c.NATSURL != "" && !strings.Contains(c.NATSURL, "://") {
		errs = append(errs, fmt.Errorf("DEFENDER_NATS_URL: %q is not a URL (nats://host:4222)", c.NATSURL))
	}
	if c.CachePrefix == "" {
		errs = append(errs, errors.New("DEFENDER_CACHE_PREFIX: empty"))
	}
	if err := (events.Subjects{Prefix: c.SubjectPrefix}).Validate(); err != nil || c.SubjectPrefix == "" {
		errs = append(errs, fmt.Errorf("DEFENDER_SUBJECT_PREFIX: %q is not one or more NATS tokens without wildcards", c.SubjectPrefix))
	}
	if need.http {
		if c.AdminUser == "" || strings.Contains(c.AdminUser, ":") {
			errs = append(errs, errors.New("DEFENDER_ADMIN_USER: empty or contains ':'"))
		}
		if c.AdminPassword == "" {
			errs = append(errs, errors.New("DEFENDER_ADMIN_PASSWORD: required: the admin never runs without a password"))
		}
		if c.HTTPAddr == "" {
			errs = append(errs, errors.New("DEFENDER_HTTP_ADDR: empty"))
		}
	}
	return errors.Join(errs...)
}

// needs says which services a command uses.
type needs struct{ redis, clickhouse, http bool }

// osLookup is os.LookupEnv, a variable so that tests can see what main sees.
var osLookup = os.LookupEnv
