package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/envflag"
)

// Defaults of Config.
const (
	DefaultEventBuffer    = 65536
	DefaultStreamMaxAge   = 7 * 24 * time.Hour
	DefaultStreamMaxBytes = 1 << 30 // 1 GiB
	DefaultDuplicates     = 2 * time.Minute
)

// Config is this package's part of a binary's configuration. Build it
// with DefaultConfig or FromEnv; libraries never read the environment.
type Config struct {
	// NATSURL is a NATS URL or a comma-separated list of a cluster's URLs
	// (DEFENDER_NATS_URL); "" means the gate embeds its own server.
	NATSURL string
	// SubjectPrefix is the first token(s) of every subject
	// (DEFENDER_SUBJECT_PREFIX, "defender").
	SubjectPrefix string
	// EventBuffer is how many events the publisher holds while NATS is
	// slow or away before it drops new ones (DEFENDER_EVENT_BUFFER, 65536).
	EventBuffer int
	// StreamMaxAge is how long the DEFENDER stream keeps an event
	// (DEFENDER_STREAM_MAX_AGE, 7 days; 0 = no limit). Accepts a Go
	// duration ("168h"), days ("7d") or plain seconds.
	StreamMaxAge time.Duration
	// StreamMaxBytes bounds the stream's size; the oldest events go first
	// (DEFENDER_STREAM_MAX_BYTES, 1 GiB; 0 = no limit). Accepts bytes or a
	// size like "512MiB", "1GB".
	StreamMaxBytes int64
}

// EnvVar describes one variable of the configuration, for flags and docs.
type EnvVar struct {
	// Name is the variable, e.g. DEFENDER_NATS_URL.
	Name string
	// Usage says what it sets in one line, default included.
	Usage string
}

// EnvVars lists every variable FromEnv reads, with its description.
var EnvVars = []EnvVar{
	{"DEFENDER_NATS_URL", "NATS server(s) holding the DEFENDER stream, comma-separated URLs"},
	{"DEFENDER_SUBJECT_PREFIX", "prefix of NATS subjects (default defender)"},
	{"DEFENDER_EVENT_BUFFER", "events held while NATS is slow or away before new ones are dropped (default 65536)"},
	{"DEFENDER_STREAM_MAX_AGE", "how long the DEFENDER stream keeps events: 168h, 7d or seconds (default 7d)"},
	{"DEFENDER_STREAM_MAX_BYTES", "size bound of the DEFENDER stream: bytes, 512MiB, 1GB (default 1GiB)"},
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		SubjectPrefix:  DefaultPrefix,
		EventBuffer:    DefaultEventBuffer,
		StreamMaxAge:   DefaultStreamMaxAge,
		StreamMaxBytes: DefaultStreamMaxBytes,
	}
}

// Validate reports every setting that cannot work, each naming its variable.
func (c *Config) Validate() error {
	var errs []error
	if err := (Subjects{Prefix: c.SubjectPrefix}).Validate(); err != nil || c.SubjectPrefix == "" {
		errs = append(errs, fmt.Errorf("DEFENDER_SUBJECT_PREFIX: %q is not one or more NATS tokens without wildcards", c.SubjectPrefix))
	}
	if c.EventBuffer <= 0 {
		errs = append(errs, fmt.Errorf("DEFENDER_EVENT_BUFFER: %d is not a positive integer", c.EventBuffer))
	}
	if c.StreamMaxAge < 0 {
		errs = append(errs, fmt.Errorf("DEFENDER_STREAM_MAX_AGE: %s is negative", c.StreamMaxAge))
	} else if c.StreamMaxAge > 0 && c.StreamMaxAge < DefaultDuplicates {
		errs = append(errs, fmt.Errorf("DEFENDER_STREAM_MAX_AGE: %s is shorter than the %s duplicate window", c.StreamMaxAge, DefaultDuplicates))
	}
	if c.StreamMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("DEFENDER_STREAM_MAX_BYTES: %d is negative", c.StreamMaxBytes))
	}
	return errors.Join(errs...)
}

// Subjects returns the subject names under the configured prefix.
func (c *Config) Subjects() Subjects { return Subjects{Prefix: c.SubjectPrefix} }

// Stream returns the configuration of the DEFENDER stream.
func (c *Config) Stream() StreamConfig {
	return StreamConfig{Subjects: c.Subjects(), MaxAge: c.StreamMaxAge, MaxBytes: c.StreamMaxBytes}
}

// FromEnv reads the configuration from lookup (os.LookupEnv in a main),
// starting from DefaultConfig. Unset or empty variables keep their
// default. The error names every bad variable, e.g.
// `DEFENDER_EVENT_BUFFER: "abc" is not a positive integer`.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	var errs []error
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	if v, ok := get("DEFENDER_NATS_URL"); ok {
		c.NATSURL = v
		if err := CheckURLs(v); err != nil {
			errs = append(errs, fmt.Errorf("DEFENDER_NATS_URL: %w", err))
		}
	}
	if v, ok := get("DEFENDER_SUBJECT_PREFIX"); ok {
		c.SubjectPrefix = v
	}
	if v, ok := get("DEFENDER_EVENT_BUFFER"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("DEFENDER_EVENT_BUFFER: %q is not a positive integer", v))
		} else {
			c.EventBuffer = n
		}
	}
	if v, ok := get("DEFENDER_STREAM_MAX_AGE"); ok {
		d, err := envflag.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("DEFENDER_STREAM_MAX_AGE: %q is not a duration like 168h, 7d or seconds", v))
		} else {
			c.StreamMaxAge = d
		}
	}
	if v, ok := get("DEFENDER_STREAM_MAX_BYTES"); ok {
		n, err := envflag.ParseBytes(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("DEFENDER_STREAM_MAX_BYTES: %q is not a size like 1073741824, 512MiB or 1GB", v))
		} else {
			c.StreamMaxBytes = n
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
