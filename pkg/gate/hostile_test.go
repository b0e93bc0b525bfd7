package gate_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
	"github.com/defender-go/defender/pkg/gate"
)

// Hostile input to the library: every test here plays an attacker.

// TestHostileUsernameSpellings: whatever spelling of one username an
// attacker types (case, width, decomposition, invisible and control
// characters, spaces), the failures land on one counter, so spreading
// guesses over spellings gains nothing, and every spelling is refused
// once it is blocked.
func TestHostileUsernameSpellings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := randHex(3)
		spellings := []string{
			"zoë" + s,
			"ZOË" + s,
			"zoe\u0308" + s,       // decomposed ë
			"ZOE\u0308" + s,       // decomposed, upper case
			"ｚｏë" + s,             // full width
			"zo\u200bë" + s,       // zero-width space
			"\ufeffzoë" + s,       // byte-order mark
			"zo\u00adë" + s,       // soft hyphen
			"zoë" + s + "\x00",    // NUL
			"zo\u202eë" + s,       // right-to-left override
			" \tzoë" + s + "\r\n", // spaces and line ends
			"zoë\u200d" + s,       // zero-width joiner
		}
		cfg := gate.DefaultConfig()
		cfg.UsernameFailureLimit = len(spellings) - 1
		cfg.IPFailureLimit = 100
		g, ev := newGate(t, b, cfg)
		for i, u := range spellings {
			_, ip := fresh()
			d := g.Record(ctx, attempt(ip, u), false)
			assert.Equal(t, i+1, d.UsernameFailures, "spelling %d %q is the same user", i, u)
			assert.Equal(t, i < len(spellings)-1, d.Allowed, "spelling %d %q", i, u)
		}
		for _, u := range spellings {
			_, ip := fresh()
			d := g.Check(ctx, attempt(ip, u))
			assert.False(t, d.Allowed, "%q is blocked", u)
			assert.Equal(t, []gate.Kind{gate.KindUsername}, d.BlockedBy, "%q", u)
		}
		blocks := ev.blocks(true)
		require.Len(t, blocks, 1, "one user, one block")
		assert.Equal(t, "zoë"+s, blocks[0].Subject)
		// What reaches the events is the one canonical identity.
		for _, a := range ev.Attempts() {
			assert.Equal(t, "zoë"+s, a.Username)
		}
	})
}

// TestHostileUsernameBytes: invalid UTF-8, control characters and
// oversized names never crash the gate and never reach the store or the
// events as anything but bounded, valid, printable text. Names that
// differ only in their invalid bytes are one identity, as are names that
// differ only after the length cap.
func TestHostileUsernameBytes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		g, ev := newGate(t, b, gate.DefaultConfig())
		s := randHex(3)
		names := []string{
			"bob" + s + "\xff",
			"bob" + s + "\xfe",
			"bob" + s + "\xc0\x80", // overlong NUL
			"\x00\x01\x02\x1b[31m" + s,
			strings.Repeat("\xff", 5000),
			strings.Repeat("ж", 100000) + s,
			strings.Repeat("a", 300) + s,
			strings.Repeat("a", 300) + "other" + s,
			"\u200b\u200c\u200d\ufeff", // nothing visible: no username
		}
		for _, u := range names {
			_, ip := fresh()
			d := g.Record(ctx, attempt(ip, u), false)
			assert.True(t, d.Allowed, "%.40q", u)
		}
		for _, a := range ev.Attempts() {
			assert.True(t, utf8.ValidString(a.Username), "%q", a.Username)
			assert.LessOrEqual(t, utf8.RuneCountInString(a.Username), gate.DefaultConfig().MaxUsernameLength)
			for _, r := range a.Username {
				assert.False(t, r < 0x20 || r == 0x7f, "control character in %q", a.Username)
			}
		}
		_, ip := fresh()
		assert.Equal(t, 3, g.Check(ctx, attempt(ip, "bob"+s+"\xff")).UsernameFailures,
			"\\xff, \\xfe and an overlong NUL are one identity (U+FFFD)")
		assert.Equal(t, 2, g.Check(ctx, attempt(ip, strings.Repeat("a", 300))).UsernameFailures,
			"names equal up to the cap are one identity")
		assert.Equal(t, 0, g.Check(ctx, attempt(ip, "\u200b")).UsernameFailures, "an invisible name counts nothing")
		_, err := g.Subject(gate.KindUsername, "\u200b\x00")
		assert.Error(t, err, "an admin cannot act on an empty name")
	})
}

// hostileNames look like Redis glob patterns, key separators or other
// kinds' subjects.
var hostileNames = []string{"*", "?", "[a-z]", "a*", `\*`, "*:*", "a:b", "username:alice", "blocked:username:alice",
	"a|b", "{a}", "{defender}alice", "10.0.0.1", "ip:10.0.0.1", "%", "alice*"}

