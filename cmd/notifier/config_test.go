package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/envflag/envflagtest"
)

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

var key32 = strings.Repeat("k", 32)

func TestConfigFromEnv(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		"DEFENDER_NATS_URL":         "nats://127.0.0.1:4222",
		"DEFENDER_SMTP_HOST":        "mail.example.com",
		"DEFENDER_MAIL_FROM":        "Shop <no-reply@example.com>",
		"DEFENDER_MAIL_LOOKUP_URL":  "https://shop.internal/email?username={username}",
		"DEFENDER_MAIL_EVERY":       "2h",
		"DEFENDER_UNLOCK_ADDR":      ":9200",
		"DEFENDER_UNLOCK_URL":       "https://shop.example/defender/unlock",
		"DEFENDER_UNLOCK_KEYS":      key32 + ", " + strings.Repeat("o", 40),
		"DEFENDER_UNLOCK_TTL":       "600",
		"DEFENDER_WEBHOOK_URLS":     "https://ops.example/hook,slack=https://hooks.slack.com/services/T/B/X",
		"DEFENDER_WEBHOOK_SECRETS":  "0123456789abcdef",
		"DEFENDER_WEBHOOK_INTERVAL": "10s",
		"DEFENDER_SMART_LOCKOUT":    "true",
		"DEFENDER_DEVICE_KEY":       "the-gates-device-key",
	}))
	require.NoError(t, err)
	assert.True(t, c.Gate.SmartLockout)
	assert.Equal(t, []byte("the-gates-device-key"), c.Gate.DeviceKey, "the unlock signs device tokens with the gates' key")
	assert.Zero(t, c.SMTP.Port, "unset: the mail package takes it from the TLS mode, 465 for implicit TLS")
	assert.Equal(t, "starttls", c.SMTP.TLS, "STARTTLS required unless told otherwise")
	assert.Equal(t, 2*time.Hour, c.MailEvery)
	assert.Equal(t, 10*time.Minute, c.UnlockTTL, "plain seconds")
	assert.Len(t, c.UnlockKeys, 2)
	assert.Len(t, c.Webhooks, 2)
	assert.Equal(t, 10*time.Second, c.WebhookInterval)
	assert.Equal(t, 1000, c.MailsPerHour)
}

// TestConfigRefuses: each bad setting is named, and unsafe combinations
// are refused at start.
func TestConfigRefuses(t *testing.T) {
	base := func() map[string]string { return map[string]string{"DEFENDER_NATS_URL": "nats://127.0.0.1:4222"} }
	for name, tc := range map[string]struct {
		set  map[string]string
		want string
	}{
		"no nats":             {map[string]string{"DEFENDER_NATS_URL": ""}, "DEFENDER_NATS_URL"},
		"mail without lookup": {map[string]string{"DEFENDER_SMTP_HOST": "m", "DEFENDER_MAIL_FROM": "a@b.example"}, "DEFENDER_MAIL_LOOKUP_URL"},
		"unlock without mail": {map[string]string{"DEFENDER_UNLOCK_ADDR": ":9200", "DEFENDER_UNLOCK_URL": "https://a.example/u", "DEFENDER_UNLOCK_KEYS": key32}, "DEFENDER_SMTP_HOST"},
		"short unlock key":    {map[string]string{"DEFENDER_UNLOCK_ADDR": ":9200", "DEFENDER_UNLOCK_URL": "https://a.example/u", "DEFENDER_UNLOCK_KEYS": "short"}, "DEFENDER_UNLOCK_KEYS"},
		"no unlock url":       {map[string]string{"DEFENDER_UNLOCK_ADDR": ":9200", "DEFENDER_UNLOCK_KEYS": key32}, "DEFENDER_UNLOCK_URL"},
		"hooks unsigned":      {map[string]string{"DEFENDER_WEBHOOK_URLS": "https://ops.example/hook"}, "DEFENDER_WEBHOOK_SECRETS"},
		"bad hook url":        {map[string]string{"DEFENDER_WEBHOOK_URLS": "ftp://ops.example/hook", "DEFENDER_WEBHOOK_SECRETS": "0123456789abcdef"}, "DEFENDER_WEBHOOK_URLS"},
		"bad duration":        {map[string]string{"DEFENDER_MAIL_EVERY": "soon"}, "DEFENDER_MAIL_EVERY"},
		"bad port":            {map[string]string{"DEFENDER_SMTP_PORT": "70000"}, "DEFENDER_SMTP_PORT"},
		"bad bool":            {map[string]string{"DEFENDER_MAIL_TO_USERNAME": "maybe"}, "DEFENDER_MAIL_TO_USERNAME"},
		"smart lockout without the device key": {map[string]string{"DEFENDER_SMTP_HOST": "m", "DEFENDER_MAIL_FROM": "a@b.example",
			"DEFENDER_MAIL_TO_USERNAME": "true", "DEFENDER_UNLOCK_ADDR": ":9200", "DEFENDER_UNLOCK_URL": "https://a.example/u",
			"DEFENDER_UNLOCK_KEYS": key32, "DEFENDER_SMART_LOCKOUT": "true"}, "DEFENDER_DEVICE_KEY"},
	} {
		kv := base()
		for k, v := range tc.set {
			kv[k] = v
		}
		_, err := FromEnv(env(kv))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
		assert.NotContains(t, err.Error(), key32, "%s: secrets are never echoed", name)
	}
}

// The notifier reads its durations, and the gate's for the unlock, with
// the one grammar every binary uses (envflagtest's table).
func TestDurationsAgree(t *testing.T) {
	base := map[string]string{
		"DEFENDER_NATS_URL":         "nats://127.0.0.1:4222",
		"DEFENDER_SMTP_HOST":        "mail.example.com",
		"DEFENDER_MAIL_FROM":        "no-reply@example.com",
		"DEFENDER_MAIL_TO_USERNAME": "true",
		"DEFENDER_UNLOCK_ADDR":      ":9200",
		"DEFENDER_UNLOCK_URL":       "https://shop.example/defender/unlock",
		"DEFENDER_UNLOCK_KEYS":      key32,
	}
	read := func(l func(string) (string, bool)) (Config, error) { return FromEnv(envflagtest.Over(l, base)) }
	envflagtest.CheckDurations(t, read, []envflagtest.Duration[Config]{
		{Name: "DEFENDER_ACCESS_ATTEMPT_EXPIRATION", Unit: time.Hour, Least: 1,
			Field: func(c Config) time.Duration { return c.Gate.AccessAttemptExpiration }},
		{Name: "DEFENDER_MAIL_EVERY", Unit: time.Second, Least: 1,
			Field: func(c Config) time.Duration { return c.MailEvery }},
		{Name: "DEFENDER_NOTIFY_ACK_WAIT", Unit: time.Second, Least: 1,
			Field: func(c Config) time.Duration { return c.AckWait }},
		{Name: "DEFENDER_WEBHOOK_INTERVAL", Unit: time.Second, Least: 1,
			Field: func(c Config) time.Duration { return c.WebhookInterval }},
	})
}
