package sharedip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// format is the grammar of a list's lines. Every format skips blank
// lines and lines starting with #, and trims spaces and CRs.
type format int

const (
	// formatCIDR is the operator's lists: one address or CIDR prefix per
	// line; a # starts a comment anywhere on the line.
	formatCIDR format = iota
	// formatRelay is Apple's egress-ip-ranges.csv: prefix,country,region,city,
	// of which only the prefix is read.
	formatRelay
	// formatTor is Tor's bulk exit list (one address per line) or its
	// exit-addresses document, whose ExitAddress lines are read and
	// ExitNode, Published and LastStatus lines skipped. Both forms may mix,
	// one grammar per line.
	formatTor
)

// reportedLines is how many bad (or too wide) lines a load reports one by
// one; the rest are counted.
const reportedLines = 5

// badLine is a line that held no usable entry.
type badLine struct {
	line   int    // 1-based
	text   string // the line, cut to maxQuoted bytes
	reason string
}

// maxQuoted bounds a line quoted in an error: a list may be anything,
// a minified page among them, and logs are not to carry it.
const maxQuoted = 60

func (b badLine) String() string {
	return fmt.Sprintf("line %d: %q: %s", b.line, b.text, b.reason)
}

// parsed is a list's text read by its grammar.
type parsed struct {
	// prefixes are the entries read, masked, IPv4 as IPv4, within the
	// bounds of wideBits; duplicates stay.
	prefixes []netip.Prefix
	// entries counts the lines that held an entry, read or bad: the base
	// of the bad lines' share.
	entries int
	// bad are the first reportedLines lines that were not entries of the
	// format, of badCount.
	bad      []badLine
	badCount int
	// wide are the first reportedLines entries wider than a shared list
	// ever holds (see tooWide), of wideCount, left out of prefixes.
	wide      []badLine
	wideCount int
}

// parse reads text in format f. It never fails: what it could not read
// is in bad and wide, for check to judge.
func parse(f format, text string) parsed {
	// One entry a line at most: one allocation, where appending would
	// copy the prefixes over and over (284,000 of them in Apple's list).
	p := parsed{prefixes: make([]netip.Prefix, 0, strings.Count(text, "\n")+1)}
	text = strings.TrimPrefix(text, "\ufeff") // a BOM from an editor
	for n := 1; text != ""; n++ {
		var raw string
		raw, text, _ = strings.Cut(text, "\n")
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		pfx, entry, err := f.parseLine(line)
		if !entry {
			continue
		}
		p.entries++
		switch {
		case err != nil:
			if p.badCount++; len(p.bad) < reportedLines {
				p.bad = append(p.bad, badLine{n, quoted(line), err.Error()})
			}
		case tooWide(pfx):
			if p.wideCount++; len(p.wide) < reportedLines {
				p.wide = append(p.wide, badLine{n, quoted(line), fmt.Sprintf("%s is wider than /%d", pfx, minBits(pfx))})
			}
		default:
			p.prefixes = append(p.prefixes, pfx)
		}
	}
	return p
}

// quoted is line cut to maxQuoted bytes, copied so that it does not hold
// the whole text in memory.
func quoted(line string) string {
	if len(line) > maxQuoted {
		line = line[:maxQuoted] + "..."
	}
	return strings.Clone(line)
}

// parseLine reads one trimmed, non-blank, non-comment line: its prefix,
// whether it held an entry at all (false for the lines a format skips),
// and why the entry is bad.
func (f format) parseLine(line string) (netip.Prefix, bool, error) {
	switch f {
	case formatRelay:
		field, _, _ := strings.Cut(line, ",")
		p, err := parsePrefix(strings.TrimSpace(field))
		return p, true, err
	case formatTor:
		fields := strings.Fields(line)
		switch fields[0] {
		case "ExitAddress":
			if len(fields) < 2 {
				return netip.Prefix{}, true, errors.New("ExitAddress without an address")
			}
			p, err := parseAddr(fields[1])
			return p, true, err
		case "ExitNode", "Published", "LastStatus":
			return netip.Prefix{}, false, nil
		}
		if len(fields) > 1 {
			return netip.Prefix{}, true, errors.New("neither an address nor a line of Tor's exit-addresses")
		}
		p, err := parseAddr(fields[0])
		return p, true, err
	default:
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		p, err := parsePrefix(line)
		return p, true, err
	}
}

// parseAddr reads one address as a single-address prefix. IPv4-mapped
// IPv6 becomes IPv4 (Lookup unmaps what it is asked) and a zone is
// dropped, as pkg/gate reads addresses.
func parseAddr(s string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address")
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parsePrefix reads an address or a CIDR prefix. Unlike pkg/gate's
// ParsePrefix it refuses host bits rather than masking them: a list
// exempts its addresses from blocks, and 192.0.2.7/16 is likelier a
// typo of a /32 than a wish to exempt 65,536 addresses.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		return parseAddr(s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set: the network is %s, the address %s/%d", m, p.Addr(), p.Addr().BitLen())
	}
	return p, nil
}

// Bounds of a listed prefix. IPv4's largest blocks ever held by one
// network are /8s (the legacy class A allocations; carrier-grade NAT
// itself is a /10), and no IPv6 network holds more than a /16: the
// regional registries themselves get /12s from IANA and hand out /19 to
// /32 to the largest operators. A shared egress list names networks of
// relays, exits or proxies, which are much narrower; a prefix wider than
// these bounds (a /0 above all) is an error in the list, or someone
// trying to exempt the Internet from blocking.
const (
	minBits4 = 8
	minBits6 = 16
)

func minBits(p netip.Prefix) int {
	if p.Addr().Is4() {
		return minBits4
	}
	return minBits6
}

func tooWide(p netip.Prefix) bool { return p.Bits() < minBits(p) }