// TestHostileUsernameKeys: names that look like glob patterns or key
// separators are plain subjects. Blocking, listing and unblocking one of
// them touches no other subject, of its kind or another.
func TestHostileUsernameKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		cfg := gate.DefaultConfig()
		cfg.IPFailureLimit = 1000
		g, ev := newGate(t, b, cfg)
		victims := []string{"alice", "a", "b", "a:b:c", "z"}
		for _, v := range victims {
			require.NoError(t, g.Block(ctx, gate.KindUsername, v, 0))
		}
		require.NoError(t, g.Block(ctx, gate.KindIP, "10.0.0.1", 0))
		for _, h := range hostileNames {
			for i := 0; i < 4; i++ {
				_, ip := fresh()
				g.Record(ctx, attempt(ip, h), false)
			}
		}
		assertBlockedNames(t, g, append(append([]string{}, victims...), hostileNames...))
		require.Len(t, ev.blocks(true), len(victims)+1+len(hostileNames))

		// Unblock every hostile name: each lifts exactly its own block.
		for i, h := range hostileNames {
			was, err := g.Unblock(ctx, gate.KindUsername, h)
			require.NoError(t, err)
			assert.True(t, was, h)
			assertBlockedNames(t, g, append(append([]string{}, victims...), hostileNames[i+1:]...))
			_, ip := fresh()
			assert.True(t, g.Check(ctx, attempt(ip, h)).Allowed, "%q unblocked", h)
		}
		for _, v := range victims {
			_, ip := fresh()
			assert.False(t, g.Check(ctx, attempt(ip, v)).Allowed, "victim %q still blocked", v)
		}
		ips, err := g.Blocked(ctx, gate.KindIP, 0)
		require.NoError(t, err)
		require.Len(t, ips, 1)
		assert.Equal(t, "10.0.0.1", ips[0].Subject, "the IP of the same text was never touched")

		// Unblocking a hostile name that is not blocked is a no-op.
		was, err := g.Unblock(ctx, gate.KindUsername, "*")
		require.NoError(t, err)
		assert.False(t, was)
		assertBlockedNames(t, g, victims)
	})
}

func assertBlockedNames(t *testing.T, g *gate.Gate, want []string) {
	t.Helper()
	bs, err := g.Blocked(ctx, gate.KindUsername, 0)
	require.NoError(t, err)
	var got []string
	for _, b := range bs {
		got = append(got, b.Subject)
	}
	assert.ElementsMatch(t, want, got)
}

