package notify

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/nats-io/nats.go/jetstream"
)

// Unlocker lifts a username's block at its user's request (*gate.Gate),
// publishing the unblock with reason user; with smart lockout the
// browser's device becomes familiar to the user (gate.Gate.Device and
// SetDeviceCookie: "" and nothing when smart lockout is off).
type Unlocker interface {
	Check(ctx context.Context, a gate.Attempt) gate.Decision
	UnblockByUser(ctx context.Context, username, device string) (bool, error)
	Device(token string) (string, bool)
	SetDeviceCookie(w http.ResponseWriter, r *http.Request, token string)
}

// UnlockPage serves the page an unlock link opens. A GET only shows the
// username and a button: mail scanners and link previews follow every
// link they see, and must not unlock anything. The button's POST checks
// the link again, marks it used (in a key-value bucket every instance
// shares, so a link works once whichever instance serves it) and lifts
// the username's block; never an address's or a pair's, which the link
// cannot name.
type UnlockPage struct {
	links  *Links
	used   jetstream.KeyValue
	unlock Unlocker
	log    *slog.Logger
	m      *metrics
}

// unlockPage is the page's one template: a question with a button, or
// what happened.
var unlockPage = template.Must(template.New("unlock").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}
button{font-size:1rem;padding:.6rem 1.2rem}.name{font-weight:600;overflow-wrap:anywhere}</style></head>
<body><h1>{{.Title}}</h1>
{{if .User}}<p>Account: <span class="name">{{.User}}</span></p>{{end}}
<p id="message">{{.Message}}</p>
{{if .Token}}<form method="post"><input type="hidden" name="t" value="{{.Token}}">
<button type="submit" id="unlock">Unlock my account</button></form>{{end}}
</body></html>
`))

// page is what unlockPage shows.
type page struct {
	Title, User, Message, Token string
}

func (p *UnlockPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The token is in the URL: no referrer may carry it elsewhere, no
	// cache keep it, no frame trick a click.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.show(w, r.URL.Query().Get("t"))
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if err := r.ParseForm(); err != nil {
			p.render(w, http.StatusBadRequest, page{Title: "This link does not work", Message: "The request could not be read."})
			return
		}
		p.use(w, r, r.PostForm.Get("t"))
	default:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// show asks whether to unlock, or says why the link does not work.
func (p *UnlockPage) show(w http.ResponseWriter, token string) {
	c, err := p.links.check(token)
	if err != nil {
		p.refuse(w, c, err)
		return
	}
	p.render(w, http.StatusOK, page{Title: "Unlock your account", User: c.User, Token: token,
		Message: "Your account was locked after failed sign-in attempts. If you want to sign in now, unlock it. The link works once."})
}

// use unlocks once per link.
func (p *UnlockPage) use(w http.ResponseWriter, r *http.Request, token string) {
	ctx := r.Context()
	c, err := p.links.check(token)
	if err != nil {
		p.refuse(w, c, err)
		return
	}
	key := usedKey(c)
	if _, err := p.used.Get(ctx, key); err == nil {
		p.refuse(w, c, ErrLinkUsed)
		return
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		p.unavailable(w, c, "read whether the link was used", err)
		return
	}
	// The link lifts the block it was sent for, not one that replaced it
	// (an admin's, or the attacker's next).
	d := p.unlock.Check(ctx, gate.Attempt{Username: c.User})
	if d.Degraded {
		p.unavailable(w, c, "read the lock", d.Err)
		return
	}
	if !slices.Contains(d.BlockedBy, gate.KindUsername) {
		p.m.unlocks.WithLabelValues("not_locked").Inc()
		p.render(w, http.StatusOK, page{Title: "Your account is not locked", User: c.User,
			Message: "There is no lock on this account now. " + addressMayBeBlocked})
		return
	}
	if end := time.Now().Add(d.RetryAfter); d.Permanent || end.Sub(time.UnixMilli(c.Until)).Abs() > sameLock {
		p.refuse(w, c, ErrLinkStale)
		return
	}
	if _, err := p.used.Create(ctx, key, []byte(c.Event)); errors.Is(err, jetstream.ErrKeyExists) {
		p.refuse(w, c, ErrLinkUsed)
		return
	} else if err != nil {
		p.unavailable(w, c, "mark the link used", err)
		return
	}
	var cookie string
	if ck, err := r.Cookie(gate.DeviceCookie); err == nil {
		cookie = ck.Value
	}
	device, fresh := p.unlock.Device(cookie)
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.unlock.UnblockByUser(uctx, c.User, device); err != nil {
		// Not unlocked: the link may be used again.
		if derr := p.used.Delete(context.WithoutCancel(ctx), key); derr != nil {
			p.log.Warn("unlock: could not release the link after a failed unlock", "err", derr)
		}
		p.unavailable(w, c, "unblock", err)
		return
	}
	if fresh {
		p.unlock.SetDeviceCookie(w, r, device)
	}
	p.m.unlocks.WithLabelValues("unlocked").Inc()
	p.log.Info("unlocked by the user", "username", c.User, "event", c.Event)
	p.render(w, http.StatusOK, page{Title: "Your account is unlocked", User: c.User,
		Message: "The lock on this account is lifted. " + addressMayBeBlocked + " If you did not cause the failed attempts, change your password."})
}

// addressMayBeBlocked tells why sign-in may still be refused: a link
// lifts the username's block only, and the failures that locked the
// account may have blocked the address they came from too.
const addressMayBeBlocked = "If sign-in is still refused from this network, its address is blocked as well: " +
	"that block ends by itself after a cool-off period, or you can ask the site for help."

// sameLock is how far the end of the lock on the account may be from the
// end its link names and still be that lock: the gate and the notifier
// read it on clocks of their own.
const sameLock = 10 * time.Second

// refuse says why a link does not work, and changes nothing.
func (p *UnlockPage) refuse(w http.ResponseWriter, c claims, err error) {
	status, why := http.StatusBadRequest, "invalid"
	switch {
	case errors.Is(err, ErrLinkExpired):
		status, why = http.StatusGone, "expired"
	case errors.Is(err, ErrLinkUsed):
		status, why = http.StatusConflict, "used"
	case errors.Is(err, ErrLinkStale):
		status, why = http.StatusConflict, "stale"
	}
	p.m.unlocks.WithLabelValues(why).Inc()
	// The error's text as a sentence (the errors are ASCII).
	msg := strings.ToUpper(err.Error()[:1]) + err.Error()[1:] + "."
	if why != "used" {
		msg += " Wait until the lock ends, or ask for help."
	}
	p.render(w, status, page{Title: "This link does not work", User: c.User, Message: msg})
}

func (p *UnlockPage) unavailable(w http.ResponseWriter, c claims, what string, err error) {
	p.m.unlocks.WithLabelValues("error").Inc()
	p.log.Warn("unlock failed", "step", what, "err", err)
	p.render(w, http.StatusServiceUnavailable, page{Title: "Please try again", User: c.User,
		Message: "The account could not be unlocked just now. The link still works: try again in a minute."})
}

func (p *UnlockPage) render(w http.ResponseWriter, status int, pg page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := unlockPage.Execute(w, pg); err != nil {
		p.log.Debug("unlock page: write", "err", err)
	}
}
