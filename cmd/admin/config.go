package main

import (
	"flag"
	"strings"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
	"github.com/defender-go/defender/pkg/sharedip"
)

// Config holds every setting of the admin. Each field is an environment
// variable and a flag of the same meaning (envflag); a flag wins over the
// variable.
type Config struct {
	// ClickHouseURL is the history store
	// (DEFENDER_CLICKHOUSE_URL, clickhouse://127.0.0.1:9000/defender; native protocol).
	ClickHouseURL string
	// NATSURL is where block and unblock events are published and followed
	// (DEFENDER_NATS_URL). Empty: no live updates and no events.
	NATSURL string
	// SubjectPrefix prefixes NATS subjects (DEFENDER_SUBJECT_PREFIX, "defender").
	SubjectPrefix string
	// AdminUser and AdminPassword guard every page but /healthz
	// (DEFENDER_ADMIN_USER, "admin"; DEFENDER_ADMIN_PASSWORD, required to serve).
	AdminUser     string
	AdminPassword string
	// HTTPAddr is the listen address (DEFENDER_HTTP_ADDR, ":8081").
	HTTPAddr string
	// Gate holds the gate settings, read with gate.ConfigFromEnv: the
	// Redis holding the gate's state (RedisURL, DEFENDER_REDIS_URL,
	// required), its keys' prefix (KeyPrefix, DEFENDER_CACHE_PREFIX), the
	// IPv6 prefix, the username length, ...
	Gate gate.Config
	// Events holds the stream settings the admin uses when it creates the
	// DEFENDER stream (events.FromEnv), read when NATSURL is set.
	Events events.Config
	// Shared holds the lists of shared addresses (DEFENDER_SHARED_*), as
	// the gates read them: a subject's page says which list an address is on.
	Shared sharedip.Config

	// lookup reads a setting: the flag if given, else the variable.
	lookup func(string) (string, bool)
}

// adminVars are the admin's own variables, and its wording of some of the
// gate's and the event library's, with their descriptions.
var adminVars = []envflag.Var{
	{Name: "DEFENDER_REDIS_URL", Usage: "Redis URL of the gate's state (required): redis://, redis+cluster:// or redis+sentinel://"},
	{Name: "DEFENDER_CLICKHOUSE_URL", Usage: "ClickHouse URL, native protocol (default clickhouse://127.0.0.1:9000/defender)"},
	{Name: "DEFENDER_NATS_URL", Usage: "NATS URL for block events and live updates (optional)"},
	{Name: "DEFENDER_CACHE_PREFIX", Usage: "prefix of the gate's Redis keys (default defender)"},
	{Name: "DEFENDER_ADMIN_USER", Usage: "basic auth user (default admin)"},
	{Name: "DEFENDER_ADMIN_PASSWORD", Usage: "basic auth password (required to serve; prefer the variable)"},
	{Name: "DEFENDER_HTTP_ADDR", Usage: "listen address (default :8081)"},
}

// vars lists every variable the admin reads: its own, the gate's, the
// event library's.
func vars() []envflag.Var {
	out := append([]envflag.Var{}, adminVars...)
	out = append(out, gate.EnvVars...)
	out = append(out, sharedip.EnvVars...)
	return append(out, events.EnvVars...)
}

// bindConfig registers a flag for every variable on fs and returns the
// Config that finish fills, after fs.Parse, from the flags given and the
// environment (env, os.LookupEnv in main).
func bindConfig(fs *flag.FlagSet, env func(string) (string, bool)) *Config {
	return &Config{lookup: envflag.Bind(fs, vars(), env)}
}

// finish reads the settings and checks the values; need says which
// services the command uses. Errors name the variable at fault.
func (c *Config) finish(need needs) error {
	r := envflag.NewReader(c.lookup)
	c.ClickHouseURL, c.SubjectPrefix = "clickhouse://127.0.0.1:9000/defender", "defender"
	c.AdminUser, c.HTTPAddr = "admin", ":8081"
	r.String("DEFENDER_CLICKHOUSE_URL", &c.ClickHouseURL)
	r.String("DEFENDER_NATS_URL", &c.NATSURL)
	r.String("DEFENDER_SUBJECT_PREFIX", &c.SubjectPrefix)
	r.String("DEFENDER_ADMIN_USER", &c.AdminUser)
	r.Secret("DEFENDER_ADMIN_PASSWORD", &c.AdminPassword)
	r.String("DEFENDER_HTTP_ADDR", &c.HTTPAddr)
	gc, err := gate.ConfigFromEnv(c.lookup)
	if err != nil {
		return err
	}
	c.Gate = gc
	if c.Shared, err = sharedip.ConfigFromEnv(c.lookup); err != nil {
		return err
	}
	if need.redis && c.Gate.RedisURL == "" {
		r.Errorf("DEFENDER_REDIS_URL", "required (e.g. redis://127.0.0.1:6379/0)")
	}
	if need.clickhouse {
		if _, err := record.ParseURL(c.ClickHouseURL); err != nil {
			r.Errorf("DEFENDER_CLICKHOUSE_URL", "%v", err)
		}
	}
	if c.NATSURL != "" {
		if err := events.CheckURLs(c.NATSURL); err != nil { // the gate's and the recorder's rule
			r.Errorf("DEFENDER_NATS_URL", "%v", err)
		}
	}
	if err := (events.Subjects{Prefix: c.SubjectPrefix}).Validate(); err != nil {
		r.Errorf("DEFENDER_SUBJECT_PREFIX", "%q is not one or more NATS tokens without wildcards", c.SubjectPrefix)
	}
	if need.http {
		if strings.Contains(c.AdminUser, ":") {
			r.Errorf("DEFENDER_ADMIN_USER", "%q contains ':'", c.AdminUser)
		}
		if c.AdminPassword == "" {
			r.Errorf("DEFENDER_ADMIN_PASSWORD", "required: the admin never runs without a password")
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	if c.NATSURL != "" {
		ec, err := events.FromEnv(c.lookup)
		if err != nil {
			return err
		}
		ec.NATSURL, ec.SubjectPrefix = c.NATSURL, c.SubjectPrefix
		c.Events = ec
	}
	return nil
}

// needs says which services a command uses (shared: the shared address
// lists, which only the web UI's pages show).
type needs struct{ redis, clickhouse, http, shared bool }
