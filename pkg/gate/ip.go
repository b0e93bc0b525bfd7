package gate

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ErrBadIP is returned by ParseIP for text that is not an IP address.
var ErrBadIP = errors.New("gate: not an IP address")

// ParseIP parses a client address as found in RemoteAddr or a forwarding
// header: "203.0.113.7", "203.0.113.7:5678", "[2001:db8::1]:443",
// "2001:db8::1", with surrounding spaces and quotes tolerated. IPv4-mapped
// IPv6 becomes IPv4 and zones are dropped, so one client has one form.
func ParseIP(s string) (netip.Addr, error) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if len(s) > 64 { // longer than any address with port
		return netip.Addr{}, ErrBadIP
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), nil
		}
	}
	return netip.Addr{}, ErrBadIP
}

// ipResolver finds the client address of a request.
type ipResolver struct {
	behindProxy bool
	header      string
	trusted     []netip.Prefix
}

func newIPResolver(c *Config) ipResolver {
	return ipResolver{behindProxy: c.BehindReverseProxy, header: c.ReverseProxyHeader, trusted: c.TrustedProxies}
}

// clientIP returns the client address of r. The direct peer (RemoteAddr) is
// the answer unless the gate is behind a reverse proxy: then the forwarding
// header is read from the right, skipping trusted proxies, and the first
// other address is the client. The header is ignored when trusted proxies
// are configured and the peer is not one of them (a client talking to us
// directly can forge it), and an unparsable entry where the client should
// be makes the peer the answer. The result is invalid only if RemoteAddr
// itself is not an address (e.g. a unix socket).
func (res ipResolver) clientIP(r *http.Request) netip.Addr {
	peer, _ := ParseIP(r.RemoteAddr)
	if !res.behindProxy {
		return peer
	}
	if len(res.trusted) > 0 && !(peer.IsValid() && containsAddr(res.trusted, peer)) {
		return peer
	}
	values := r.Header.Values(res.header)
	var leftmostTrusted netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		entries := values[i]
		for entries != "" {
			var entry string
			if j := strings.LastIndexByte(entries, ','); j >= 0 {
				entry, entries = entries[j+1:], entries[:j]
			} else {
				entry, entries = entries, ""
			}
			if strings.TrimSpace(entry) == "" {
				continue
			}
			a, err := ParseIP(entry)
			if err != nil {
				return peer // garbage where the client should be
			}
			if containsAddr(res.trusted, a) {
				leftmostTrusted = a
				continue
			}
			return a
		}
	}
	if leftmostTrusted.IsValid() {
		return leftmostTrusted // every hop is ours: the first one is the client
	}
	return peer
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// nat64 is the well-known prefix of IPv4/IPv6 translators (RFC 6052):
// 64:ff9b::a.b.c.d is the IPv4 client a.b.c.d.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// ipSubject is the counter subject of an address: the address itself for
// IPv4, its network of the given prefix length for IPv6
// ("2001:db8:1:2::/64"), or the bare address when bits is 128.
func ipSubject(a netip.Addr, v6bits int) string {
	a = unNAT64(a)
	if a.Is4() || v6bits >= 128 {
		return a.String()
	}
	p, err := a.Prefix(v6bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// unNAT64 is the IPv4 client behind a NAT64 address, else a itself.
func unNAT64(a netip.Addr) netip.Addr {
	if nat64.Contains(a) {
		b := a.As16()
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return a
}

// listed reports whether a client address is in a list of prefixes, by
// its own form or, behind NAT64, by the IPv4 client it stands for (the
// form it is counted and blocked under).
func listed(prefixes []netip.Prefix, a netip.Addr) bool {
	if len(prefixes) == 0 {
		return false
	}
	if containsAddr(prefixes, a) {
		return true
	}
	if v4 := unNAT64(a); v4 != a {
		return containsAddr(prefixes, v4)
	}
	return false
}

// IPSubject canonicalises an address or an IPv6 network given by an
// operator ("2001:db8::1", "2001:db8::/64", "::ffff:1.2.3.4") into the
// subject the gate counts it under.
func (g *Gate) IPSubject(s string) (string, error) {
	if strings.Contains(s, "/") {
		p, err := ParsePrefix(s)
		if err != nil {
			return "", ErrBadIP
		}
		// A block is per address (IPv6: per counted network). A wider
		// network would silently shrink to its first address: refuse it.
		unit := 32
		if !p.Addr().Is4() {
			unit = min(g.cfg.IPv6Prefix, 128)
		}
		if p.Bits() < unit {
			return "", fmt.Errorf("%w: %s is a network of many sources; blocks are per address (IPv6 per /%d), networks belong in DEFENDER_IP_BLACKLIST",
				ErrBadIP, s, unit)
		}
		return ipSubject(p.Addr(), g.cfg.IPv6Prefix), nil
	}
	a, err := ParseIP(s)
	if err != nil {
		return "", err
	}
	return ipSubject(a, g.cfg.IPv6Prefix), nil
}