// TestHostileUsernameRedisKeys looks at Redis itself: a glob-like name is
// a literal key, and unblocking it deletes that key and no other.
func TestHostileUsernameRedisKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no redis-server")
	}
	srv := testenv.Redis(t)
	rc := srv.Client()
	prefix := "h" + randHex(3)
	g, err := gate.New(gate.DefaultConfig(), gate.NewRedisStore(rc, prefix, gate.DefaultConfig().Policy()), gate.WithLogger(quiet))
	require.NoError(t, err)
	defer g.Close(ctx)
	for _, u := range append([]string{"alice", "bob"}, hostileNames...) {
		require.NoError(t, g.Block(ctx, gate.KindUsername, u, 0))
	}
	keys := func() []string {
		ks, err := rc.Keys(ctx, prefix+":*").Result()
		require.NoError(t, err)
		return ks
	}
	before := keys()
	for _, h := range hostileNames {
		n, err := rc.Exists(ctx, prefix+":blocked:username:"+h).Result()
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, "literal key for %q", h)
	}
	_, err = g.Unblock(ctx, gate.KindUsername, "*")
	require.NoError(t, err)
	after := keys()
	assert.ElementsMatch(t, without(before, prefix+":blocked:username:*"), after, "only the key of \"*\" went")
	for _, u := range []string{"alice", "bob", "a*", "[a-z]"} {
		n, err := rc.Exists(ctx, prefix+":blocked:username:"+u).Result()
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, u)
	}
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// TestHostileForwardedFor: behind a trusted proxy, a client that talks to
// the gate directly and forges X-Forwarded-For (a new address each time,
// thousands of entries, garbage) is counted by its own address; a client
// that forges the header through the proxy is counted by the address the
// proxy saw. Neither gets anyone else blocked.
func TestHostileForwardedFor(t *testing.T) {
	cfg := gate.DefaultConfig()
	cfg.BehindReverseProxy = true
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.DisableUsernameLockout = true
	g, ev := memGate(t, cfg)
	h := g.Middleware(&loginSite{})

	many := strings.Repeat("10.0.0.7, ", 5000) + "203.0.113.77"
	forged := []string{"203.0.113.70", "203.0.113.71, 203.0.113.72", many, "garbage, , ,", "[::1]:80, 127.0.0.1",
		strings.Repeat("x", 60<<10)}
	for i, xff := range forged {
		w := post(t, h, "198.51.100.20", "u"+itoa(i), "wrong", "X-Forwarded-For", xff)
		if i < 3 {
			assert.Equal(t, http.StatusOK, w.Code, "failure %d", i+1)
		} else {
			assert.Equal(t, http.StatusTooManyRequests, w.Code, "failure %d", i+1)
		}
	}
	require.NoError(t, g.Flush(ctx))
	for _, a := range ev.Attempts() {
		assert.Equal(t, "198.51.100.20", a.IP, "the forger is counted by its own address")
	}
	// None of the forged addresses is blocked, through the proxy either.
	for _, ip := range []string{"203.0.113.70", "203.0.113.71", "203.0.113.72", "203.0.113.77", "127.0.0.1"} {
		assert.Equal(t, http.StatusFound, post(t, h, "10.0.0.2", "ok", "secret", "X-Forwarded-For", ip).Code, ip)
	}

	// Through the proxy, the left part of the chain is the client's to
	// write: the attacker is the address the proxy appended.
	for i := 0; i < 4; i++ {
		post(t, h, "10.0.0.2", "v"+itoa(i), "wrong", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d, 198.51.100.21", 80+i))
	}
	require.NoError(t, g.Flush(ctx))
	assert.Equal(t, http.StatusTooManyRequests, post(t, h, "10.0.0.2", "x", "secret", "X-Forwarded-For", "198.51.100.21").Code)
	assert.Equal(t, http.StatusFound, post(t, h, "10.0.0.2", "x", "secret", "X-Forwarded-For", "203.0.113.80").Code)

	// Not behind a proxy (the default), the header means nothing.
	g2, ev2 := memGate(t, gate.DefaultConfig())
	h2 := g2.Middleware(&loginSite{})
	post(t, h2, "198.51.100.22", "w", "wrong", "X-Forwarded-For", "203.0.113.90", "X-Real-IP", "203.0.113.91", "Forwarded", "for=203.0.113.92")
	require.NoError(t, g2.Flush(ctx))
	require.Len(t, ev2.Attempts(), 1)
	assert.Equal(t, "198.51.100.22", ev2.Attempts()[0].IP)
}

// TestHostileIPv6Rotation: an attacker holding a /64 (what one customer
// line usually gets) rotates through its addresses, directly and behind a
// proxy; the gate counts the /64 as one source. The next /64 is someone
// else.
func TestHostileIPv6Rotation(t *testing.T) {
	for _, viaProxy := range []bool{false, true} {
		t.Run(fmt.Sprintf("via proxy %v", viaProxy), func(t *testing.T) {
			cfg := gate.DefaultConfig()
			cfg.DisableUsernameLockout = true
			if viaProxy {
				cfg.BehindReverseProxy = true
				cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("fd00::/8")}
			}
			g, ev := memGate(t, cfg)
			h := g.Middleware(&loginSite{})
			net64 := netip.MustParsePrefix("2001:db8:" + randHex(2) + ":" + randHex(2) + "::/64")
			from := func(a netip.Addr, user, password string) int {
				if viaProxy {
					return post(t, h, "fd00::1", user, password, "X-Forwarded-For", a.String()).Code
				}
				return postFrom(t, h, netip.AddrPortFrom(a, 443).String(), user, password)
			}
			for i := 0; i < 4; i++ {
				from(randomIn(net64), "u"+itoa(i), "wrong")
			}
			require.NoError(t, g.Flush(ctx))
			for i := 0; i < 50; i++ {
				assert.Equal(t, http.StatusTooManyRequests, from(randomIn(net64), "x", "secret"), "another address of the /64")
			}
			last := net64.Addr().As16()
			last[7]++
			next := netip.PrefixFrom(netip.AddrFrom16(last), 64)
			assert.Equal(t, http.StatusFound, from(randomIn(next), "x", "secret"), "the next /64 is not blocked")
			require.Len(t, ev.blocks(true), 1)
			assert.Equal(t, net64.String(), ev.blocks(true)[0].Subject)
		})
	}
}

// randomIn is a random address of the /64 p.
func randomIn(p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	var low [8]byte
	_, _ = rand.Read(low[:])
	binary.BigEndian.PutUint64(a[8:], binary.BigEndian.Uint64(low[:]))
	return netip.AddrFrom16(a)
}

