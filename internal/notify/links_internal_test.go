package notify

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tokenOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	require.NoError(t, err)
	return u.Query().Get("t")
}

// TestLinks: a link names its user and event, expires, and survives a key
// rotation while the old key is still listed.
func TestLinks(t *testing.T) {
	oldKey, newKey := []byte(strings.Repeat("o", 32)), []byte(strings.Repeat("n", 32))
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := NewLinks([][]byte{oldKey}, 15*time.Minute, "https://shop.example/defender/unlock")
	require.NoError(t, err)
	l.now = clock
	until := now.Add(5 * time.Minute)
	link := l.URL("alice", "ev1", until)
	assert.True(t, strings.HasPrefix(link, "https://shop.example/defender/unlock?t="))
	c, err := l.check(tokenOf(t, link))
	require.NoError(t, err)
	assert.Equal(t, claims{User: "alice", Event: "ev1", Until: until.UnixMilli(), Expires: now.Add(15 * time.Minute).Unix()}, c)
	long := strings.Repeat("a", 2000)
	_, err = l.check(tokenOf(t, l.URL(long, "ev1", until)))
	assert.NoError(t, err, "a name of 2,000 bytes still fits")
	assert.Empty(t, l.URL(long+long, "ev1", until), "none for a name whose token the page would refuse")

	// Rotation: the new key signs, the old one still verifies.
	rotated, err := NewLinks([][]byte{newKey, oldKey}, 15*time.Minute, "https://shop.example/defender/unlock")
	require.NoError(t, err)
	rotated.now = clock
	_, err = rotated.check(tokenOf(t, link))
	assert.NoError(t, err, "a link signed before the rotation works")
	newOnly, err := NewLinks([][]byte{newKey}, 15*time.Minute, "https://shop.example/defender/unlock")
	require.NoError(t, err)
	newOnly.now = clock
	_, err = newOnly.check(tokenOf(t, link))
	assert.ErrorIs(t, err, ErrLinkInvalid, "once the old key is dropped its links stop working")
	_, err = newOnly.check(tokenOf(t, rotated.URL("alice", "ev2", until)))
	assert.NoError(t, err)

	now = now.Add(15 * time.Minute)
	_, err = l.check(tokenOf(t, link))
	assert.ErrorIs(t, err, ErrLinkExpired)

	// Another spelling of a good token: a newline the decoder would skip.
	good := tokenOf(t, l.URL("alice", "ev1", until))
	now = now.Add(-15 * time.Minute)
	_, err = l.check(good)
	require.NoError(t, err)
	p, s, _ := strings.Cut(good, ".")
	for _, bad := range []string{"", ".", "abc", "a.b", strings.Repeat("x", 5000) + ".y",
		p + "." + s[:5] + "\n" + s[5:], p[:3] + "\r\n" + p[3:] + "." + s, good + "\n"} {
		_, err := l.check(bad)
		assert.ErrorIs(t, err, ErrLinkInvalid, "%q", bad)
	}
}

func TestNewLinksRefuses(t *testing.T) {
	key := [][]byte{[]byte(strings.Repeat("k", 32))}
	for name, err := range map[string]error{
		"no key": func() error { _, err := NewLinks(nil, time.Minute, "https://a.example/u"); return err }(),
		"short key": func() error {
			_, err := NewLinks([][]byte{[]byte("short")}, time.Minute, "https://a.example/u")
			return err
		}(),
		"no ttl":   func() error { _, err := NewLinks(key, 0, "https://a.example/u"); return err }(),
		"relative": func() error { _, err := NewLinks(key, time.Minute, "/unlock"); return err }(),
		"query":    func() error { _, err := NewLinks(key, time.Minute, "https://a.example/u?x=1"); return err }(),
		"ftp":      func() error { _, err := NewLinks(key, time.Minute, "ftp://a.example/u"); return err }(),
	} {
		assert.Error(t, err, name)
	}
}
