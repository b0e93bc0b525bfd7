package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/record"
)

// Config holds every setting of the recorder. Each is an environment
// variable and a flag of the same meaning (envflag); a flag wins.
type Config struct {
	// Events holds the NATS side: DEFENDER_NATS_URL (required to run;
	// a comma-separated list of a cluster's URLs is fine),
	// DEFENDER_SUBJECT_PREFIX ("defender"), and the limits of the DEFENDER
	// stream, which the recorder creates if it is missing
	// (DEFENDER_STREAM_MAX_AGE, DEFENDER_STREAM_MAX_BYTES).
	Events events.Config
	// ClickHouseURL is the history store
	// (DEFENDER_CLICKHOUSE_URL, clickhouse://127.0.0.1:9000/defender;
	// native protocol).
	ClickHouseURL string
	// Batch is the most events per insert (DEFENDER_RECORD_BATCH, 10000).
	Batch int
	// Flush is how often the recorder takes what the stream holds
	// (DEFENDER_RECORD_FLUSH, 1s; a Go duration or seconds): the longest
	// an event waits to be written while events arrive briskly. While
	// fewer than Batch/10 arrive per Flush they wait for more, up to
	// 5 × Flush (record.Options.MaxDelay).
	Flush time.Duration
	// AckWait is how long NATS waits before redelivering the events of a
	// recorder that died (DEFENDER_RECORD_ACK_WAIT, 1m; at least 3 × Flush).
	AckWait time.Duration
	// Expiration is the age past which cleanup removes attempts
	// (DEFENDER_ACCESS_ATTEMPT_EXPIRATION, in hours as in django-defender,
	// 24).
	Expiration time.Duration
	// HTTPAddr serves /metrics and /healthz (DEFENDER_HTTP_ADDR, ":9102").
	HTTPAddr string
}

// vars are the recorder's variables, each also a flag: its own, its
// wording of some of the event library's, then the event library's.
var vars = append([]envflag.Var{
	{Name: "DEFENDER_NATS_URL", Usage: "NATS URL or comma list of URLs, nats-server 2.10 or later (required to run)"},
	{Name: "DEFENDER_CLICKHOUSE_URL", Usage: "ClickHouse URL, native protocol (default clickhouse://127.0.0.1:9000/defender)"},
	{Name: "DEFENDER_RECORD_BATCH", Usage: "most events per insert (default 10000)"},
	{Name: "DEFENDER_RECORD_FLUSH", Usage: "how often to take what the stream holds, e.g. 1s (default 1s; few events wait up to 5 times that)"},
	{Name: "DEFENDER_RECORD_ACK_WAIT", Usage: "redelivery delay of a dead recorder's events (default 1m)"},
	{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Usage: "hours attempts are kept, for cleanup (default 24)"},
	{Name: "DEFENDER_HTTP_ADDR", Usage: "listen address of /metrics and /healthz (default :9102)"},
	{Name: "DEFENDER_STREAM_MAX_AGE", Usage: "age limit of the DEFENDER stream if the recorder creates it (default 7d)"},
	{Name: "DEFENDER_STREAM_MAX_BYTES", Usage: "size limit of the DEFENDER stream if the recorder creates it (default 1GiB)"},
}, envflag.Vars(events.EnvVars)...)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Events:        events.DefaultConfig(),
		ClickHouseURL: "clickhouse://127.0.0.1:9000/defender",
		Batch:         record.DefaultBatch,
		Flush:         record.DefaultFlush,
		AckWait:       record.DefaultAckWait,
		Expiration:    24 * time.Hour,
		HTTPAddr:      ":9102",
	}
}

// FromEnv reads the configuration through lookup (envflag's, or
// os.LookupEnv), starting from DefaultConfig; unset or empty variables
// keep their default. needNATS says whether the command needs
// DEFENDER_NATS_URL. The error names every bad variable.
func FromEnv(lookup func(string) (string, bool), needNATS bool) (Config, error) {
	c := DefaultConfig()
	var errs []error
	ev, err := events.FromEnv(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c.Events = ev
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	if needNATS && c.Events.NATSURL == "" {
		errs = append(errs, errors.New("DEFENDER_NATS_URL: required: the NATS server(s) holding the DEFENDER stream"))
	}
	if v, ok := get("DEFENDER_CLICKHOUSE_URL"); ok {
		c.ClickHouseURL = v
	}
	if _, err := record.ParseURL(c.ClickHouseURL); err != nil {
		errs = append(errs, fmt.Errorf("DEFENDER_CLICKHOUSE_URL: %w", err))
	}
	if v, ok := get("DEFENDER_RECORD_BATCH"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1_000_000 {
			errs = append(errs, fmt.Errorf("DEFENDER_RECORD_BATCH: %q is not a whole number from 1 to 1000000", v))
		} else {
			c.Batch = n
		}
	}
	if v, ok := get("DEFENDER_RECORD_FLUSH"); ok {
		d, err := duration(v, time.Second)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("DEFENDER_RECORD_FLUSH: %q is not a positive duration like 1s or 500ms", v))
		} else {
			c.Flush = d
		}
	}
	if v, ok := get("DEFENDER_RECORD_ACK_WAIT"); ok {
		d, err := duration(v, time.Second)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("DEFENDER_RECORD_ACK_WAIT: %q is not a positive duration like 1m or 30s", v))
		} else {
			c.AckWait = d
		}
	}
	if c.AckWait < 3*c.Flush {
		errs = append(errs, fmt.Errorf("DEFENDER_RECORD_ACK_WAIT: %s is shorter than 3 × DEFENDER_RECORD_FLUSH (%s)", c.AckWait, c.Flush))
	}
	if v, ok := get("DEFENDER_ACCESS_ATTEMPT_EXPIRATION"); ok {
		d, err := duration(v, time.Hour)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("DEFENDER_ACCESS_ATTEMPT_EXPIRATION: %q is not a positive number of hours", v))
		} else {
			c.Expiration = d
		}
	}
	if v, ok := get("DEFENDER_HTTP_ADDR"); ok {
		c.HTTPAddr = v
	}
	return c, errors.Join(errs...)
}

// duration parses a plain number in unit, or a Go duration ("36h", "500ms").
func duration(s string, unit time.Duration) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 || n*float64(unit) > float64(1<<62) {
			return 0, errors.New("out of range")
		}
		return time.Duration(n * float64(unit)), nil
	}
	return time.ParseDuration(s)
}
