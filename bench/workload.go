package main

import (
	"math/rand/v2"
	"strconv"
)

// The workloads, in the order of every table and chart.
const (
	wlSuccess = "success" // every attempt has the right password
	wlMixed   = "mixed"   // half right, half wrong, from many IPs and usernames
	wlFailure = "failure" // every password wrong; limits so high that nothing blocks
	wlBlocked = "blocked" // every attempt from an IP blocked beforehand
)

var workloads = []string{wlSuccess, wlMixed, wlFailure, wlBlocked}

// The population the load draws from.
const (
	numUsers      = 10_000 // user0 ... user9999, all with goodPassword
	numIPs        = 65_536 // 10.1.0.0/16, never blocked
	numBlockedIPs = 1_024  // 10.200.0.0/22, blocked by hand before the run
	goodPassword  = "correct-horse-battery-staple"
	badPassword   = "hunter2"
)

// sourceIP is the i-th ordinary client address.
func sourceIP(i int) string {
	return "10.1." + strconv.Itoa(i>>8&0xff) + "." + strconv.Itoa(i&0xff)
}

// blockedIP is the i-th blocked client address.
func blockedIP(i int) string {
	return "10.200." + strconv.Itoa(i>>8&0xff) + "." + strconv.Itoa(i&0xff)
}

// attempt is one login the load generator sends.
type attempt struct {
	ip   string // sent as X-Forwarded-For
	body string // the form
}

// nextAttempt draws an attempt of workload wl.
func nextAttempt(wl string, rng *rand.Rand) attempt {
	user := "user" + strconv.Itoa(rng.IntN(numUsers))
	ip := sourceIP(rng.IntN(numIPs))
	pw := badPassword
	switch wl {
	case wlSuccess:
		pw = goodPassword
	case wlMixed:
		if rng.IntN(2) == 0 {
			pw = goodPassword
		}
	case wlBlocked:
		ip = blockedIP(rng.IntN(numBlockedIPs))
	}
	return attempt{ip: ip, body: "username=" + user + "&password=" + pw}
}

// expectedStatus tells whether status is a right answer to workload wl:
// 302 for a good password, 200 (the form again) for a bad one, and, only
// behind a gate, 429 for a blocked source.
func expectedStatus(wl string, gated bool, status int) bool {
	switch wl {
	case wlSuccess:
		return status == 302
	case wlMixed:
		return status == 302 || status == 200
	case wlFailure:
		return status == 200
	case wlBlocked:
		if gated {
			return status == 429
		}
		return status == 200
	}
	return false
}
