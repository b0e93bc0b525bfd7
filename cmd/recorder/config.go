package main

import (
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
	// (DEFENDER_RECORD_FLUSH, 1s; a duration or seconds): the longest
	// an event waits to be written while events arrive briskly. While
	// fewer than Batch/10 arrive per Flush they wait for more, up to
	// 5 × Flush (record.Options.MaxDelay).
	Flush time.Duration
	// AckWait is how long NATS waits before redelivering the events of a
	// recorder that died (DEFENDER_RECORD_ACK_WAIT, 1m; at least 3 × Flush).
	AckWait time.Duration
	// Expiration is the age past which cleanup removes attempts
	// (DEFENDER_ACCESS_ATTEMPT_EXPIRATION, 24; hours as in django-defender,
	// decimals allowed, or a duration like 36h: as the gates read it).
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
	{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Usage: "how long attempts are kept, for cleanup: hours (1.5 is 90 minutes) or a duration like 36h (default 24)"},
	{Name: "DEFENDER_HTTP_ADDR", Usage: "listen address of /metrics and /healthz (default :9102)"},
	{Name: "DEFENDER_STREAM_MAX_AGE", Usage: "age limit of the DEFENDER stream if the recorder creates it (default 7d)"},
	{Name: "DEFENDER_STREAM_MAX_BYTES", Usage: "size limit of the DEFENDER stream if the recorder creates it (default 1GiB)"},
}, events.EnvVars...)

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
	r := envflag.NewReader(lookup)
	ev, err := events.FromEnv(lookup)
	r.Add(err)
	c.Events = ev
	if needNATS && c.Events.NATSURL == "" {
		r.Errorf("DEFENDER_NATS_URL", "required: the NATS server(s) holding the DEFENDER stream")
	}
	r.String("DEFENDER_CLICKHOUSE_URL", &c.ClickHouseURL)
	if _, err := record.ParseURL(c.ClickHouseURL); err != nil {
		r.Errorf("DEFENDER_CLICKHOUSE_URL", "%v", err)
	}
	r.IntIn("DEFENDER_RECORD_BATCH", &c.Batch, 1, 1_000_000)
	r.PositiveDuration("DEFENDER_RECORD_FLUSH", &c.Flush, time.Second)
	r.PositiveDuration("DEFENDER_RECORD_ACK_WAIT", &c.AckWait, time.Second)
	if c.AckWait < 3*c.Flush {
		r.Errorf("DEFENDER_RECORD_ACK_WAIT", "%s is shorter than 3 × DEFENDER_RECORD_FLUSH (%s)", c.AckWait, c.Flush)
	}
	r.PositiveDuration("DEFENDER_ACCESS_ATTEMPT_EXPIRATION", &c.Expiration, time.Hour)
	r.String("DEFENDER_HTTP_ADDR", &c.HTTPAddr)
	return c, r.Err()
}
