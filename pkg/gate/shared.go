package gate

import "net/netip"

// SharedLists tells which addresses many users share: carrier-grade NAT,
// iCloud Private Relay, Tor exits, an operator's proxies. The gate never
// blocks such an address whole: it counts its (IP, username) pairs
// instead, and reports its spraying (KindSprayShared) without refusing
// anyone. Package sharedip builds one from lists in files and at URLs.
// Lookup is called on every login: it must be fast and safe for
// concurrent use.
type SharedLists interface {
	// Lookup returns the name of the list holding addr, if any.
	Lookup(addr netip.Addr) (list string, ok bool)
}

// WithSharedLists sets the lists of shared addresses. Without this option
// the gate knows carrier-grade NAT (100.64.0.0/10, list "cgnat") only;
// with a nil l it knows none.
func WithSharedLists(l SharedLists) Option {
	return func(g *Gate) {
		if l == nil {
			l = noSharedLists{}
		}
		g.shared = l
	}
}

// SharedList returns the name of the shared list holding addr, if any,
// as the gate looks it up for every login (for an admin's pages).
func (g *Gate) SharedList(addr netip.Addr) (string, bool) {
	return g.shared.Lookup(addr.Unmap())
}

// cgnat is RFC 6598's shared address space, the addresses a carrier's
// NAT gives its subscribers: many users behind each of them.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// cgnatList is the gate's default SharedLists.
type cgnatList struct{}

func (cgnatList) Lookup(a netip.Addr) (string, bool) {
	if cgnat.Contains(a.Unmap()) {
		return "cgnat", true
	}
	return "", false
}

type noSharedLists struct{}

func (noSharedLists) Lookup(netip.Addr) (string, bool) { return "", false }
