package sharedip

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var pfx = netip.MustParsePrefix

// lines are the line numbers of bad lines.
func lines(bad []badLine) []int {
	var out []int
	for _, b := range bad {
		out = append(out, b.line)
	}
	return out
}

func TestParseRelayCSV(t *testing.T) {
	text := "\ufeff172.224.226.0/27,GB,GB-EN,London,\r\n" +
		"2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\r\n" +
		"\n" +
		"# a comment\n" +
		"104.28.0.9,US,US-CA,Los Angeles,\n" + // an address is a /32
		"<html><body>Service Unavailable</body></html>\n" +
		"172.224.226.7/27,GB,GB-EN,London,\n" + // host bits
		"::ffff:172.224.227.0/123,GB,,,\n" + // IPv4-mapped: an IPv4 /27
		"  146.75.1.0/29 ,FR,FR-IDF,Paris,  \n" +
		"prefix,country,region,city,\n" + // a header, if Apple ever adds one
		"2a02:26f7:b3c0:4001::/64,GB,GB-EN,London," // no final newline
	p := parse(formatRelay, text)
	assert.Equal(t, []netip.Prefix{pfx("172.224.226.0/27"), pfx("2a02:26f7:b3c0:4000::/64"), pfx("104.28.0.9/32"),
		pfx("172.224.227.0/27"), pfx("146.75.1.0/29"), pfx("2a02:26f7:b3c0:4001::/64")}, p.prefixes)
	assert.Equal(t, 9, p.entries)
	assert.Equal(t, 3, p.badCount)
	assert.Equal(t, []int{6, 7, 10}, lines(p.bad))
	assert.Equal(t, "line 7: \"172.224.226.7/27,GB,GB-EN,London,\": host bits set: the network is 172.224.226.0/27, the address 172.224.226.7/32",
		p.bad[1].String())
}

func TestParseCIDR(t *testing.T) {
	text := "# office proxies\n" +
		"192.0.2.0/24   # Paris\n" +
		"198.51.100.7\n" +
		"\t2001:db8:1::/48\n" +
		"fe80::1%eth0\n" + // a zone is dropped, as pkg/gate does
		"10.0.0.0/8\n" +
		"300.1.1.1\n" +
		"192.0.2.0/33\n" +
		"2001::/16 # the widest allowed\n" +
		"0.0.0.0/0\n" +
		"2000::/3\n" +
		"::ffff:0.0.0.0/96\n" // IPv4's /0, mapped
	p := parse(formatCIDR, text)
	assert.Equal(t, []netip.Prefix{pfx("192.0.2.0/24"), pfx("198.51.100.7/32"), pfx("2001:db8:1::/48"), pfx("fe80::1/128"), pfx("10.0.0.0/8"), pfx("2001::/16")}, p.prefixes)
	assert.Equal(t, 11, p.entries)
	assert.Equal(t, []int{7, 8}, lines(p.bad))
	assert.Equal(t, 2, p.badCount)
	assert.Equal(t, 3, p.wideCount)
	assert.Equal(t, []int{10, 11, 12}, lines(p.wide))
	assert.Equal(t, `line 10: "0.0.0.0/0": 0.0.0.0/0 is wider than /8`, p.wide[0].String())
}

func TestParseTor(t *testing.T) {
	bulk := "185.220.101.1\n185.220.101.2\n2001:db8::5\n185.220.101.0/24\n"
	p := parse(formatTor, bulk)
	assert.Equal(t, []netip.Prefix{pfx("185.220.101.1/32"), pfx("185.220.101.2/32"), pfx("2001:db8::5/128")}, p.prefixes)
	assert.Equal(t, []int{4}, lines(p.bad), "Tor lists addresses, not networks")

	exits := "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\n" +
		"Published 2024-01-01 10:10:10\n" +
		"LastStatus 2024-01-01 11:00:00\n" +
		"ExitAddress 162.247.74.201 2024-01-01 11:21:59\n" +
		"ExitNode 0091174DE56EB3EE2D2D1DF8EBAF2A02F6F4C3F9\n" +
		"Published 2024-01-01 09:00:00\n" +
		"LastStatus 2024-01-01 10:00:00\n" +
		"ExitAddress 2a0b:f4c2::1 2024-01-01 10:21:00\n" +
		"ExitAddress\n" +
		"ExitAddress nonsense 2024-01-01 10:21:00\n" +
		"Bridge 1.2.3.4\n"
	p = parse(formatTor, exits)
	assert.Equal(t, []netip.Prefix{pfx("162.247.74.201/32"), pfx("2a0b:f4c2::1/128")}, p.prefixes)
	assert.Equal(t, 5, p.entries, "ExitNode, Published and LastStatus lines are not entries")
	assert.Equal(t, []int{9, 10, 11}, lines(p.bad))
}

// Quoted lines are cut, and copied: a bad line must not hold the list's
// text in memory.
func TestBadLinesAreCutAndCopied(t *testing.T) {
	long := "<html>" + string(make([]byte, 10_000))
	p := parse(formatCIDR, long)
	require.Len(t, p.bad, 1)
	assert.Len(t, p.bad[0].text, maxQuoted+len("..."))
	assert.Equal(t, 1, p.bad[0].line)
}

// Only the first reportedLines are kept, all are counted.
func TestBadLinesReportedAndCounted(t *testing.T) {
	text := ""
	for range 2 * reportedLines {
		text += "x\n"
	}
	p := parse(formatCIDR, text)
	assert.Equal(t, 2*reportedLines, p.badCount)
	assert.Equal(t, []int{1, 2, 3, 4, 5}, lines(p.bad))
}
