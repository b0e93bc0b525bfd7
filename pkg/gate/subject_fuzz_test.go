package gate_test

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// FuzzSubject: what an operator types into the admin (or the CLI) to
// block or unblock is canonicalised without panicking, into a subject
// that is its own canonical form, so that a block set under one spelling
// is lifted under any other.
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "2001:db8::1", "2001:db8::/48", "::ffff:1.2.3.4/120", "10.0.0.0/8",
		"fe80::1%eth0", "[::1]:80", "Alice", "*", "a|b", "2001:db8::5|Bob", "|", "1.2.3.4|", "\xff|\x00", ""} {
		f.Add(s)
	}
	cfg := gate.DefaultConfig()
	mem := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1})
	defer mem.Close()
	g, err := gate.New(cfg, mem, gate.WithLogger(quiet))
	require.NoError(f, err)
	defer g.Close(ctx)
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range gate.Kinds {
			sub, err := g.Subject(k, s)
			if err != nil {
				continue
			}
			require.NotEmpty(t, sub)
			require.True(t, utf8.ValidString(sub))
			again, err := g.Subject(k, sub)
			require.NoError(t, err, "%s %q from %q", k, sub, s)
			require.Equal(t, sub, again, "%s subject of %q is not canonical", k, s)
			ip := sub
			switch k {
			case gate.KindUsername, gate.KindUsernameFamiliar:
				require.Equal(t, gate.NormalizeUsername(sub, g.Config().MaxUsernameLength), sub)
				continue
			case gate.KindPair:
				var user string
				ip, user, _ = strings.Cut(sub, "|")
				require.NotEmpty(t, user)
			}
			if strings.Contains(ip, "/") {
				p, err := netip.ParsePrefix(ip)
				require.NoError(t, err)
				require.Equal(t, p.Masked(), p, "network %q", ip)
			} else {
				a, err := netip.ParseAddr(ip)
				require.NoError(t, err, "address %q", ip)
				require.True(t, a.Is4() || g.Config().IPv6Prefix >= 128, "an IPv6 subject is a network: %q", ip)
			}
		}
	})
}
