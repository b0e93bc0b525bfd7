package redact

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestURLError(t *testing.T) {
	raw := "redis://user:s3cret%zz@host:6379"
	_, err := url.Parse(raw)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "s3cret", "url.Parse's own error quotes it")
	got := URLError(raw, err).Error()
	assert.Equal(t, "not a valid URL", got, "with user information, not even the reason")

	raw = "http://host:port%zz/"
	_, err = url.Parse(raw)
	require.Error(t, err)
	got = URLError(raw, err).Error()
	assert.Contains(t, got, "not a valid URL: ")
	assert.NotContains(t, got, "http://host")
}

func TestURLList(t *testing.T) {
	assert.Equal(t, "nats://xxxxx@a:4222, nats://b:4222,tls://xxxxx@c",
		URLList("nats://u:p@a:4222, nats://b:4222,tls://tok@c"))
	assert.Equal(t, "xxxxx@nats:4222, xxxxx@b", URLList("user:s3cret@nats:4222, tok@b"), "nats.go takes URLs without a scheme")
}

func TestURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/T000/B000/XXXX": "https://hooks.example.com/…",
		"https://u:p@example.com":                  "https://example.com/…",
		"https://example.com?token=x":              "https://example.com/…",
		"https://example.com":                      "https://example.com",
	} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		assert.Equal(t, want, URL(u), raw)
	}
}
