// Package sharedip knows the shared egress addresses: carrier-grade NAT,
// iCloud Private Relay, Tor exits and the operator's own lists of
// proxies. Many innocent users sit behind each of them, so the login gate
// never blocks such an address as a whole; it asks Lookup, on every
// login, whether the address is on a list and which.
//
// # Lists
//
// Each list has a name, which Lookup returns:
//
//   - "cgnat": 100.64.0.0/10 (RFC 6598), built in, on unless
//     DEFENDER_SHARED_CGNAT=false.
//   - "icloud-relay": Apple's egress list, CSV lines
//     prefix,country,region,city, (DEFENDER_SHARED_RELAY_FILE,
//     DEFENDER_SHARED_RELAY_URL; Apple publishes it at RelayURL).
//   - "tor": Tor's exits, one address per line as in TorURL's bulk list,
//     or Tor's exit-addresses document, of which the ExitAddress lines
//     are read (DEFENDER_SHARED_TOR_FILE, DEFENDER_SHARED_TOR_URL).
//   - the operator's lists (DEFENDER_SHARED_CIDR_FILES): one address or
//     CIDR prefix per line, # comments; each named as the operator says
//     (name=path) or after its file (path/office.txt is "office").
//
// An address on several lists is reported on the first, in that order.
// IPv4-mapped IPv6 addresses are looked up as IPv4, and NAT64 addresses
// of the well-known prefix (64:ff9b::a.b.c.d) also as the IPv4 client
// they carry, the form pkg/gate counts them under.
//
// # Loading
//
// New reads the files, and fails naming the setting when one cannot be
// read or is refused as a whole. URLs are fetched by Run: at once, then
// every DEFENDER_SHARED_REFRESH (24 h; 0: once, never again), each fetch
// bounded by Config.HTTPTimeout and Config.MaxBytes, conditional
// (If-None-Match, If-Modified-Since) once a list has been accepted. Files
// are read again at each refresh if they changed. With a file and a URL,
// the file is the list until the URL has been fetched. With
// DEFENDER_SHARED_CACHE_DIR, each list fetched is kept there and loaded by
// the next New, which fetches it again only when a refresh is due.
//
// A refresh that fails (network, HTTP status) or is refused keeps the
// list in use, is logged and counted, and is retried after a minute, then
// after twice as long each time, up to an hour. Lookup reads an immutable
// table through an atomic pointer, which a load replaces whole: it takes
// no lock, never sees half a list, and allocates nothing.
//
// # Safety
//
// A list exempts its addresses from IP blocks, so one that claims too much
// is refused as a whole (ErrRefused), never partly loaded:
//
//   - a prefix wider than IPv4 /8 or IPv6 /16, /0 above all: the
//     largest blocks one network holds, far wider than any list's relays,
//     exits or proxies;
//   - more than 1 bad entry in 10: an HTML error page or a format changed
//     under us, not a list with a typo;
//   - more than 1/64 of the IPv4 space, 67 million addresses;
//   - an empty answer from a URL where the list in use is not empty: an
//     outage, not a list;
//   - more than Config.MaxBytes.
//
// Fewer bad lines are skipped and logged with their line numbers (the
// first five, and a count). A prefix with host bits set (192.0.2.7/16) is
// a bad line rather than its network: likelier a typo of a /32 than a
// wish to exempt 65,536 addresses.
//
// # Metrics
//
// Collectors returns defender_shared_prefixes,
// defender_shared_refreshes_total (by result: ok, failed, refused) and
// defender_shared_last_success_timestamp_seconds, each by list.
//
// # Cost
//
// Measured on a shared 2-core virtual machine (AMD Turin class; Go
// 1.26.8, bart v0.30.0; medians of 5 runs) with a synthetic list in
// Apple's format of 284,000 lines (10.9 MB): runs of adjacent IPv4 /27 to
// /32 and IPv6 /64 networks in a few providers' blocks, 40% IPv4
// (BenchmarkLoadRelay, BenchmarkLookup, TestRelayListMemory):
//
//   - loading it from its text (parse, rules, table): 64 ms, 20 MB
//     allocated on the way;
//   - the heap it holds once loaded: 5.4 MiB (the test's bound is 64 MiB);
//   - Lookup among CGNAT, that list, 1,500 Tor exits and an operator's
//     list, with 0 allocations: IPv4 hit 41 ns, miss 30 ns; IPv6 hit
//     67 ns, miss 50 ns.
//
// Apple's real list is less regular than the synthetic one. The same
// number of prefixes scattered at random over the address space (a
// one-off run, the worst case for the table) held 7.4 MiB.
package sharedip
