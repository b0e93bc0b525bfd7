package gate

import (
	"bytes"
	"math"
	"net/http"
	"strconv"
)

// The lockout texts of django-defender (two spaces after the first period).
const (
	LockoutMessage          = "Account locked: too many login attempts.  Please try again later."
	PermanentLockoutMessage = "Account locked: too many login attempts.  Contact an admin to unlock your account."
	UnavailableMessage      = "Login is temporarily unavailable.  Please try again later."
)

// unavailableRetryAfter is the Retry-After of a refusal because the store
// is down (FailClosed), in seconds.
const unavailableRetryAfter = 5

// RetryAfterSeconds is the Retry-After value of a refusal: whole seconds,
// rounded up, at least 1 (0 would read as never); 0 when the block never
// expires, or when nothing was refused; 5 when the store is down and the
// gate fails closed.
func (d Decision) RetryAfterSeconds() int {
	switch {
	case d.Unavailable:
		return unavailableRetryAfter
	case d.Permanent || d.Allowed:
		return 0
	}
	return max(1, int(math.Ceil(d.RetryAfter.Seconds())))
}

// WriteLockout answers a refused attempt: with DEFENDER_LOCKOUT_TEMPLATE the
// rendered page, else with DEFENDER_LOCKOUT_URL a 302 there, else 429 with
// django-defender's text. Retry-After is set unless the block is permanent.
// A decision refused because the store is down (FailClosed) gets 503.
func (g *Gate) WriteLockout(w http.ResponseWriter, r *http.Request, d Decision) {
	h := w.Header()
	if d.Unavailable {
		h.Set("Retry-After", strconv.Itoa(d.RetryAfterSeconds()))
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(UnavailableMessage))
		return
	}
	secs := d.RetryAfterSeconds()
	if secs > 0 {
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	h.Set("Cache-Control", "no-store")
	switch {
	case g.lockout != nil:
		var buf bytes.Buffer
		data := map[string]any{
			"cooloff_time_seconds": secs,
			"cooloff_time_minutes": float64(secs) / 60,
			"failure_limit":        g.cfg.FailureLimit,
			"permanent":            d.Permanent,
		}
		if err := g.lockout.Execute(&buf, data); err != nil {
			g.log.Error("lockout template", "err", err)
			g.writeText(w, d)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(buf.Bytes())
	case g.cfg.LockoutURL != "":
		http.Redirect(w, r, g.cfg.LockoutURL, http.StatusFound)
	default:
		g.writeText(w, d)
	}
}

func (g *Gate) writeText(w http.ResponseWriter, d Decision) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	msg := LockoutMessage
	if d.Permanent {
		msg = PermanentLockoutMessage
	}
	_, _ = w.Write([]byte(msg))
}
