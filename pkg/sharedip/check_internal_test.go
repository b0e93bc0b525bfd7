package sharedip

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkList is parse then check, for the rules' tests.
func checkList(f format, text string, prev int, fetched bool) (loaded, error) {
	return check(parse(f, text), prev, fetched)
}

// Each rule refuses a list that breaks it and accepts one at its bound.

func TestRefusesTooWidePrefixes(t *testing.T) {
	for _, tc := range []struct{ refused, widest string }{
		{"0.0.0.0/0", "10.0.0.0/8"},
		{"8.0.0.0/7", "100.0.0.0/8"},
		{"::/0", "2001::/16"},
		{"2000::/15", "2002::/16"},
		{"::ffff:0.0.0.0/96", "::ffff:10.0.0.0/104"},
	} {
		t.Run(tc.refused, func(t *testing.T) {
			_, err := checkList(formatCIDR, "192.0.2.1\n"+tc.refused+"\n", 0, false)
			require.ErrorIs(t, err, ErrRefused)
			assert.Contains(t, err.Error(), "line 2: \""+tc.refused+"\"")
			assert.Contains(t, err.Error(), "wider than")
			l, err := checkList(formatCIDR, "192.0.2.1\n"+tc.widest+"\n", 0, false)
			require.NoError(t, err)
			assert.Equal(t, 2, l.prefixes)
		})
	}
}

// One wide prefix refuses the whole list, however many good ones it has:
// it is the sign of a list that went wrong.
func TestOneWidePrefixRefusesTheList(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "198.51.%d.%d\n", i/256, i%256)
	}
	b.WriteString("0.0.0.0/0\n")
	_, err := checkList(formatCIDR, b.String(), 0, false)
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "line 1001")
}

func TestRefusesManyBadLines(t *testing.T) {
	list := func(good, bad int) string {
		var b strings.Builder
		for i := range good {
			fmt.Fprintf(&b, "172.224.%d.0/27,GB,GB-EN,London,\n", i)
		}
		for range bad {
			b.WriteString("<div class=\"error\">Service Unavailable</div>\n")
		}
		return b.String()
	}
	l, err := checkList(formatRelay, list(90, 10), 0, false)
	require.NoError(t, err, "1 bad line in 10 is tolerated")
	assert.Equal(t, 90, l.prefixes)
	assert.Equal(t, 10, l.badLines)

	_, err = checkList(formatRelay, list(90, 11), 0, false)
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "11 of 101 entries are bad")
	assert.Contains(t, err.Error(), "line 91:")
	assert.Contains(t, err.Error(), "and 6 more")

	html := "<!DOCTYPE html>\n<html>\n<head><title>503</title></head>\n<body>Try later</body>\n</html>\n"
	_, err = checkList(formatRelay, html, 0, false)
	require.ErrorIs(t, err, ErrRefused, "an error page is not a list")
	assert.Contains(t, err.Error(), "line 1: \"<!DOCTYPE html>\"")
}

func TestRefusesTooMuchIPv4(t *testing.T) {
	// 1/64 of IPv4 is four /8s: accepted, and a fifth refused. Nested and
	// repeated networks count once.
	within := "10.0.0.0/8\n11.0.0.0/8\n12.0.0.0/8\n13.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n13.0.0.0/8\n"
	l, err := checkList(formatCIDR, within, 0, false)
	require.NoError(t, err)
	assert.Equal(t, 6, l.prefixes)
	_, err = checkList(formatCIDR, within+"14.0.0.0/31\n", 0, false)
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "covers 67108866 IPv4 addresses, more than 1/64")
}

func TestCoverage4(t *testing.T) {
	for _, tc := range []struct {
		list string
		want uint64
	}{
		{"", 0},
		{"2001:db8::/32", 0},
		{"192.0.2.1", 1},
		{"192.0.2.0/24\n192.0.2.128/25\n192.0.2.7", 256},
		{"192.0.2.128/25\n192.0.2.0/24", 256},
		{"192.0.2.0/25\n192.0.2.128/25", 256},
		{"10.0.0.0/8\n10.255.255.255\n11.0.0.0\n", 1<<24 + 1},
		{"255.255.255.255\n255.255.255.0/24", 256},
	} {
		l, err := checkList(formatCIDR, tc.list, 0, false)
		require.NoError(t, err)
		assert.Equal(t, tc.want, coverage4(l.table), tc.list)
	}
}

func TestRefusesEmptyFetchOfAListThatWasNot(t *testing.T) {
	for _, empty := range []string{"", "\n\n", "# nothing\n", "ExitNode ABC\nPublished 2024-01-01 00:00:00\n"} {
		_, err := checkList(formatTor, empty, 1200, true)
		require.ErrorIs(t, err, ErrRefused, "%q", empty)
		assert.Contains(t, err.Error(), "empty, where it held 1200 prefixes")
	}
	// A first fetch may be empty, and so may an operator's file.
	_, err := checkList(formatTor, "", 0, true)
	require.NoError(t, err)
	_, err = checkList(formatCIDR, "# no proxies yet\n", 5, false)
	require.NoError(t, err)
}

func TestDuplicatesCountOnce(t *testing.T) {
	l, err := checkList(formatTor, "192.0.2.1\n192.0.2.1\n::ffff:192.0.2.1\n", 0, false)
	require.NoError(t, err)
	assert.Equal(t, 1, l.prefixes)
	assert.True(t, l.table.Contains(netip.MustParseAddr("192.0.2.1")))
}
