package main

import (
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/gatesvc"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/sharedip"
)

// Config is every setting of the gate service. Each is an environment
// variable and a flag of the same meaning (see vars); loadConfig reads
// them and names the variable of any bad value.
type Config struct {
	// Gate holds the decision settings (gate.ConfigFromEnv).
	Gate gate.Config
	// Events holds DEFENDER_NATS_URL and the stream settings (events.FromEnv).
	Events events.Config
	// Shared holds the lists of shared addresses (DEFENDER_SHARED_*,
	// sharedip.ConfigFromEnv), never blocked whole.
	Shared sharedip.Config
	// HTTPAddr is the listen address (DEFENDER_HTTP_ADDR, ":8080").
	HTTPAddr string
	// NATSHost and NATSPort are where the embedded NATS server listens
	// when DEFENDER_NATS_URL is unset (DEFENDER_NATS_LISTEN,
	// "127.0.0.1:4222"; port 0 picks a free one).
	NATSHost string
	NATSPort int
	// NATSStoreDir holds the embedded server's JetStream files
	// (DEFENDER_NATS_STORE_DIR, "<tmp>/defender-nats").
	NATSStoreDir string
	// TokenSecret signs two-phase tokens (DEFENDER_TOKEN_SECRET); nil
	// means a random key, so tokens work on this instance only.
	TokenSecret []byte
	// APIKey, when set, is required on every /v1 request as a bearer
	// token (DEFENDER_API_KEY).
	APIKey string
	// ShutdownTimeout bounds the draining of in-flight requests at
	// shutdown (DEFENDER_SHUTDOWN_TIMEOUT, 10 s).
	ShutdownTimeout time.Duration
	// FlushTimeout bounds the flush of queued events at shutdown, after
	// the requests (DEFENDER_EVENT_FLUSH_TIMEOUT, 5 s).
	FlushTimeout time.Duration
	// LogLevel is debug, info, warn or error (DEFENDER_LOG_LEVEL, info).
	LogLevel slog.Level
	// Name identifies this instance in events (DEFENDER_GATE_NAME, the host name).
	Name string
}

// serviceVars are the service's own variables, and its wording of the
// event library's DEFENDER_NATS_URL, with their descriptions.
var serviceVars = []envflag.Var{
	{Name: "DEFENDER_HTTP_ADDR", Usage: "listen address of the HTTP API (default :8080)"},
	{Name: "DEFENDER_API_KEY", Usage: "if set (16+ bytes), every /v1 request must send Authorization: Bearer <key> (default: none; keep the service on a private network)"},
	{Name: "DEFENDER_TOKEN_SECRET", Usage: "key signing two-phase tokens, at least 16 bytes; share it between instances (default: random per process)"},
	{Name: "DEFENDER_NATS_URL", Usage: "NATS server(s) to publish events to, comma-separated (default: start an embedded server)"},
	{Name: "DEFENDER_NATS_LISTEN", Usage: "listen address of the embedded NATS server (default 127.0.0.1:4222)"},
	{Name: "DEFENDER_NATS_STORE_DIR", Usage: "JetStream directory of the embedded NATS server (default <tmp>/defender-nats)"},
	{Name: "DEFENDER_SHUTDOWN_TIMEOUT", Usage: "time to drain in-flight requests at shutdown (default 10s)"},
	{Name: "DEFENDER_EVENT_FLUSH_TIMEOUT", Usage: "time to flush queued events at shutdown (default 5s)"},
	{Name: "DEFENDER_LOG_LEVEL", Usage: "debug, info, warn or error (default info)"},
	{Name: "DEFENDER_GATE_NAME", Usage: "name of this instance in events (default: host name)"},
}

// middlewareOnly are the gate library's variables that only its net/http
// middleware reads: the service takes the client's address and username
// from the request body.
var middlewareOnly = map[string]bool{
	"DEFENDER_BEHIND_REVERSE_PROXY": true, "DEFENDER_REVERSE_PROXY_HEADER": true, "DEFENDER_TRUSTED_PROXIES": true,
	"DEFENDER_USERNAME_FORM_FIELD": true, "DEFENDER_LOCKOUT_URL": true, "DEFENDER_LOCKOUT_TEMPLATE": true,
}

// vars lists every variable the service reads: the gate's, then its own,
// then the event library's.
func vars() []envflag.Var {
	out := append([]envflag.Var{}, gate.EnvVars...)
	for i, v := range out {
		if middlewareOnly[v.Name] {
			out[i].Usage = "library middleware only: " + v.Usage
		}
	}
	out = append(out, serviceVars...)
	out = append(out, sharedip.EnvVars...)
	return append(out, events.EnvVars...)
}

// loadConfig reads every setting through lookup. The error names each
// variable at fault.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	r := envflag.NewReader(lookup)
	c := Config{HTTPAddr: ":8080", ShutdownTimeout: 10 * time.Second, FlushTimeout: 5 * time.Second}
	var err error
	c.Gate, err = gate.ConfigFromEnv(lookup)
	r.Add(err)
	c.Events, err = events.FromEnv(lookup)
	r.Add(err)
	c.Shared, err = sharedip.ConfigFromEnv(lookup)
	r.Add(err)
	r.String("DEFENDER_HTTP_ADDR", &c.HTTPAddr)
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		r.Errorf("DEFENDER_HTTP_ADDR", "%q is not host:port: %v", c.HTTPAddr, err)
	}
	listen := "127.0.0.1:4222"
	r.String("DEFENDER_NATS_LISTEN", &listen)
	if host, port, err := net.SplitHostPort(listen); err != nil {
		r.Errorf("DEFENDER_NATS_LISTEN", "%q is not host:port: %v", listen, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		r.Errorf("DEFENDER_NATS_LISTEN", "%q has no valid port", listen)
	} else {
		c.NATSHost, c.NATSPort = host, n
		if c.NATSHost == "" {
			c.NATSHost = "0.0.0.0"
		}
	}
	r.String("DEFENDER_NATS_STORE_DIR", &c.NATSStoreDir)
	var secret string
	r.String("DEFENDER_TOKEN_SECRET", &secret)
	if secret != "" {
		if len(secret) < gatesvc.MinSecretBytes {
			r.Errorf("DEFENDER_TOKEN_SECRET", "%d bytes is too short, use at least %d (e.g. openssl rand -hex 32)", len(secret), gatesvc.MinSecretBytes)
		}
		c.TokenSecret = []byte(secret)
	}
	r.String("DEFENDER_API_KEY", &c.APIKey)
	if c.APIKey != "" && len(c.APIKey) < gatesvc.MinSecretBytes {
		r.Errorf("DEFENDER_API_KEY", "%d bytes is too short, use at least %d (e.g. openssl rand -hex 32)", len(c.APIKey), gatesvc.MinSecretBytes)
	}
	r.PositiveDuration("DEFENDER_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout, time.Second)
	r.PositiveDuration("DEFENDER_EVENT_FLUSH_TIMEOUT", &c.FlushTimeout, time.Second)
	envflag.Parse(r, "DEFENDER_LOG_LEVEL", &c.LogLevel, "debug, info, warn or error", func(s string) (slog.Level, error) {
		var l slog.Level
		return l, l.UnmarshalText([]byte(s))
	})
	r.String("DEFENDER_GATE_NAME", &c.Name)
	return c, r.Err()
}
