package gate

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIP(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = error
	}{
		{"203.0.113.7", "203.0.113.7"},
		{" 203.0.113.7 ", "203.0.113.7"},
		{"203.0.113.7:5678", "203.0.113.7"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:DB8:0:0::1", "2001:db8::1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"fe80::1%eth0", "fe80::1"},
		{`"192.0.2.1"`, "192.0.2.1"},
		{"", ""},
		{"fish", ""},
		{"0x41.0x41.0x41.0x41", ""},
		{"192.168.100.34.y", ""},
		{"1.2.3", ""},
		{"unknown", ""},
		{"999.1.1.1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			a, err := ParseIP(tc.in)
			if tc.want == "" {
				assert.ErrorIs(t, err, ErrBadIP)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, a.String())
		})
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name    string
		proxy   bool
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    string
	}{
		{name: "direct", remote: "198.51.100.1:4000", want: "198.51.100.1"},
		{name: "header ignored when not behind proxy", remote: "198.51.100.1:4000", xff: []string{"1.1.1.1"}, want: "198.51.100.1"},
		{name: "one proxy, rightmost", proxy: true, remote: "10.0.0.2:1", xff: []string{"6.6.6.6, 203.0.113.9"}, want: "203.0.113.9"},
		{name: "forged left entry ignored", proxy: true, trusted: trusted, remote: "10.0.0.2:1", xff: []string{"1.2.3.4, 203.0.113.9, 10.0.0.5"}, want: "203.0.113.9"},
		{name: "untrusted peer forging header", proxy: true, trusted: trusted, remote: "198.51.100.7:1", xff: []string{"203.0.113.9"}, want: "198.51.100.7"},
		{name: "several header lines", proxy: true, trusted: trusted, remote: "10.0.0.2:1", xff: []string{"203.0.113.9", "10.1.1.1"}, want: "203.0.113.9"},
		{name: "port stripped", proxy: true, remote: "10.0.0.2:1", xff: []string{"203.0.113.9:5555"}, want: "203.0.113.9"},
		{name: "ipv6 bracketed with port", proxy: true, remote: "10.0.0.2:1", xff: []string{"[2001:db8::7]:5555"}, want: "2001:db8::7"},
		{name: "mapped becomes v4", proxy: true, remote: "10.0.0.2:1", xff: []string{"::ffff:203.0.113.9"}, want: "203.0.113.9"},
		{name: "garbage falls back to peer", proxy: true, remote: "10.0.0.2:1", xff: []string{"unknown"}, want: "10.0.0.2"},
		{name: "empty header falls back to peer", proxy: true, remote: "10.0.0.2:1", xff: []string{""}, want: "10.0.0.2"},
		{name: "no header", proxy: true, remote: "10.0.0.2:1", want: "10.0.0.2"},
		{name: "all hops trusted", proxy: true, trusted: trusted, remote: "10.0.0.2:1", xff: []string{"10.9.9.9, 10.0.0.5"}, want: "10.9.9.9"},
		{name: "empty entries skipped", proxy: true, remote: "10.0.0.2:1", xff: []string{"203.0.113.9, ,"}, want: "203.0.113.9"},
		{name: "unix socket peer", remote: "@", want: "invalid IP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := ipResolver{behindProxy: tc.proxy, header: "X-Forwarded-For", trusted: tc.trusted}
			r := httptest.NewRequest("POST", "/login", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			assert.Equal(t, tc.want, res.clientIP(r).String())
		})
	}
}

func TestIPSubject(t *testing.T) {
	tests := []struct {
		addr string
		bits int
		want string
	}{
		{"203.0.113.7", 64, "203.0.113.7"},
		{"2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:aaaa::1", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:aaaa::1", 128, "2001:db8:1:2:aaaa::1"},
		{"64:ff9b::203.0.113.7", 64, "203.0.113.7"}, // NAT64: the IPv4 client
		{"64:ff9b::c633:6401", 64, "198.51.100.1"},
		{"64:ff9b:1::1", 64, "64:ff9b:1::/64"}, // local-use prefix: not well-known
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, ipSubject(netip.MustParseAddr(tc.addr), tc.bits), tc.addr)
	}
}

