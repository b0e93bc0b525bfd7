package gate

import (
	"net/http"
	"net/netip"
)

// ClientIP is the address the gate counts r by: the direct peer, or behind
// a trusted reverse proxy the client it names (DEFENDER_BEHIND_REVERSE_PROXY,
// DEFENDER_REVERSE_PROXY_HEADER, DEFENDER_TRUSTED_PROXIES). It is the
// invalid Addr when r.RemoteAddr is not an address (a handler called
// outside net/http's server).
func (g *Gate) ClientIP(r *http.Request) netip.Addr { return g.ips.clientIP(r) }
