package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Links makes and checks the unlock links of the mails: a token that
// names the username, the block event and an expiry, signed with
// HMAC-SHA256. Every notifier instance and the unlock page share the keys
// (DEFENDER_UNLOCK_KEYS): the first signs, every one verifies, so a key
// is rotated by putting the new one first and dropping the old one once
// the links it signed have expired (DEFENDER_UNLOCK_TTL).
type Links struct {
	keys [][]byte
	ttl  time.Duration
	base string // the unlock page's public URL
	now  func() time.Time
}

// MinKeyLen is the shortest unlock key accepted, in bytes.
const MinKeyLen = 32

// Why a link is refused, for the page and the metrics.
var (
	ErrLinkInvalid = errors.New("the link is not one we sent: it is incomplete or was altered")
	ErrLinkExpired = errors.New("the link has expired")
	ErrLinkUsed    = errors.New("the link was used already")
	ErrLinkStale   = errors.New("the lock this link was sent for has ended or was replaced by another")
)

// NewLinks checks its settings: at least one key of MinKeyLen bytes, a
// positive ttl, and base an absolute http(s) URL.
func NewLinks(keys [][]byte, ttl time.Duration, base string) (*Links, error) {
	if len(keys) == 0 {
		return nil, errors.New("DEFENDER_UNLOCK_KEYS: required to sign unlock links")
	}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("DEFENDER_UNLOCK_KEYS: key %d has %d bytes, want at least %d", i+1, len(k), MinKeyLen)
		}
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("DEFENDER_UNLOCK_TTL: %s is not positive", ttl)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("DEFENDER_UNLOCK_URL: %q is not an absolute http(s) URL without query", base)
	}
	return &Links{keys: keys, ttl: ttl, base: base, now: time.Now}, nil
}

// TTL is how long a link is valid.
func (l *Links) TTL() time.Duration { return l.ttl }

// claims is what a token carries.
type claims struct {
	User    string `json:"u"`
	Event   string `json:"e"`
	Until   int64  `json:"b"` // the end of the block it was sent for, unix ms
	Expires int64  `json:"x"` // unix seconds
}

// URL is the unlock link for username's block event eventID, a block
// that ends at until, valid for the links' ttl from now. It lifts that
// block only: not one that replaced it (an admin's, or the attacker's
// next). It is "" when the username is too long for a link that the
// page would take (maxToken).
func (l *Links) URL(username, eventID string, until time.Time) string {
	t := l.token(claims{User: username, Event: eventID, Until: until.UnixMilli(), Expires: l.now().Add(l.ttl).Unix()})
	if len(t) > maxToken {
		return ""
	}
	return l.base + "?t=" + t
}

// maxToken is the longest token the page takes: a username of over 2,000
// bytes or so makes none (the gates cut usernames to
// DEFENDER_MAX_USERNAME_LENGTH, 255 characters by default).
const maxToken = 4096

func (l *Links) token(c claims) string {
	payload, _ := json.Marshal(c) // strings and an int: cannot fail
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(sign(l.keys[0], p))
}

func sign(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// check returns the token's claims if one of the keys signed it and it
// has not expired.
func (l *Links) check(token string) (claims, error) {
	p, s, ok := strings.Cut(token, ".")
	if !ok || len(token) > maxToken {
		return claims{}, ErrLinkInvalid
	}
	mac, err := base64.RawURLEncoding.DecodeString(s)
	// Only the encoding we write: the decoder skips newlines and takes
	// spare bits, which would give one link endless spellings.
	if err != nil || base64.RawURLEncoding.EncodeToString(mac) != s {
		return claims{}, ErrLinkInvalid
	}
	signed := false
	for _, k := range l.keys {
		signed = signed || hmac.Equal(mac, sign(k, p))
	}
	if !signed {
		return claims{}, ErrLinkInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil || base64.RawURLEncoding.EncodeToString(payload) != p {
		return claims{}, ErrLinkInvalid
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.User == "" || c.Event == "" {
		return claims{}, ErrLinkInvalid
	}
	if !l.now().Before(time.Unix(c.Expires, 0)) {
		return c, ErrLinkExpired
	}
	return c, nil
}

// usedKey is the key that marks a link used: by its block event, so that
// no other spelling or second link for the event works again (a digest:
// a key-value bucket's keys allow few characters).
func usedKey(c claims) string { return "t_" + digest(c.Event) }
