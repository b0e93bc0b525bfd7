// Package sharedip knows the shared egress addresses: carrier-grade NAT,
// iCloud Private Relay, Tor exits and the operator's own lists of
// proxies. Many innocent users sit behind each of them, so the login gate
// never blocks such an address as a whole; it asks Lookup, on every
// login, whether the address is on a list and which.
package sharedip
