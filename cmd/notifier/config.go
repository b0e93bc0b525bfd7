package main

import (
	"time"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/notify"
	"github.com/defender-go/defender/internal/notify/mail"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// Config holds every setting of the notifier. Each is an environment
// variable and a flag of the same meaning (envflag); a flag wins.
type Config struct {
	// Events: DEFENDER_NATS_URL (required) and DEFENDER_SUBJECT_PREFIX.
	Events events.Config
	// HTTPAddr serves /metrics and /healthz (DEFENDER_HTTP_ADDR, ":9103").
	HTTPAddr string
	// Durable and AckWait: the consumer every instance shares.
	Durable string
	AckWait time.Duration

	// Mail is on when SMTP.Host is set.
	SMTP           mail.Options
	Lookup         mail.LookupOptions
	MailToUsername bool
	MailEvery      time.Duration
	MailsPerHour   int

	// Unlock links and their page, on when UnlockAddr is set.
	UnlockAddr string
	UnlockURL  string
	UnlockKeys [][]byte
	UnlockTTL  time.Duration
	links      *notify.Links // made of the four above, when UnlockAddr is set
	// Gate is read for the unlock only: the Redis the gates share
	// (DEFENDER_REDIS_URL...) and the username's normalisation.
	Gate gate.Config

	// Webhooks, on when WebhookURLs is set.
	Webhooks        []webhook.Endpoint
	WebhookSecrets  [][]byte
	WebhookInterval time.Duration
	WebhookAttempts int
}

// vars are the notifier's own variables, then the event library's and
// the gate's (for the unlock's Redis).
var vars = append(append([]envflag.Var{
	{Name: "DEFENDER_NATS_URL", Usage: "NATS URL or comma list of URLs (required)"},
	{Name: "DEFENDER_HTTP_ADDR", Usage: "listen address of /metrics and /healthz (default :9103)"},
	{Name: "DEFENDER_NOTIFY_CONSUMER", Usage: "name of the durable consumer every instance shares (default notifier)"},
	{Name: "DEFENDER_NOTIFY_ACK_WAIT", Usage: "how long before a dead instance's events go to another (default 1m)"},
	{Name: "DEFENDER_SMTP_HOST", Usage: "SMTP server; empty: no mails (default empty)"},
	{Name: "DEFENDER_SMTP_PORT", Usage: "SMTP port (default 587; 465 with DEFENDER_SMTP_TLS=tls, 25 with none)"},
	{Name: "DEFENDER_SMTP_USERNAME", Usage: "SMTP AUTH user (default none)"},
	{Name: "DEFENDER_SMTP_PASSWORD", Usage: "SMTP AUTH password"},
	{Name: "DEFENDER_SMTP_TLS", Usage: "starttls (required), opportunistic, tls (implicit) or none (default starttls)"},
	{Name: "DEFENDER_MAIL_FROM", Usage: "sender address of the mails (required with DEFENDER_SMTP_HOST)"},
	{Name: "DEFENDER_MAIL_SITE", Usage: "the site's name in the mails"},
	{Name: "DEFENDER_MAIL_LOOKUP_URL", Usage: "GET URL answering {\"email\": ...} or 404 for a username ({username} is replaced)"},
	{Name: "DEFENDER_MAIL_LOOKUP_HEADER", Usage: "a header sent to the lookup, \"Name: value\""},
	{Name: "DEFENDER_MAIL_TO_USERNAME", Usage: "without a lookup, mail the username itself when it is an address (default false)"},
	{Name: "DEFENDER_MAIL_EVERY", Usage: "least time between two mails to one user (default 1h)"},
	{Name: "DEFENDER_MAIL_MAX_PER_HOUR", Usage: "mails per clock hour, every instance together; 0: no cap (default 1000)"},
	{Name: "DEFENDER_MAIL_TEXT_TEMPLATE", Usage: "file of the mail's text template (default built in)"},
	{Name: "DEFENDER_MAIL_HTML_TEMPLATE", Usage: "file of the mail's HTML template (default built in)"},
	{Name: "DEFENDER_UNLOCK_ADDR", Usage: "public listen address of the unlock page; empty: no unlock links (default empty)"},
	{Name: "DEFENDER_UNLOCK_URL", Usage: "public URL of the unlock page, as the mails link it (required with DEFENDER_UNLOCK_ADDR)"},
	{Name: "DEFENDER_UNLOCK_KEYS", Usage: "comma list of secrets of 32 bytes or more: the first signs links, every one verifies"},
	{Name: "DEFENDER_UNLOCK_TTL", Usage: "how long an unlock link works (default 15m)"},
	{Name: "DEFENDER_WEBHOOK_URLS", Usage: "comma list of webhook URLs; slack=URL for a Slack-compatible body"},
	{Name: "DEFENDER_WEBHOOK_SECRETS", Usage: "comma list of signing secrets of 16 bytes or more: each call is signed with every one"},
	{Name: "DEFENDER_WEBHOOK_INTERVAL", Usage: "at most one call per webhook per interval (default 5s)"},
	{Name: "DEFENDER_WEBHOOK_ATTEMPTS", Usage: "tries of a call before its dead letter (default 6)"},
}, events.EnvVars...), gate.EnvVars...)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Events:          events.DefaultConfig(),
		HTTPAddr:        ":9103",
		Durable:         notify.DefaultDurable,
		AckWait:         notify.DefaultAckWait,
		SMTP:            mail.Options{TLS: "starttls"}, // the port follows the TLS mode (mail.Options)
		MailEvery:       notify.DefaultMailEvery,
		MailsPerHour:    1000,
		UnlockTTL:       15 * time.Minute,
		Gate:            gate.DefaultConfig(),
		WebhookInterval: webhook.DefaultInterval,
		WebhookAttempts: webhook.DefaultAttempts,
	}
}