func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "[::1]:80", "::ffff:1.2.3.4", "fe80::1%eth0", "garbage", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseIP(s)
		if err != nil {
			return
		}
		// Accepted: canonical, unmapped, zoneless, and stable.
		require.True(t, a.IsValid())
		require.False(t, a.Is4In6())
		require.Empty(t, a.Zone())
		b, err := ParseIP(a.String())
		require.NoError(t, err)
		require.Equal(t, a, b)
	})
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:5", "1.2.3.4, 10.0.0.2")
	f.Add("[::1]:1", "garbage,,,[2001:db8::1]:80")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		res := ipResolver{behindProxy: true, header: "X-Forwarded-For", trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		a := res.clientIP(r)
		if !a.IsValid() {
			return
		}
		require.False(t, a.Is4In6())
		// The answer is the peer or an address written in the header.
		peer, _ := ParseIP(remote)
		if a != peer {
			found := false
			for _, e := range strings.Split(xff, ",") {
				if b, err := ParseIP(e); err == nil && b == a {
					found = true
				}
			}
			require.True(t, found, "%s is neither the peer nor in the header", a)
		}
	})
}

// An operator's block names one source: an address, or (IPv6) the /64 the
// gate counts. A wider network is refused with a clear error rather than
// shrunk to its first address.
func TestIPSubjectOfNetworks(t *testing.T) {
	cfg := DefaultConfig()
	mem := NewMemoryStore(MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1})
	defer mem.Close()
	g, err := New(cfg, mem)
	require.NoError(t, err)
	defer g.Close(context.Background())
	for in, want := range map[string]string{
		"10.1.2.3/32":           "10.1.2.3",
		"::ffff:10.1.2.3/128":   "10.1.2.3",
		"2001:db8:1:2::/64":     "2001:db8:1:2::/64",
		"2001:db8:1:2:3::9/128": "2001:db8:1:2::/64",
	} {
		got, err := g.IPSubject(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"10.0.0.0/8", "10.1.2.0/24", "2001:db8::/48", "::/0", "0.0.0.0/0"} {
		_, err := g.IPSubject(in)
		require.ErrorIs(t, err, ErrBadIP, in)
		assert.Contains(t, err.Error(), "DEFENDER_IP_BLACKLIST", in)
	}
}

// A NAT64 client (64:ff9b::a.b.c.d) is counted and blocked as the IPv4
// client a.b.c.d; the lists name it so too. The blacklist and whitelist
// were matched against the IPv6 form only, so a blacklisted IPv4 address
// reaching the gate through a translator was counted as that address
// yet never refused, and a whitelisted one was blocked.
func TestNAT64Lists(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IPBlacklist = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	cfg.IPWhitelist = []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}
	cfg.DisableUsernameLockout = true
	cfg.IPFailureLimit = 0
	mem := NewMemoryStore(MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1})
	defer mem.Close()
	g, err := New(cfg, mem, WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer g.Close(context.Background())
	ctx := context.Background()

	for _, ip := range []string{"198.51.100.7", "64:ff9b::198.51.100.7", "::ffff:198.51.100.7"} {
		d := g.Check(ctx, Attempt{IP: netip.MustParseAddr(ip)})
		assert.False(t, d.Allowed, ip)
		assert.Equal(t, ReasonBlacklist, d.Reason, ip)
	}
	for _, ip := range []string{"203.0.113.7", "64:ff9b::203.0.113.7"} {
		for i := 0; i < 3; i++ {
			assert.True(t, g.Record(ctx, Attempt{IP: netip.MustParseAddr(ip)}, false).Allowed, ip)
		}
	}
	// The NAT64 form of an address on neither list is counted as usual.
	assert.False(t, g.Record(ctx, Attempt{IP: netip.MustParseAddr("64:ff9b::192.0.2.1")}, false).Allowed)
	assert.False(t, g.Check(ctx, Attempt{IP: netip.MustParseAddr("192.0.2.1")}).Allowed)
}

// X-Real-IP, which nginx's real_ip setups send with the client alone,
// names the client behind a trusted proxy, and is ignored from others.
func TestClientIPFromXRealIP(t *testing.T) {
	cfg, err := ConfigFromEnv(envOf(map[string]string{
		"DEFENDER_BEHIND_REVERSE_PROXY": "true",
		"DEFENDER_REVERSE_PROXY_HEADER": "HTTP_X_REAL_IP",
		"DEFENDER_TRUSTED_PROXIES":      "10.0.0.1",
	}))
	require.NoError(t, err)
	g, err := New(cfg, NewMemoryStore(MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	for _, tc := range []struct{ peer, header, want string }{
		{"10.0.0.1:443", "203.0.113.5", "203.0.113.5"},
		{"10.0.0.1:443", " 2001:db8::7 ", "2001:db8::7"},
		{"192.0.2.9:443", "203.0.113.5", "192.0.2.9"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/login", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Real-IP", tc.header)
		assert.Equal(t, tc.want, g.ClientIP(r).String(), "%s with X-Real-IP %q", tc.peer, tc.header)
	}
}
