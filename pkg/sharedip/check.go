package sharedip

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gaissmai/bart"
)

// ErrRefused marks a list refused as a whole: it claims too much, or it
// is not a list. The list loaded before stays in use.
var ErrRefused = errors.New("list refused")

// Safety bounds of a whole list, besides tooWide's bound on each prefix.
const (
	// maxBadShare refuses a list of which more than 1 entry in
	// maxBadShare is bad. The published lists are machine-written and
	// have no bad lines; an operator's file may have a typo or two. What
	// has many is not a list: an HTML error page, a login portal, a
	// format changed under us (every line of a page is bad). One in ten
	// keeps a handful of typos in a short file from refusing it, yet
	// catches a page even when it holds some addresses.
	maxBadShare = 10
	// maxCoverage4 is the most IPv4 addresses a list may cover: 1/64 of
	// the space, 67 million addresses. Apple's list is made of /27 to /32
	// networks (284,000 /27s would be 9 million addresses); an operator's
	// list of several private /8s fits. A list past it would exempt a
	// good share of the Internet from IP blocks.
	maxCoverage4 = 1 << (32 - 6)
)

// loaded is a list read and accepted.
type loaded struct {
	table    *bart.Lite
	prefixes int // distinct prefixes in table
	badLines int // lines skipped
}

// check applies the rules to a list read by parse, and builds its table.
// prev is the number of prefixes of the list in use (0 when none), and
// fetched says the list came from a URL: an empty answer from a URL that
// gave a list before is an outage, not a list.
func check(p parsed, prev int, fetched bool) (loaded, error) {
	if p.wideCount > 0 {
		return loaded{}, fmt.Errorf("%w: %s", ErrRefused, lineList(p.wide, p.wideCount, "too wide for a shared list"))
	}
	if p.badCount*maxBadShare > p.entries {
		return loaded{}, fmt.Errorf("%w: %d of %d entries are bad, more than 1 in %d: not a list of this format? %s",
			ErrRefused, p.badCount, p.entries, maxBadShare, lineList(p.bad, p.badCount, "not read"))
	}
	if len(p.prefixes) == 0 && prev > 0 && fetched {
		return loaded{}, fmt.Errorf("%w: empty, where it held %d prefixes", ErrRefused, prev)
	}
	t := new(bart.Lite)
	for _, pfx := range p.prefixes {
		t.Insert(pfx)
	}
	if n := coverage4(t); n > maxCoverage4 {
		return loaded{}, fmt.Errorf("%w: covers %d IPv4 addresses, more than 1/%d of the space (%d)",
			ErrRefused, n, (1<<32)/maxCoverage4, maxCoverage4)
	}
	return loaded{table: t, prefixes: t.Size(), badLines: p.badCount}, nil
}

// lineList reports the first lines and the count of all of them.
func lineList(lines []badLine, count int, what string) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(count))
	if count == 1 {
		b.WriteString(" line ")
	} else {
		b.WriteString(" lines ")
	}
	b.WriteString(what)
	for i, l := range lines {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(l.String())
	}
	if count > len(lines) {
		fmt.Fprintf(&b, "; and %d more", count-len(lines))
	}
	return b.String()
}

// coverage4 counts the IPv4 addresses t covers, each once: in sorted
// order a network comes before those it contains, so a network that ends
// within the last one counted is inside it.
func coverage4(t *bart.Lite) uint64 {
	var total, end uint64 // end: one past the last address counted
	for p := range t.AllSorted4() {
		b := p.Addr().As4()
		start := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		size := uint64(1) << (32 - p.Bits())
		if start+size <= end {
			continue
		}
		total += size
		end = start + size
	}
	return total
}