// secrets reads a comma list of secrets (never echoed in errors).
func secrets(r *envflag.Reader, name string, p *[][]byte) {
	var list []string
	r.List(name, &list)
	if list == nil {
		return
	}
	*p = nil
	for _, s := range list {
		*p = append(*p, []byte(s))
	}
}

// FromEnv reads the configuration through lookup, starting from
// DefaultConfig. The error names every bad variable.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	r := envflag.NewReader(lookup)
	ev, err := events.FromEnv(lookup)
	r.Add(err)
	c.Events = ev
	if c.Events.NATSURL == "" {
		r.Errorf("DEFENDER_NATS_URL", "required: the NATS server(s) holding the DEFENDER stream")
	}
	r.String("DEFENDER_HTTP_ADDR", &c.HTTPAddr)
	r.String("DEFENDER_NOTIFY_CONSUMER", &c.Durable)
	r.PositiveDuration("DEFENDER_NOTIFY_ACK_WAIT", &c.AckWait, time.Second)

	r.String("DEFENDER_SMTP_HOST", &c.SMTP.Host)
	r.IntIn("DEFENDER_SMTP_PORT", &c.SMTP.Port, 1, 65535)
	r.String("DEFENDER_SMTP_USERNAME", &c.SMTP.Username)
	r.Secret("DEFENDER_SMTP_PASSWORD", &c.SMTP.Password)
	r.String("DEFENDER_SMTP_TLS", &c.SMTP.TLS)
	r.String("DEFENDER_MAIL_FROM", &c.SMTP.From)
	r.String("DEFENDER_MAIL_SITE", &c.SMTP.Site)
	r.String("DEFENDER_MAIL_TEXT_TEMPLATE", &c.SMTP.TextTemplate)
	r.String("DEFENDER_MAIL_HTML_TEMPLATE", &c.SMTP.HTMLTemplate)
	r.String("DEFENDER_MAIL_LOOKUP_URL", &c.Lookup.URL)
	r.String("DEFENDER_MAIL_LOOKUP_HEADER", &c.Lookup.Header)
	r.Bool("DEFENDER_MAIL_TO_USERNAME", &c.MailToUsername)
	r.PositiveDuration("DEFENDER_MAIL_EVERY", &c.MailEvery, time.Second)
	r.IntIn("DEFENDER_MAIL_MAX_PER_HOUR", &c.MailsPerHour, 0, 1_000_000)
	if c.SMTP.Host != "" && c.Lookup.URL == "" && !c.MailToUsername {
		r.Errorf("DEFENDER_MAIL_LOOKUP_URL", "required with DEFENDER_SMTP_HOST, to find a blocked user's address (or set DEFENDER_MAIL_TO_USERNAME=true if usernames are addresses)")
	}

	r.String("DEFENDER_UNLOCK_ADDR", &c.UnlockAddr)
	r.String("DEFENDER_UNLOCK_URL", &c.UnlockURL)
	secrets(r, "DEFENDER_UNLOCK_KEYS", &c.UnlockKeys)
	r.PositiveDuration("DEFENDER_UNLOCK_TTL", &c.UnlockTTL, time.Second)
	if c.UnlockAddr != "" {
		if c.SMTP.Host == "" {
			r.Errorf("DEFENDER_UNLOCK_ADDR", "unlock links are sent by mail: set DEFENDER_SMTP_HOST too")
		}
		var err error
		c.links, err = notify.NewLinks(c.UnlockKeys, c.UnlockTTL, c.UnlockURL)
		r.Add(err)
		g, err := gate.ConfigFromEnv(lookup)
		r.Add(err)
		c.Gate = g
		// Without the gates' key the unlock's device token is signed
		// with a random one: no gate believes it, and the browser that
		// unlocked is locked out again by the attacker's next failures.
		if g.SmartLockout && len(g.DeviceKey) == 0 {
			r.Errorf("DEFENDER_DEVICE_KEY", "required with DEFENDER_SMART_LOCKOUT=true and DEFENDER_UNLOCK_ADDR: set the gates' key, so that the browser that unlocks becomes a device the gates know")
		}
	}

	if v, ok := r.Get("DEFENDER_WEBHOOK_URLS"); ok {
		eps, err := webhook.ParseEndpoints(v)
		if err != nil {
			r.Errorf("DEFENDER_WEBHOOK_URLS", "%v", err)
		}
		c.Webhooks = eps
	}
	secrets(r, "DEFENDER_WEBHOOK_SECRETS", &c.WebhookSecrets)
	r.PositiveDuration("DEFENDER_WEBHOOK_INTERVAL", &c.WebhookInterval, time.Second)
	r.IntIn("DEFENDER_WEBHOOK_ATTEMPTS", &c.WebhookAttempts, 1, 100)
	if len(c.Webhooks) > 0 && len(c.WebhookSecrets) == 0 {
		r.Errorf("DEFENDER_WEBHOOK_SECRETS", "required with DEFENDER_WEBHOOK_URLS: receivers check each call's signature")
	}
	return c, r.Err()
}
