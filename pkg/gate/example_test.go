package gate_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"

	"github.com/defender-go/defender/pkg/gate"
)

// A login form protected by the middleware: after three failures the
// fourth is answered with the lockout.
func ExampleGate_Middleware() {
	cfg := gate.DefaultConfig()
	store := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()}) // or gate.NewRedisStore(client, "defender", cfg.Policy())
	defer store.Close()
	g, _ := gate.New(cfg, store, gate.WithLogger(quiet))
	defer g.Close(context.Background())

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("password") == "wonderland" {
			http.Redirect(w, r, "/", http.StatusFound) // success
			return
		}
		fmt.Fprint(w, "wrong password") // failure: the form again
	})
	h := g.Middleware(login)

	for i := 1; i <= 4; i++ {
		body := url.Values{"username": {"alice"}, "password": {"guess"}}.Encode()
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(i, w.Code, w.Body.String())
	}
	// Output:
	// 1 200 wrong password
	// 2 200 wrong password
	// 3 200 wrong password
	// 4 429 Account locked: too many login attempts.  Please try again later.
}

// A handler that is not a form (JSON, gRPC, Basic auth) asks before
// checking the password and reports the outcome after.
func ExampleGate_Begin() {
	cfg := gate.DefaultConfig()
	store := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()})
	defer store.Close()
	g, _ := gate.New(cfg, store, gate.WithLogger(quiet))
	defer g.Close(context.Background())
	ctx := context.Background()

	check := func(user, password string) string {
		a := gate.Attempt{IP: netip.MustParseAddr("203.0.113.9"), Username: user}
		ticket, d := g.Begin(ctx, a)
		if !d.Allowed {
			return fmt.Sprintf("refused, blocked by %v for %v", d.BlockedBy, d.RetryAfter.Round(60e9))
		}
		ok := password == "builder"
		after := ticket.Finish(ctx, ok) // or ticket.FinishAsync(ok) not to wait
		if !after.Allowed {
			return "failed, and now blocked"
		}
		return fmt.Sprintf("password ok: %v", ok)
	}
	for _, pw := range []string{"a", "b", "c", "d", "builder"} {
		fmt.Println(check("bob", pw))
	}
	// Output:
	// password ok: false
	// password ok: false
	// password ok: false
	// failed, and now blocked
	// refused, blocked by [ip username] for 5m0s
}
