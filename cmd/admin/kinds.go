package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/defender-go/defender/pkg/gate"
)

// kindInfo is how the admin shows one kind of block, the same in the JSON
// API, the HTML pages and the CLI.
type kindInfo struct {
	Kind gate.Kind
	// Key is the kind's array in GET /api/v1/blocked: a plural, the noun
	// first ("usernames_familiar"). ips, usernames and pairs are those of
	// the first API; the others follow them. DELETE
	// /api/v1/blocked/<key>/... and the CLI take it as well as the kind.
	Key string
	// Title heads the kind's table on the Blocked page, Column its values;
	// Short counts them on the dashboard ("12 IPs").
	Title, Column, Short string
	// Note says what a block of this kind does, where it is not obvious.
	Note string
	// Option names the kind in the "Block by hand" form, Example shows a
	// value of it there.
	Option, Example string
	// Report marks a kind whose "block" refuses nobody: a report.
	Report bool
	// Color draws the kind in the dashboard's chart of new blocks.
	Color string
}

// kindInfos lists every gate.Kind, in gate.Kinds' order
// (TestKindInfosCoverEveryKind).
var kindInfos = []kindInfo{
	{Kind: gate.KindIP, Key: "ips", Title: "Blocked IPs", Column: "IP", Short: "IPs", Color: "#3b6fd6",
		Option: "IP or IPv6 network", Example: "203.0.113.7 or 2001:db8::/64"},
	{Kind: gate.KindUsername, Key: "usernames", Title: "Blocked usernames", Column: "Username", Short: "users", Color: "#8a4fd0",
		Option: "Username", Example: "alice",
		Note: "With smart lockout, a username block refuses the sources the user never logged in from; those they did are refused by a block for familiar sources."},
	{Kind: gate.KindPair, Key: "pairs", Title: "Blocked IP and username pairs", Column: "IP | username", Short: "pairs", Color: "#19a3b5",
		Option: "IP and username pair", Example: "203.0.113.7|alice"},
	{Kind: gate.KindSpray, Key: "sprays", Title: "Blocked password sprayers", Column: "IP", Short: "sprayers", Color: "#e8590c",
		Option: "Password sprayer (IP)", Example: "203.0.113.7 or 2001:db8::/64",
		Note: "Sources that failed for too many distinct usernames."},
	{Kind: gate.KindSprayNet, Key: "spray_nets", Title: "Blocked spraying IPv6 networks", Column: "Network", Short: "spraying nets", Color: "#c2255c",
		Option: "Spraying IPv6 network", Example: "2001:db8:1::/48",
		Note: "IPv6 networks whose addresses together failed for too many distinct usernames."},
	{Kind: gate.KindSprayShared, Key: "spray_shared", Title: "Spraying reported from shared addresses", Column: "Shared IP", Short: "shared reports", Report: true, Color: "#868e96",
		Note: "Reports that refuse nobody: these addresses (carrier-grade NAT, iCloud Private Relay, Tor, your lists) are shared by many users, so none of them is refused; their IP and username pairs are counted instead."},
	{Kind: gate.KindUsernameFamiliar, Key: "usernames_familiar", Title: "Usernames blocked for familiar sources", Column: "Username", Short: "users (familiar)", Color: "#5f3dc4",
		Option: "Username, from its familiar sources", Example: "alice",
		Note: "Refuses the user's logins from the sources they logged in from before. A user is blocked completely when blocked here and as a username."},
}

// kindInfoOf is k's kindInfo; an unknown kind gets a plain one.
func kindInfoOf(k gate.Kind) kindInfo {
	for _, ki := range kindInfos {
		if ki.Kind == k {
			return ki
		}
	}
	return kindInfo{Kind: k, Key: string(k), Title: string(k), Column: string(k)}
}

// parseKind accepts a kind (ip, spray_net, ...) or its key in
// GET /api/v1/blocked (ips, spray_nets, ...), in any case.
func parseKind(s string) (gate.Kind, error) {
	v := strings.ToLower(s)
	for _, ki := range kindInfos {
		if v == string(ki.Kind) || v == ki.Key {
			return ki.Kind, nil
		}
	}
	return "", fmt.Errorf("unknown kind %q (want %s)", s, kindList())
}

// kindNames are gate.Kinds' names, in order.
func kindNames() []string {
	names := make([]string, len(gate.Kinds))
	for i, k := range gate.Kinds {
		names[i] = string(k)
	}
	return names
}

// kindList is "ip, username, ... or username_familiar".
func kindList() string {
	names := kindNames()
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// The kinds whose subjects name the same thing: an address (or IPv6 /64),
// or a username.
var (
	ipKinds       = []gate.Kind{gate.KindIP, gate.KindSpray, gate.KindSprayShared}
	userKinds     = []gate.Kind{gate.KindUsername, gate.KindUsernameFamiliar}
	subjectGroups = [][]gate.Kind{ipKinds, userKinds}
)

// sameSubject lists k and the kinds whose subjects are the same thing as
// its own: a subject's page shows their blocks together.
func sameSubject(k gate.Kind) []gate.Kind {
	out := []gate.Kind{k}
	for _, g := range subjectGroups {
		if slices.Contains(g, k) {
			for _, o := range g {
				if o != k {
					out = append(out, o)
				}
			}
		}
	}
	return out
}
