package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile input to the gate service process (bad JSON bodies are in
// badrequest_test.go).

// TestHostileHeaders: oversized header blocks and bodies are refused by
// the server before any decoding, a client that never finishes its
// headers is cut off, and the service answers normally afterwards.
func TestHostileHeaders(t *testing.T) {
	t.Parallel()
	g := startGate(t)

	raw := func(req string) string {
		c, err := net.Dial("tcp", g.Addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
		_, _ = io.WriteString(c, req) // the server may hang up before reading it all
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.Status
	}
	body := `{"ip":"203.0.113.40","username":"alice"}`
	req := func(headers string) string {
		return "POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers +
			fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	}

	assert.Equal(t, "200 OK", raw(req("")))
	assert.Contains(t, raw(req("X-Big: "+strings.Repeat("a", 200<<10)+"\r\n")), "431", "one huge header")
	many := strings.Repeat("X-A: b\r\n", 20000)
	assert.Contains(t, raw(req(many)), "431", "many headers")
	assert.Contains(t, raw(req("User-Agent: \x00\x01\r\n")), "400", "control characters in a header value")
	assert.Contains(t, raw("POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{"), "413",
		"a declared length over the limit")
	chunk := strings.Repeat("a", 8<<10)
	var chunked strings.Builder
	chunked.WriteString("POST /v1/attempts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 20 {
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	chunked.WriteString("0\r\n\r\n")
	assert.Contains(t, raw(chunked.String()), "413", "a chunked body over the limit")
	assert.Contains(t, raw("POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		"400", "length and chunked together (smuggling)")
	assert.Contains(t, raw("GARBAGE\r\n\r\n"), "400", "not HTTP")

	// A client that never finishes its headers is disconnected (the
	// server's header timeout), without an answer.
	c, err := net.Dial("tcp", g.Addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /v1/check HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(60*time.Second)))
	_, err = io.ReadAll(c)
	assert.NoError(t, err, "the server closed the connection")

	// Still serving, nothing was counted, no 500.
	r := g.check(t, "203.0.113.40", "alice")
	assertAllowed(t, r)
	assert.Equal(t, 0, r.num("ip_failures"))
	m := g.do(t, http.MethodGet, "/metrics", "", nil)
	assert.NotContains(t, m.Raw, `code="500"`)
}

// TestHostileUsernamesService: spellings of one username sent as JSON
// escapes (case, decomposition, NUL, invisible characters) are one
// identity; glob-like names block only themselves; all with either store.
func TestHostileUsernamesService(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		spellings := []string{`Zoë`, `ZO\u0045\u0308`, `zo\u0065\u0308`, `\u0000zoë`, `zo\u200bë`, `\ufeffZOË`}
		for i, s := range spellings {
			body := fmt.Sprintf(`{"ip":"203.0.113.%d","username":"%s","success":false}`, 50+i, s)
			r := g.do(t, http.MethodPost, "/v1/attempts", "application/json", strings.NewReader(body))
			assert.Equal(t, min(i+1, 4), r.num("username_failures"), "spelling %s", s)
			if i >= 3 {
				assertBlocked(t, r, []string{"username"}, "spelling %s", s)
			}
		}
		assertBlocked(t, g.check(t, "203.0.113.99", "zoë"), []string{"username"})

		for i := 0; i < 4; i++ {
			g.attempt(t, fmt.Sprintf("203.0.113.%d", 60+i), "*", false)
		}
		assertBlocked(t, g.check(t, "203.0.113.98", "*"), []string{"username"})
		for _, other := range []string{"alice", "a", "?", "[*]", "**"} {
			assertAllowed(t, g.check(t, "203.0.113.98", other), other)
		}
	})
}

// TestHostileIPv6Service: an attacker rotating through its /64, writing
// each address a different way, is one source; IPv4 written as mapped
// IPv6 is the same IPv4 source.
func TestHostileIPv6Service(t *testing.T) {
	stores(t, func(t *testing.T, env ...string) {
		g := startGate(t, env...)
		rotation := []string{"2001:db8:77:1::1", "[2001:db8:77:1::abcd]:443", "2001:DB8:77:1:ffff:ffff:ffff:ffff", "2001:db8:77:1:0:0:0:2%eth0"}
		for i, ip := range rotation {
			r := g.attempt(t, ip, fmt.Sprintf("u%d", i), false)
			assert.Equal(t, i+1, r.num("ip_failures"), ip)
		}
		assertBlocked(t, g.check(t, "2001:db8:77:1:1234:5678:9abc:def0", ""), []string{"ip"})
		assertAllowed(t, g.check(t, "2001:db8:77:2::1", ""), "the next /64")

		for i, ip := range []string{"::ffff:198.51.100.40", "198.51.100.40", "[::ffff:198.51.100.40]:80", "198.51.100.40:1234"} {
			r := g.attempt(t, ip, fmt.Sprintf("v%d", i), false)
			assert.Equal(t, i+1, r.num("ip_failures"), ip)
		}
		assertBlocked(t, g.check(t, "198.51.100.40", ""), []string{"ip"})
	})
}
