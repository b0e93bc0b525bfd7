package gatesvc

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/defender-go/defender/pkg/gate"
)

// Token errors, answered as client errors.
var (
	// ErrTokenInvalid: not a token, or not signed with this service's key.
	ErrTokenInvalid = errors.New("invalid token")
	// ErrTokenExpired: issued longer ago than DEFENDER_PENDING_TIMEOUT;
	// the attempt has already been counted as a failure.
	ErrTokenExpired = errors.New("token expired: the attempt was counted as a failure")
	// ErrTokenUsed: the outcome of this attempt was reported already.
	ErrTokenUsed = errors.New("token already used")
)

// MinSecretBytes is the shortest DEFENDER_TOKEN_SECRET accepted.
const MinSecretBytes = 16

// maxTokenBytes bounds a token before any work is done on it. It is the
// longest token Issue makes for a request within the service's limits:
// the username, path and user agent at their bounds, every byte escaped
// by JSON in six ("\u003c"), plus room for the address, the charge, the
// expiry, the nonce and the keys. A smaller bound refused tokens the
// service had issued, whose attempts then could not be settled.
const maxTokenBytes = (maxClaimsBytes+2)/3*4 + 1 + (sha256.Size+2)/3*4

// maxClaimsBytes bounds the JSON of a token's claims (see maxTokenBytes).
const maxClaimsBytes = 6*(MaxUsernameBytes+2*MaxInfoBytes) + 1024

// b64 decodes strictly: one signature has one spelling, so the used set
// cannot be escaped by a variant of it.
var b64 = base64.RawURLEncoding.Strict()

// tokenDomain separates these signatures from any other use of the key.
const tokenDomain = "defender-gate-attempt-v1."

// Tokens issues and verifies the tokens of the two-phase flow. A token
// carries the whole attempt (address, username, path, user agent, the
// store's charge token and an expiry), signed with HMAC-SHA256, so any
// instance sharing the key and the store can settle it. It also remembers
// the tokens used on this instance until they expire, so a token is
// refused the second time. A failure reported twice on two instances
// counts once anyway (the store settles a charge once); a success reported
// twice clears the counters twice, which is harmless.
type Tokens struct {
	key []byte
	now func() time.Time

	mu        sync.Mutex
	used      map[string]time.Time // signature → expiry
	nextSweep time.Time
}

// NewTokens returns Tokens signing with key. now is the clock (time.Now if nil).
func NewTokens(key []byte, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{key: append([]byte(nil), key...), now: now, used: map[string]time.Time{}}
}

// RandomKey returns a fresh random key, for a service without
// DEFENDER_TOKEN_SECRET (its tokens then work on this instance only).
func RandomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand panics rather)
	return k
}

// claims is a token's signed content.
type claims struct {
	IP        string `json:"ip,omitempty"`
	Username  string `json:"u,omitempty"`
	Path      string `json:"p,omitempty"`
	UserAgent string `json:"ua,omitempty"`
	Device    string `json:"d,omitempty"` // the client's device token (smart lockout)
	Charge    string `json:"t,omitempty"` // the store's token; "" when nothing was charged
	Expires   int64  `json:"exp"`         // unix milliseconds
	Nonce     string `json:"n"`
}

// Ticket is a verified token: the attempt to settle and its store token.
type Ticket struct {
	Attempt gate.Attempt
	Charge  string
	expires time.Time
	sig     string
}

// Issue returns the token of an attempt admitted by Begin with the store
// token charge, valid for ttl.
func (t *Tokens) Issue(a gate.Attempt, charge string, ttl time.Duration) string {
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	c := claims{Username: a.Username, Path: a.Path, UserAgent: a.UserAgent, Device: a.Device, Charge: charge,
		Expires: t.now().Add(ttl).UnixMilli(), Nonce: base64.RawURLEncoding.EncodeToString(nonce[:])}
	if a.IP.IsValid() {
		c.IP = a.IP.String()
	}
	// Without HTML escaping, '<', '>' and '&' in a path stay one byte each
	// instead of six: a token travels in a URL, through proxies whose
	// request-line limit (nginx: 8 KiB) a crafted login link could pass.
	var payload bytes.Buffer
	enc := json.NewEncoder(&payload)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(c) // strings and an int: cannot fail
	p := base64.RawURLEncoding.EncodeToString(bytes.TrimSuffix(payload.Bytes(), []byte("\n")))
	return p + "." + base64.RawURLEncoding.EncodeToString(t.sign(p))
}

func (t *Tokens) sign(payload string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(tokenDomain))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Open verifies a token's signature and expiry and returns its ticket.
func (t *Tokens) Open(token string) (Ticket, error) {
	if len(token) > maxTokenBytes {
		return Ticket{}, ErrTokenInvalid
	}
	p, s, ok := strings.Cut(token, ".")
	if !ok {
		return Ticket{}, ErrTokenInvalid
	}
	sig, err := b64.DecodeString(s)
	if err != nil || !hmac.Equal(sig, t.sign(p)) {
		return Ticket{}, ErrTokenInvalid
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return Ticket{}, ErrTokenInvalid
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Ticket{}, ErrTokenInvalid
	}
	tk := Ticket{Charge: c.Charge, expires: time.UnixMilli(c.Expires), sig: string(sig),
		Attempt: gate.Attempt{Username: c.Username, Path: c.Path, UserAgent: c.UserAgent, Device: c.Device}}
	if c.IP != "" {
		if tk.Attempt.IP, err = gate.ParseIP(c.IP); err != nil {
			return Ticket{}, ErrTokenInvalid
		}
	}
	if !t.now().Before(tk.expires) {
		return Ticket{}, ErrTokenExpired
	}
	return tk, nil
}

// Use marks a verified ticket used; it fails with ErrTokenUsed if it was
// used before on this instance, and with ErrTokenExpired if it has expired
// since Open (the service reads the body in between): the used set forgets
// a token once it expires, so a replay used later would pass.
func (t *Tokens) Use(tk Ticket) error {
	now := t.now()
	if !now.Before(tk.expires) {
		return ErrTokenExpired
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.After(t.nextSweep) {
		for sig, exp := range t.used {
			if now.After(exp) {
				delete(t.used, sig)
			}
		}
		t.nextSweep = now.Add(time.Second)
	}
	if _, dup := t.used[tk.sig]; dup {
		return ErrTokenUsed
	}
	t.used[tk.sig] = tk.expires
	return nil
}
