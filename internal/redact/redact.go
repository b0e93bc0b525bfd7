// Package redact keeps secrets out of messages that end up in logs:
// URLs that carry passwords, and the parsers' errors that quote them.
package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URLError is the reason raw does not parse as a URL (err, from url.Parse
// or a parser that returns its error), without raw itself: url.Parse's
// error quotes the URL whole, password included. When raw has user
// information the reason is left out too, as it may quote a piece of it
// ("invalid URL escape").
func URLError(raw string, err error) error {
	var ue *url.Error
	if strings.Contains(raw, "@") || !errors.As(err, &ue) {
		return errors.New("not a valid URL")
	}
	return fmt.Errorf("not a valid URL: %w", ue.Err)
}

// URLList is a comma-separated list of URLs with each user information
// replaced by "xxxxx", with or without a scheme ("user:pw@host:4222" is a
// URL to nats.go).
func URLList(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		start := len(p) - len(strings.TrimLeft(p, " \t"))
		if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
			start = scheme + 3
		}
		parts[i] = p[:start] + "xxxxx" + p[at:]
	}
	return strings.Join(parts, ",")
}

// URL is u's scheme and host only, "/…" standing for the rest (user
// information, path and query may hold a token).
func URL(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		s += "/…"
	}
	return s
}
