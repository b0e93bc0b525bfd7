package sharedip

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fuzz targets feed a format anything: it never panics, every prefix
// it accepts is valid, masked, IPv4 as IPv4 and within the bounds, and
// every bad line it reports is a line of the input that holds something.

func FuzzParseRelayCSV(f *testing.F) {
	for _, s := range []string{
		"172.224.226.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\n",
		"\ufeff104.28.0.9,US,US-CA,Los Angeles,\r\n",
		"<!DOCTYPE html>\n<html><body>503</body></html>",
		"0.0.0.0/0,,,,\n::/0,,,,",
		"::ffff:1.2.3.0/120,X,,,\n172.224.226.7/27,,,\n,,,,\n,\n",
		"# comment\n\n   \n\t,GB\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParsed(t, formatRelay, s) })
}

func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{
		"# proxies\n192.0.2.0/24 # Paris\n198.51.100.7\n2001:db8::/48\n",
		"fe80::1%eth0\nfe80::/10%eth0\n10.0.0.0/8\n",
		"300.1.1.1\n192.0.2.0/33\n2001:db8::/129\n1.2.3.4/-1\n",
		"0.0.0.0/0\n::/0\n::ffff:0.0.0.0/96\n2000::/3",
		"#\n#\n\r\n\x00\n\xff\xfe",
		"1.2.3.4/32/32\n::ffff:1.2.3.4\n1.2.3.4 # a # b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParsed(t, formatCIDR, s) })
}

func FuzzParseTor(f *testing.F) {
	for _, s := range []string{
		"185.220.101.1\n185.220.101.2\n2001:db8::5\n",
		"ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\nPublished 2024-01-01 10:10:10\n" +
			"LastStatus 2024-01-01 11:00:00\nExitAddress 162.247.74.201 2024-01-01 11:21:59\n",
		"ExitAddress\nExitAddress x\nExitNode\nBridge 1.2.3.4\n1.2.3.0/24\n",
		"<html>\n<body>\n</body>\n</html>\n",
		"\t ExitAddress  ::ffff:1.2.3.4   \r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParsed(t, formatTor, s) })
}

func checkParsed(t *testing.T, f format, s string) {
	p := parse(f, s)
	lines := strings.Split(s, "\n")
	for _, pfx := range p.prefixes {
		require.True(t, pfx.IsValid(), "%v from %q", pfx, s)
		require.Equal(t, pfx.Masked(), pfx, "not masked, from %q", s)
		require.False(t, pfx.Addr().Is4In6(), "%v: IPv4-mapped, from %q", pfx, s)
		require.Empty(t, pfx.Addr().Zone(), "%v from %q", pfx, s)
		require.False(t, tooWide(pfx), "%v from %q", pfx, s)
	}
	require.LessOrEqual(t, len(p.prefixes)+p.badCount+p.wideCount, p.entries)
	require.LessOrEqual(t, p.entries, len(lines))
	require.Len(t, p.bad, min(p.badCount, reportedLines))
	require.Len(t, p.wide, min(p.wideCount, reportedLines))
	for _, b := range append(p.bad, p.wide...) {
		require.GreaterOrEqual(t, b.line, 1, "%+v from %q", b, s)
		require.LessOrEqual(t, b.line, len(lines), "%+v from %q", b, s)
		require.NotEmpty(t, strings.TrimSpace(lines[b.line-1]), "line %d reported, from %q", b.line, s)
		require.NotEmpty(t, b.reason)
		require.LessOrEqual(t, len(b.text), maxQuoted+len("..."))
	}
	_, _ = check(p, 1, true) // nor do the rules panic on it
}
