// Package truncate bounds text that came from outside (usernames, paths,
// user agents, values quoted in error messages) by its size in bytes.
package truncate

import "unicode/utf8"

// UTF8 cuts s to at most n bytes without splitting a UTF-8 character.
func UTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
