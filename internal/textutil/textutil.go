// Package textutil holds string helpers shared by defender's packages.
package textutil

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Truncate cuts s to at most n bytes without splitting a UTF-8 character.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// URLParseError is the reason raw does not parse as a URL (err, from
// url.Parse or a parser that returns its error), without raw itself:
// url.Parse's error quotes the URL whole, password included, and such
// errors end up in logs. When raw has user information the reason is
// left out too, as it may quote a piece of it ("invalid URL escape").
func URLParseError(raw string, err error) error {
	var ue *url.Error
	if strings.Contains(raw, "@") || !errors.As(err, &ue) {
		return errors.New("not a valid URL")
	}
	return fmt.Errorf("not a valid URL: %w", ue.Err)
}
