package gatesvc

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var decodeSeeds = []string{
	`{"ip":"203.0.113.7","username":"alice","success":false,"path":"/login","user_agent":"curl"}`,
	`{"ip":"2001:db8::1","username":"bob"}`,
	`{"ip":"[2001:db8::1]:443","success":true}`,
	`{"ip":"::ffff:1.2.3.4","username":"\u0000\ud800"}`,
	`{"ip":"1.2.3.4","success":null}`,
	`{"ip":"1.2.3.4","success":"yes"}`,
	`{"ip":"1.2.3.4"} trailing`,
	`{"ip":"1.2.3.4","extra":1}`,
	`{"ip":1}`,
	`[]`, `null`, ``, `{`, "{\"ip\":\"1.2.3.4\",\"username\":\"\xff\"}",
}

// checkRequestError asserts that err is a client error with a 4xx status.
func checkRequestError(t *testing.T, err error) {
	var re *requestError
	require.True(t, errors.As(err, &re), "error %v is not a request error", err)
	assert.GreaterOrEqual(t, re.status, 400)
	assert.Less(t, re.status, 500)
	assert.NotEmpty(t, re.msg)
}

// FuzzDecodeAttempt: the decoder never panics, refuses with a client
// error, and what it accepts is valid.
func FuzzDecodeAttempt(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeAttempt(body)
		if err != nil {
			checkRequestError(t, err)
			return
		}
		assert.True(t, utf8.Valid(body))
		assert.True(t, req.Addr.IsValid(), "ip %q accepted", req.IP)
		assert.LessOrEqual(t, len(req.Username), MaxUsernameBytes)
		assert.LessOrEqual(t, len(req.Path), MaxInfoBytes)
		assert.LessOrEqual(t, len(req.UserAgent), MaxInfoBytes)
		assert.True(t, utf8.ValidString(req.Path) && utf8.ValidString(req.UserAgent) && utf8.ValidString(req.Username))
		// What was accepted round-trips.
		again, err := json.Marshal(map[string]any{"ip": req.IP, "username": req.Username, "success": req.Success,
			"path": req.Path, "user_agent": req.UserAgent})
		require.NoError(t, err)
		if req.Success == nil {
			var m map[string]any
			require.NoError(t, json.Unmarshal(again, &m))
			delete(m, "success")
			again, _ = json.Marshal(m)
		}
		req2, err := DecodeAttempt(again)
		require.NoError(t, err, "re-encoded %s", again)
		assert.Equal(t, req, req2)

		// The check decoder accepts a subset.
		if c, err := DecodeCheck(body); err == nil {
			assert.Equal(t, req.Addr, c.Addr)
			assert.Equal(t, req.Username, c.Username)
		} else {
			checkRequestError(t, err)
		}
	})
}

// FuzzDecodeOutcome: never panics; accepts only {"success":bool}.
func FuzzDecodeOutcome(f *testing.F) {
	for _, s := range []string{`{"success":true}`, `{"success":false}`, `{}`, `{"success":1}`, `{"success":true}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := DecodeOutcome(body)
		if err != nil {
			checkRequestError(t, err)
			return
		}
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(body, &m))
		assert.Len(t, m, 1)
		assert.Equal(t, out.Success, string(m["success"]) == "true")
	})
}

// FuzzTokenOpen: never panics, and only tokens issued with the key open.
func FuzzTokenOpen(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	tokens := NewTokens([]byte("fuzz-key-0123456789"), func() time.Time { return now })
	f.Add(tokens.Issue(attempt("203.0.113.7", "alice"), "charge-1", time.Minute))
	f.Add("e30.AAAA")
	f.Add(".")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		tk, err := tokens.Open(token)
		if err != nil {
			assert.True(t, errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrTokenExpired), "error %v", err)
			return
		}
		// Accepted: it must be what was issued (the seed).
		assert.Equal(t, "alice", tk.Attempt.Username)
	})
}
