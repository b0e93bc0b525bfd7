package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/defender-go/defender/internal/redact"
	"github.com/defender-go/defender/internal/truncate"
)

// Format is the body an endpoint receives.
type Format string

const (
	// FormatJSON is the generic body: {"blocks":[...],"sent_at":"..."},
	// each block as events.Block writes it.
	FormatJSON Format = "json"
	// FormatSlack is a Slack incoming webhook's {"text":"..."}: one line
	// per block, written for people; past 50 lines a message ends with
	// "and N more" (the JSON endpoints have every block).
	FormatSlack Format = "slack"
)

// Endpoint is one receiver of the calls.
type Endpoint struct {
	// URL is where the calls are POSTed: http or https with a host. Its
	// path and query may be secret (a Slack webhook's path is its only
	// credential), so the sender names an endpoint by its host alone.
	URL string
	// Format is the body it receives; "" means FormatJSON.
	Format Format
}

// ParseEndpoints parses a comma-separated list of endpoints, each "URL"
// (FormatJSON), "json=URL" or "slack=URL", for example
// "https://a.example/hook,slack=https://hooks.slack.com/services/X".
// A comma inside a URL must be written %2C. Its errors name the bad entry
// by its position and, when it has one, its host: never by its path.
func ParseEndpoints(s string) ([]Endpoint, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("webhook endpoints: none given")
	}
	parts := strings.Split(s, ",")
	out := make([]Endpoint, 0, len(parts))
	seen := make(map[string]int, len(parts))
	for i, p := range parts {
		e, err := parseEndpoint(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("webhook endpoint %d of %d: %w", i+1, len(parts), err)
		}
		// The same URL twice would get every alert twice.
		if j, dup := seen[e.URL]; dup {
			return nil, fmt.Errorf("webhook endpoint %d of %d: same URL as endpoint %d", i+1, len(parts), j)
		}
		seen[e.URL] = i + 1
		out = append(out, e)
	}
	return out, nil
}

// parseEndpoint parses one entry of the list.
func parseEndpoint(p string) (Endpoint, error) {
	if p == "" {
		return Endpoint{}, errors.New("empty")
	}
	e := Endpoint{URL: p, Format: FormatJSON}
	// Only a plain word before "=" names a format: in a bare URL the "="
	// of a query comes after "://", and a secret-bearing URL with its
	// scheme forgotten must not be echoed back as a format name.
	if name, rest, ok := strings.Cut(p, "="); ok && isWord(name) {
		e.Format = Format(strings.ToLower(name))
		e.URL = strings.TrimSpace(rest)
	}
	if err := checkEndpoint(e); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

// checkEndpoint checks e's format and URL.
func checkEndpoint(e Endpoint) error {
	if e.Format != "" && e.Format != FormatJSON && e.Format != FormatSlack {
		return fmt.Errorf("unknown format %q (want %s or %s)", truncate.UTF8(string(e.Format), 20), FormatJSON, FormatSlack)
	}
	_, err := endpointHost(e.URL)
	return err
}

// endpointHost checks that raw is an http or https URL with a host and
// returns the host (with its port, if any). Its errors show at most the
// scheme and host.
func endpointHost(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("no URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", redact.URLError(raw, err)
	}
	switch {
	case u.Scheme == "":
		return "", errors.New("URL has no scheme (want http:// or https://)")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%s: scheme %q is not http or https", redact.URL(u), truncate.UTF8(u.Scheme, 20))
	case u.Hostname() == "":
		return "", fmt.Errorf("%s: URL has no host", redact.URL(u))
	}
	return u.Host, nil
}

// isWord reports whether s is a non-empty run of ASCII letters.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}
