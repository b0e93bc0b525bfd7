package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/pkg/gate"
)

// The admin's password is a login like any other, so defender guards it
// with its own gate: wrong passwords are counted per client address (the
// address the admin's gate settings name: the peer, or the client behind a
// trusted reverse proxy), in this process's memory, and an address that
// passes the limit is refused for the cool-off, right password or not.
// Only addresses are counted: counting the user name would let anyone
// lock the administrator out.
const (
	adminFailureLimit   = 10
	adminAttemptCooloff = 5 * time.Minute
	adminMaxTracked     = 100_000
)

// adminLockoutCooloffs escalate the blocks of an address that keeps trying.
var adminLockoutCooloffs = []time.Duration{5 * time.Minute, 15 * time.Minute, time.Hour}

// authGuard counts the admin's wrong passwords.
type authGuard struct {
	g        *gate.Gate
	log      *slog.Logger
	outcomes *prometheus.CounterVec
}

// newAuthGuard builds the guard; proxy supplies the reverse-proxy settings
// by which client addresses are read.
func newAuthGuard(proxy gate.Config, reg prometheus.Registerer, log *slog.Logger) (*authGuard, error) {
	cfg := gate.DefaultConfig()
	cfg.FailureLimit, cfg.IPFailureLimit = adminFailureLimit, adminFailureLimit
	cfg.DisableUsernameLockout = true
	cfg.AttemptCooloff = adminAttemptCooloff
	cfg.LockoutCooloffs = adminLockoutCooloffs
	cfg.StoreAccessAttempts = false
	cfg.MemoryMaxEntries = adminMaxTracked
	if proxy.BehindReverseProxy {
		cfg.BehindReverseProxy = true
		cfg.ReverseProxyHeader = proxy.ReverseProxyHeader
		cfg.TrustedProxies = proxy.TrustedProxies
	}
	if proxy.IPv6Prefix != 0 {
		cfg.IPv6Prefix = proxy.IPv6Prefix
	}
	store := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), MaxEntries: adminMaxTracked})
	g, err := gate.New(cfg, store, gate.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("admin password guard: %w", err)
	}
	a := &authGuard{g: g, log: log, outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "defender_admin_auth_refusals_total",
		Help: "Requests to the admin refused for credentials: wrong (a wrong password, counted) or locked (the address passed the limit).",
	}, []string{"reason"})}
	if err := reg.Register(a.outcomes); err != nil {
		_ = g.Close(context.Background())
		return nil, err
	}
	return a, nil
}

func (a *authGuard) attempt(r *http.Request) gate.Attempt {
	return gate.Attempt{IP: a.g.ClientIP(r), Path: r.URL.Path, UserAgent: r.UserAgent()}
}

// check says whether r's address may try a password.
func (a *authGuard) check(r *http.Request) gate.Decision {
	return a.g.Check(context.WithoutCancel(r.Context()), a.attempt(r))
}

// fail counts a wrong password; the Decision says whether the address may
// go on trying.
func (a *authGuard) fail(r *http.Request) gate.Decision {
	a.outcomes.WithLabelValues("wrong").Inc()
	at := a.attempt(r)
	d := a.g.Record(context.WithoutCancel(r.Context()), at, false)
	if !d.Allowed {
		a.log.Warn("admin: too many wrong passwords; address refused", "ip", at.IP.String(),
			"retry_after", d.RetryAfter)
	}
	return d
}

// refuse answers a locked-out address: 429 with Retry-After.
func (a *authGuard) refuse(w http.ResponseWriter, r *http.Request, d gate.Decision) {
	a.outcomes.WithLabelValues("locked").Inc()
	secs := int(d.RetryAfter.Round(time.Second) / time.Second)
	if secs > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	msg := fmt.Sprintf("too many wrong passwords from your address; try again in %s (or restart the admin service)",
		d.RetryAfter.Round(time.Second))
	if wantsJSON(r) {
		writeError(w, http.StatusTooManyRequests, msg)
		return
	}
	http.Error(w, msg, http.StatusTooManyRequests)
}

// close releases the guard's gate.
func (a *authGuard) close() { _ = a.g.Close(context.Background()) }
