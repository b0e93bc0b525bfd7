// Command loginapp is a small login site protected by defender's gate
// middleware: a form, two users, and the lockout answer after too many
// failures. It keeps counters in memory, or in Redis when
// DEFENDER_REDIS_URL is set; every DEFENDER_* setting applies.
//
//	go run ./examples/loginapp          # http://127.0.0.1:8000/login
//
// Users: alice / wonderland and bob / builder (LOGINAPP_USERS="name:password,...").
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("loginapp", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	cfg, err := gate.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		return err
	}
	users, err := parseUsers(envOr("LOGINAPP_USERS", "alice:wonderland,bob:builder"))
	if err != nil {
		return fmt.Errorf("LOGINAPP_USERS: %w", err)
	}
	store, closeStore, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []gate.Option{gate.WithLogger(log)}
	pub, closeEvents, err := openEvents(ctx, log)
	if err != nil {
		return err
	}
	if pub != nil {
		opts = append(opts, gate.WithEmitter(pub))
	}
	g, err := gate.New(cfg, store, opts...)
	if err != nil {
		return err
	}
	addr := envOr("DEFENDER_HTTP_ADDR", "127.0.0.1:8000")
	srv := &http.Server{Addr: addr, Handler: newSite(g, users), ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("login site listening", "url", "http://"+addr+"/login")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	err = g.Close(shutdown) // outcomes settle, and emit their events
	return errors.Join(err, closeEvents(shutdown))
}

// openEvents publishes the gate's events on NATS JetStream when
// DEFENDER_NATS_URL is set (the stack's recorder stores them).
func openEvents(ctx context.Context, log *slog.Logger) (*events.Publisher, func(context.Context) error, error) {
	ecfg, err := events.FromEnv(os.LookupEnv)
	if err != nil {
		return nil, nil, err
	}
	if ecfg.NATSURL == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	nc, js, err := events.Connect(ctx, ecfg.NATSURL, "loginapp")
	if err != nil {
		return nil, nil, fmt.Errorf("DEFENDER_NATS_URL: %w", err)
	}
	if _, err := events.EnsureStream(ctx, js, ecfg.Stream()); err != nil {
		nc.Close()
		return nil, nil, err
	}
	pub, err := events.NewPublisher(js, events.PublisherOptions{
		Subjects: ecfg.Subjects(), Gate: "loginapp", Buffer: ecfg.EventBuffer, Logger: log,
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	log.Info("publishing events", "nats", ecfg.NATSURL)
	return pub, func(ctx context.Context) error {
		err := pub.Close(ctx)
		nc.Close()
		return err
	}, nil
}

func openStore(cfg gate.Config, log *slog.Logger) (gate.Store, func(), error) {
	if cfg.RedisURL == "" {
		log.Info("counting failures in memory (single instance); set DEFENDER_REDIS_URL to share them")
		m := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), MaxEntries: cfg.MemoryMaxEntries, MaxBytes: cfg.MemoryMaxBytes})
		return m, func() { m.Close() }, nil
	}
	store, client, err := gate.OpenRedisStore(cfg) // one Redis, a cluster or a Sentinel master
	if err != nil {
		return nil, nil, err
	}
	log.Info("counting failures in Redis", "store", fmt.Sprintf("%T", store))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := gate.CheckRedisMemoryPolicy(ctx, client); err != nil {
		log.Warn("Redis memory policy", "err", err)
	}
	return store, func() { client.Close() }, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseUsers(s string) (map[string]string, error) {
	users := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		name, pw, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok || name == "" || pw == "" {
			return nil, fmt.Errorf("%q is not name:password", pair)
		}
		users[name] = pw
	}
	return users, nil
}

// site is the login application.
type site struct {
	users map[string]string
	mux   *http.ServeMux
}

func newSite(g *gate.Gate, users map[string]string) http.Handler {
	s := &site{users: users, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.home)
	s.mux.Handle("/login", g.Middleware(http.HandlerFunc(s.login)))
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.HandleFunc("GET /defender/email", s.email)
	return s.mux
}

// email is the address lookup the notifier asks (DEFENDER_MAIL_LOOKUP_URL)
// before it mails a blocked user: {"email": ...} for a user of the site,
// 404 for any other name. A real site answers from its user table, on a
// private listener: the addresses are its users'.
func (s *site) email(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("username")
	if _, ok := s.users[user]; !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"email": user + "@example.com"})
}

func (s *site) home(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("user")
	if err != nil || c.Value == "" {
		http.Redirect(w, r, "/login", http.StatusFound)
		return
	}
	page(w, http.StatusOK, "Welcome", fmt.Sprintf(`<p>Signed in as <b>%s</b>.</p>
<form method="post" action="/logout"><button>Sign out</button></form>`, escape(c.Value)))
}

func (s *site) login(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		user, pw := r.PostFormValue("username"), r.PostFormValue("password")
		want, ok := s.users[user]
		if ok && subtle.ConstantTimeCompare([]byte(pw), []byte(want)) == 1 {
			http.SetCookie(w, &http.Cookie{Name: "user", Value: user, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
			http.Redirect(w, r, "/", http.StatusFound) // a redirect tells the gate: success
			return
		}
		form(w, "Please enter a correct username and password.")
		return
	}
	form(w, "")
}

func (s *site) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: "user", Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusFound)
}

func form(w http.ResponseWriter, msg string) {
	body := `<form method="post" action="/login">
<label>Username <input name="username" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button>Sign in</button></form>`
	if msg != "" {
		body = `<p class="error">` + escape(msg) + `</p>` + body
	}
	page(w, http.StatusOK, "Sign in", body)
}

func page(w http.ResponseWriter, status int, title, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title>
<style>body{font-family:sans-serif;max-width:24rem;margin:4rem auto}label{display:block;margin:.5rem 0}
.error{color:#b00}</style></head><body><h1>%s</h1>%s</body></html>`, title, title, body)
}

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")

func escape(s string) string { return escaper.Replace(s) }