// postFrom is post with a whole RemoteAddr ("[2001:db8::1]:443").
func postFrom(t *testing.T, h http.Handler, remote, user, password string) int {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestHostileRequests sends the middleware bodies and headers that are
// huge or malformed. Nothing panics, every request is an attempt counted
// by the client's address (breaking the form does not dodge the count),
// and what the events carry is bounded.
func TestHostileRequests(t *testing.T) {
	cfg := gate.DefaultConfig()
	g, ev := memGate(t, cfg)
	site := &loginSite{}
	h := g.Middleware(site)
	const ip = "198.51.100.30"

	var multi bytes.Buffer
	mw := multipart.NewWriter(&multi)
	require.NoError(t, mw.WriteField("username", "mallory"))
	fw, err := mw.CreateFormFile("file", "big.bin")
	require.NoError(t, err)
	_, _ = fw.Write(bytes.Repeat([]byte{0}, 2<<20))
	require.NoError(t, mw.Close())

	requests := []struct {
		name        string
		contentType string
		body        []byte
		header      map[string]string
		path        string
	}{
		{name: "body over the form limit", contentType: "application/x-www-form-urlencoded",
			body: []byte("username=mallory&password=" + strings.Repeat("a", 11<<20))},
		{name: "malformed form", contentType: "application/x-www-form-urlencoded", body: []byte("username=%zz&&&=;password")},
		{name: "invalid UTF-8 username", contentType: "application/x-www-form-urlencoded", body: []byte("username=mal%FFlory%00&password=x")},
		{name: "multipart with a large file", contentType: mw.FormDataContentType(), body: multi.Bytes()},
		{name: "multipart without boundary", contentType: "multipart/form-data", body: []byte("--x\r\n\r\n")},
		{name: "wrong content type", contentType: "application/json", body: []byte(`{"username":"mallory"}`)},
		{name: "huge user agent and path", contentType: "application/x-www-form-urlencoded", body: []byte("username=mallory"),
			header: map[string]string{"User-Agent": strings.Repeat("U", 1<<20)}, path: "/login/" + strings.Repeat("p", 1<<20)},
		{name: "control characters in headers", contentType: "application/x-www-form-urlencoded", body: []byte("username=mallory"),
			header: map[string]string{"User-Agent": "\x00\x1b[2J\r\n"}},
	}
	for _, rq := range requests {
		path := "/login"
		if rq.path != "" {
			path = rq.path
		}
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(rq.body))
		r.Header.Set("Content-Type", rq.contentType)
		for k, v := range rq.header {
			r.Header[k] = []string{v}
		}
		r.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		require.NotPanics(t, func() { h.ServeHTTP(w, r) }, rq.name)
		assert.Contains(t, []int{http.StatusOK, http.StatusTooManyRequests}, w.Code, rq.name)
	}
	require.NoError(t, g.Flush(ctx))
	atts := ev.Attempts()
	require.NotEmpty(t, atts)
	for _, a := range atts {
		assert.Equal(t, ip, a.IP)
		assert.True(t, utf8.ValidString(a.Username))
	}
	d := g.Check(ctx, attempt(ip, "someone"))
	assert.False(t, d.Allowed, "the broken requests were counted by IP and blocked it")
	assert.Equal(t, []gate.Kind{gate.KindIP}, d.BlockedBy)
}

// TestUsernameIdentityIsStable: the identity of an identity is itself,
// for every assigned character (after a letter, so that no fast path
// applies).
// It was not for Cherokee, whose two cases x/text's Fold swaps: "Ꮝ" and
// "ꮝ" were two users, and an admin could not unblock either, as the
// admin canonicalises a name and the gate canonicalises it again.
func TestUsernameIdentityIsStable(t *testing.T) {
	step := rune(1)
	if testing.Short() {
		step = 7
	}
	for r := rune(0); r <= utf8.MaxRune; r += step {
		if !utf8.ValidRune(r) || !(unicode.IsGraphic(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) ||
			unicode.Is(unicode.Co, r) {
			continue // unassigned and private-use characters pass through as they are
		}
		u := gate.NormalizeUsername("a"+string(r), 255)
		if v := gate.NormalizeUsername(u, 255); v != u {
			t.Errorf("%U: %q then %q", r, u, v)
		}
	}
	assert.Equal(t, gate.NormalizeUsername("ᏍᎠ", 255), gate.NormalizeUsername("ꮝꭰ", 255))
	assert.Equal(t, gate.NormalizeUsername("Ᏸ", 255), gate.NormalizeUsername("ᏸ", 255))

	g, _ := memGate(t, gate.DefaultConfig())
	require.NoError(t, g.Block(ctx, gate.KindUsername, "ᏍᎠ", 0))
	_, ip := fresh()
	assert.False(t, g.Check(ctx, attempt(ip, "ꮝꭰ")).Allowed, "the other case is the same user")
	subject, err := g.Subject(gate.KindUsername, "ꮝꭰ")
	require.NoError(t, err)
	was, err := g.Unblock(ctx, gate.KindUsername, subject)
	require.NoError(t, err)
	assert.True(t, was, "unblocked by its canonical subject, as the admin does")
}
