package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/defender-go/defender/internal/redact"

	"github.com/nats-io/nats.go"
	"golang.org/x/mod/semver"
)

// InstallServer is how to install a current nats-server, the version
// go.mod requires (and the gate embeds), for messages about a server too
// old: Debian bookworm's package is 2.9.
const InstallServer = "go install github.com/nats-io/nats-server/v2@v2.15.2"

// ErrServerTooOld is wrapped by the errors of a NATS server older than a
// program needs (a *TooOldError).
var ErrServerTooOld = errors.New("NATS server too old")

// ServerNeed is a NATS server version a program needs, and why.
type ServerNeed struct {
	// Min is the lowest version, as messages show it: "2.10".
	Min string
	// Who needs it: "defender's recorder".
	Who string
	// For is the feature: "consumers with several filter subjects".
	For string
}

// Check returns nil when the server nc is connected to is at least
// n.Min, and a *TooOldError otherwise. It returns nil too when nc is not
// connected, or the server's version does not parse: there is nothing to
// check then, and the request that needs the feature must not be refused
// for it.
func (n ServerNeed) Check(nc *nats.Conn) error {
	found := nc.ConnectedServerVersion()
	have, ok := canonical(found)
	if !ok {
		return nil
	}
	want, ok := canonical(n.Min)
	if !ok {
		panic("events: ServerNeed.Min " + strconv.Quote(n.Min) + " is no version")
	}
	if semver.Compare(have, want) >= 0 {
		return nil
	}
	return &TooOldError{Version: found, URL: redact.URLList(nc.ConnectedUrl()), Need: n}
}

// TooOldError is a NATS server older than a program needs.
type TooOldError struct {
	// Version is the server's version ("2.9.10"); "" when unknown (a
	// request failed for want of the feature).
	Version string
	// URL is the server's, without credentials; "" when unknown.
	URL  string
	Need ServerNeed
}

// Error is one line naming the server's version, the version needed, who
// needs it and why, and how to install a current server.
func (e *TooOldError) Error() string {
	var b strings.Builder
	b.WriteString("NATS server ")
	if e.Version != "" {
		b.WriteString(e.Version + " ")
	}
	if e.URL != "" {
		b.WriteString("at " + e.URL + " ")
	}
	fmt.Fprintf(&b, "is too old: %s needs %s or later (%s); install a current nats-server (%s)",
		e.Need.Who, e.Need.Min, e.Need.For, InstallServer)
	return b.String()
}

// Unwrap makes the error match ErrServerTooOld.
func (e *TooOldError) Unwrap() error { return ErrServerTooOld }

// canonical is a server's version in semver's form ("v2.11.0"), or false
// when it is none. It reads "2.10", "2.9.10" or "v2.11.0-RC.1"; a
// pre-release counts as its release, as nats.go counts it.
func canonical(s string) (string, bool) {
	v := semver.Canonical("v" + strings.TrimPrefix(s, "v"))
	if v == "" || !strings.Contains(s, ".") { // semver takes "v2" for v2.0.0
		return "", false
	}
	return strings.TrimSuffix(v, semver.Prerelease(v)), true
}
