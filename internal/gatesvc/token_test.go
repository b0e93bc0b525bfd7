package gatesvc

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

func attempt(ip, username string) gate.Attempt {
	return gate.Attempt{IP: netip.MustParseAddr(ip), Username: username, Path: "/login", UserAgent: "test/1"}
}

func TestTokens(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	key := []byte("token-key-0123456789")
	tokens := NewTokens(key, clock)
	a := attempt("2001:db8::7", "Alice")
	token := tokens.Issue(a, "charge-1", 30*time.Second)
	payload, sig, _ := strings.Cut(token, ".")

	tk, err := tokens.Open(token)
	require.NoError(t, err)
	assert.Equal(t, a, tk.Attempt)
	assert.Equal(t, "charge-1", tk.Charge)

	tests := []struct {
		name  string
		open  func() error
		error error
	}{
		{"other key", func() error { _, err := NewTokens([]byte("other-key-0123456789"), clock).Open(token); return err }, ErrTokenInvalid},
		{"payload altered", func() error { _, err := tokens.Open(otherFirst(payload) + "." + sig); return err }, ErrTokenInvalid},
		{"signature altered", func() error { _, err := tokens.Open(payload + "." + otherFirst(sig)); return err }, ErrTokenInvalid},
		{"no dot", func() error { _, err := tokens.Open(payload); return err }, ErrTokenInvalid},
		{"not base64", func() error { _, err := tokens.Open("!!.!!"); return err }, ErrTokenInvalid},
		{"expired", func() error {
			_, err := NewTokens(key, func() time.Time { return now.Add(30 * time.Second) }).Open(token)
			return err
		}, ErrTokenExpired},
		{"just valid", func() error {
			_, err := NewTokens(key, func() time.Time { return now.Add(30*time.Second - time.Millisecond) }).Open(token)
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.open()
			if tc.error == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tc.error)
		})
	}

	t.Run("used once", func(t *testing.T) {
		require.NoError(t, tokens.Use(tk))
		assert.ErrorIs(t, tokens.Use(tk), ErrTokenUsed)
		// Another token of the same attempt is another token.
		tk2, err := tokens.Open(tokens.Issue(a, "charge-1", 30*time.Second))
		require.NoError(t, err)
		assert.NoError(t, tokens.Use(tk2))
	})

	t.Run("used set forgets expired tokens", func(t *testing.T) {
		now = now.Add(time.Minute)
		fresh, err := tokens.Open(tokens.Issue(a, "", time.Second))
		require.NoError(t, err)
		require.NoError(t, tokens.Use(fresh))
		tokens.mu.Lock()
		defer tokens.mu.Unlock()
		assert.Len(t, tokens.used, 1)
	})

	t.Run("opened before its expiry, used after", func(t *testing.T) {
		// A replay opened just before the token expires, whose body then
		// arrives slowly, is used after the first use was forgotten.
		token := tokens.Issue(a, "charge-2", 30*time.Second)
		first, err := tokens.Open(token)
		require.NoError(t, err)
		require.NoError(t, tokens.Use(first))
		now = now.Add(30*time.Second - time.Millisecond)
		replay, err := tokens.Open(token)
		require.NoError(t, err, "still valid when opened")
		now = now.Add(2 * time.Second)
		other, err := tokens.Open(tokens.Issue(a, "", time.Second))
		require.NoError(t, err)
		require.NoError(t, tokens.Use(other)) // sweeps the expired first use
		assert.ErrorIs(t, tokens.Use(replay), ErrTokenExpired)
	})

	t.Run("no address", func(t *testing.T) {
		tk, err := tokens.Open(tokens.Issue(gate.Attempt{Username: "bob"}, "", time.Second))
		require.NoError(t, err)
		assert.False(t, tk.Attempt.IP.IsValid())
	})
}

// otherFirst is s with its first character replaced by another one of the
// base64url alphabet: "x" in its place was no change at all one time in
// 64, when the signature already began with it.
func otherFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}
