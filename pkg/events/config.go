package events

import (
	"errors"
	"fmt"
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

// EnvVars lists every variable FromEnv reads, each a Name and a one-line
// Usage, default included, for flags and docs.
var EnvVars = []envflag.Var{
	{Name: "DEFENDER_NATS_URL", Usage: "NATS server(s) holding the DEFENDER stream, comma-separated URLs"},
	{Name: "DEFENDER_SUBJECT_PREFIX", Usage: "prefix of NATS subjects (default defender)"},
	{Name: "DEFENDER_EVENT_BUFFER", Usage: "events held while NATS is slow or away before new ones are dropped (default 65536)"},
	{Name: "DEFENDER_STREAM_MAX_AGE", Usage: "how long the DEFENDER stream keeps events: 168h, 7d or seconds (default 7d)"},
	{Name: "DEFENDER_STREAM_MAX_BYTES", Usage: "size bound of the DEFENDER stream: bytes, 512MiB, 1GB (default 1GiB)"},
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
// default. The error names every bad variable and its value, e.g.
// `DEFENDER_EVENT_BUFFER: "abc" is not a whole number: invalid syntax`.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	r := envflag.NewReader(lookup)
	r.String("DEFENDER_NATS_URL", &c.NATSURL)
	if c.NATSURL != "" {
		if err := CheckURLs(c.NATSURL); err != nil {
			r.Errorf("DEFENDER_NATS_URL", "%v", err)
		}
	}
	r.String("DEFENDER_SUBJECT_PREFIX", &c.SubjectPrefix)
	r.Int("DEFENDER_EVENT_BUFFER", &c.EventBuffer)
	r.Duration("DEFENDER_STREAM_MAX_AGE", &c.StreamMaxAge, time.Second)
	r.Bytes("DEFENDER_STREAM_MAX_BYTES", &c.StreamMaxBytes)
	if err := r.Err(); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
