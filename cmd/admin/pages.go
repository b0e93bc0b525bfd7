package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/gate"
)

// pageNames are the templates rendered inside layout.html.
var pageNames = []string{"dashboard", "blocked", "attempts", "subject", "notifier", "error"}

// templateFuncs are the helpers the templates use. None returns
// template.HTML: every value is escaped by html/template.
var templateFuncs = template.FuncMap{
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	"fmtTimePtr": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	"rfc3339": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"unix": func(t *time.Time) int64 {
		if t == nil {
			return 0
		}
		return t.Unix()
	},
	"human":       humanDuration,
	"subjectHref": func(k, v string) string { return subjectHref(gate.Kind(k), v) },
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(templateFuncs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// humanDuration writes a duration as "3d 4h", "12m 5s" or "42s".
func humanDuration(secs int) string {
	if secs <= 0 {
		return "0s"
	}
	d, h, m, s := secs/86400, secs/3600%24, secs/60%60, secs%60
	switch {
	case d > 0:
		return fmt.Sprintf("%dd %dh", d, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string // the active menu entry
	CSRF   string
	User   string
	Flash  string
	Error  string
	Script string // the page's script under /static/, if any
	Data   any
}

// render executes a page into a buffer first, so that a template error
// becomes a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	p.CSRF, p.User = s.csrf, s.user
	if p.Flash == "" {
		p.Flash = flashMessage(r.URL.Query())
	}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "500 page rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows an error page.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, r, code, "error", page{Title: http.StatusText(code), Error: msg})
}

// flashMessage turns the query of a redirect after a form into a notice.
func flashMessage(q url.Values) string {
	kind, value := q.Get("kind"), q.Get("value")
	switch q.Get("done") {
	case "unblocked":
		if kindInfoOf(gate.Kind(kind)).Report {
			return fmt.Sprintf("Cleared the report of %s %s.", kind, value)
		}
		return fmt.Sprintf("Unblocked %s %s.", kind, value)
	case "not-blocked":
		return fmt.Sprintf("%s %s was not blocked; its failures were cleared.", kind, value)
	case "blocked":
		return fmt.Sprintf("Blocked %s %s.", kind, value)
	}
	return ""
}

// blockedRow is one row of the Blocked tables.
type blockedRow struct {
	Kind gate.Kind
	BlockedEntry
	Href string
}

// blockedTable is one of the Blocked page's tables.
type blockedTable struct {
	kindInfo
	Rows []blockedRow
	More bool // more than blockedPageLimit are blocked; Rows holds that many
	// Hidden: empty, and of a kind this configuration never blocks (pairs
	// outside combo mode, spraying turned off). blocked.js shows it should
	// a block of it arrive all the same (set by hand, or by a gate
	// configured otherwise).
	Hidden bool
}

// blockedPageLimit bounds each table of the Blocked page, which must stay
// usable during an attack that blocks thousands of addresses.
const blockedPageLimit = 1000

// subjectHref is the path of a subject's page: "/username/alice". The
// values "." and "..", which browsers and the router take for path
// segments to resolve, go in the query instead: "/username/?value=..".
// (url.PathEscape leaves dots, and browsers resolve "%2E%2E" too.)
// blocked.js builds the same.
func subjectHref(k gate.Kind, v string) string {
	if v == "." || v == ".." {
		return "/" + string(k) + "/?" + url.Values{"value": {v}}.Encode()
	}
	return "/" + string(k) + "/" + url.PathEscape(v)
}

// subjectValue is the value of a subject's page, as subjectHref put it.
func subjectValue(r *http.Request) string {
	if v := r.PathValue("value"); v != "" {
		return v
	}
	return r.URL.Query().Get("value")
}

// shown reports whether the Blocked page shows kind k's table when it is
// empty: when this configuration blocks by it, or reports it (spraying
// from shared addresses, while spraying is counted).
func shown(g *gate.Gate, k gate.Kind) bool {
	if k == gate.KindSprayShared {
		return g.Checks(gate.KindSpray)
	}
	return g.Checks(k)
}

// tables lays the list out as one table per kind, in kindInfos' order.
func tables(list BlockedList, g *gate.Gate) []blockedTable {
	var out []blockedTable
	for _, ki := range kindInfos {
		t := blockedTable{kindInfo: ki}
		es := *list.of(ki.Kind)
		if len(es) > blockedPageLimit {
			es, t.More = es[:blockedPageLimit], true
		}
		for _, e := range es {
			t.Rows = append(t.Rows, blockedRow{Kind: ki.Kind, BlockedEntry: e, Href: subjectHref(ki.Kind, e.Value)})
		}
		t.Hidden = len(t.Rows) == 0 && !shown(g, ki.Kind)
		out = append(out, t)
	}
	return out
}

// pageBlocked lists the blocked subjects with their unblock buttons and
// the manual block form; blocked.js keeps it current from /api/v1/events.
func (s *Server) pageBlocked(w http.ResponseWriter, r *http.Request) {
	list, err := listBlocked(r.Context(), s.gate, blockedPageLimit+1, s.now())
	if err != nil {
		s.log.Error("list blocked", "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "Redis is unavailable: "+err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "blocked", page{Title: "Blocked", Nav: "blocked", Script: "blocked.js", Data: map[string]any{
		"Tables":    tables(list, s.gate),
		"Observe":   s.gate.Config().Mode == gate.ModeObserve,
		"Live":      s.live != nil,
		"Limit":     blockedPageLimit,
		"Durations": durationChoices,
		"Kinds":     blockable(s.gate),
	}})
}

// blockable lists the kinds the "Block by hand" form offers: those the
// gates check (a block of another kind would refuse nobody).
func blockable(g *gate.Gate) []kindInfo {
	var out []kindInfo
	for _, ki := range kindInfos {
		if g.Checks(ki.Kind) {
			out = append(out, ki)
		}
	}
	return out
}

// durationChoices are the manual block form's durations.
var durationChoices = []struct{ Value, Label string }{
	{"5m", "5 minutes"}, {"15m", "15 minutes"}, {"1h", "1 hour"}, {"6h", "6 hours"},
	{"24h", "24 hours"}, {"7d", "7 days"}, {"30d", "30 days"}, {"permanent", "Permanent"},
}

// back is where a form returns: its "next" field when it is a local path.
func back(r *http.Request, q url.Values) string {
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		next = "/blocked"
	}
	u, err := url.Parse(next)
	if err != nil {
		return "/blocked"
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// formUnblock is the Unblock button.
func (s *Server) formUnblock(w http.ResponseWriter, r *http.Request) {
	res, err := s.unblock(r.Context(), r.PostFormValue("kind"), r.PostFormValue("value"))
	if err != nil {
		s.formFail(w, r, err)
		return
	}
	done := "unblocked"
	if !res.Unblocked {
		done = "not-blocked"
	}
	http.Redirect(w, r, back(r, url.Values{"done": {done}, "kind": {string(res.Kind)}, "value": {res.Value}}), http.StatusSeeOther)
}

// formBlock is the manual block form.
func (s *Server) formBlock(w http.ResponseWriter, r *http.Request) {
	dur := r.PostFormValue("duration")
	var d time.Duration
	permanent := dur == "permanent" || r.PostFormValue("permanent") != ""
	if !permanent {
		var err error
		if d, err = parseDuration(dur); err != nil {
			s.formFail(w, r, badInput(err))
			return
		}
	}
	res, err := s.block(r.Context(), r.PostFormValue("kind"), r.PostFormValue("value"), d, permanent)
	if err != nil {
		s.formFail(w, r, err)
		return
	}
	http.Redirect(w, r, back(r, url.Values{"done": {"blocked"}, "kind": {string(res.Kind)}, "value": {res.Value}}), http.StatusSeeOther)
}

func (s *Server) formFail(w http.ResponseWriter, r *http.Request, err error) {
	var in inputError
	if errors.As(err, &in) {
		s.renderError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Error("admin form failed", "err", err)
	s.renderError(w, r, http.StatusServiceUnavailable, "The store is unavailable: "+err.Error())
}

// pageDashboard shows the charts, drawn by dashboard.js from the stats API,
// and totals for the window.
func (s *Server) pageDashboard(w http.ResponseWriter, r *http.Request) {
	win, err := ParseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.renderError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	data := map[string]any{"Window": win.Name, "Windows": Windows, "BlockColors": blockColors()}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if list, err := listBlocked(ctx, s.gate, 0, s.now()); err == nil {
		data["Blocked"] = blockedCounts(list)
	} else {
		data["RedisError"] = err.Error()
	}
	var histErr string
	if totals, err := s.hist.Totals(ctx, s.now().Add(-win.Span)); err == nil {
		data["Totals"] = totals
		data["Total"] = totals["success"] + totals["failure"] + totals["blocked"] + totals[wouldBlock]
	} else {
		histErr = "History is unavailable: " + err.Error()
	}
	s.render(w, r, http.StatusOK, "dashboard", page{Title: "Dashboard", Nav: "dashboard", Script: "dashboard.js", Error: histErr, Data: data})
}

// blockColors is the chart of new blocks' data-colors: every kind.
func blockColors() string {
	var cs []string
	for _, ki := range kindInfos {
		cs = append(cs, string(ki.Kind)+":"+ki.Color)
	}
	return strings.Join(cs, ",")
}

// blockedCount is one figure of the dashboard's "Blocked now".
type blockedCount struct {
	N     int
	Label string
}

// blockedCounts are the dashboard's "Blocked now": IPs and usernames
// always, the other kinds when any is blocked.
func blockedCounts(list BlockedList) []blockedCount {
	var out []blockedCount
	for _, ki := range kindInfos {
		n := len(*list.of(ki.Kind))
		if n > 0 || ki.Kind == gate.KindIP || ki.Kind == gate.KindUsername {
			out = append(out, blockedCount{N: n, Label: ki.Short})
		}
	}
	return out
}

// attemptsView is the Attempts page's data.
type attemptsView struct {
	Q        url.Values
	Rows     []AttemptRow
	Older    string // URL of the next page
	Newest   string // URL of the first page, when not on it
	Filtered bool
}

// pageAttempts lists attempts, newest first, filtered, one page at a time.
func (s *Server) pageAttempts(w http.ResponseWriter, r *http.Request) {
	cfg := s.gate.Config()
	q := r.URL.Query()
	f, err := parseFilter(q, &cfg, s.now())
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "attempts", page{Title: "Attempts", Nav: "attempts", Error: err.Error(), Data: attemptsView{Q: q}})
		return
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	v := attemptsView{Q: q}
	for _, k := range []string{"username", "ip", "result", "observe", "since", "until"} {
		if q.Get(k) != "" {
			v.Filtered = true
		}
	}
	rows, next, err := s.hist.Attempts(r.Context(), f)
	if err != nil {
		s.log.Error("history query failed", "err", err)
		s.render(w, r, http.StatusServiceUnavailable, "attempts", page{Title: "Attempts", Nav: "attempts", Error: "History is unavailable: " + err.Error(), Data: v})
		return
	}
	v.Rows = rows
	if next != nil {
		nq := cloneValues(q)
		nq.Set("cursor", next.String())
		v.Older = "/attempts?" + nq.Encode()
	}
	if q.Get("cursor") != "" {
		nq := cloneValues(q)
		nq.Del("cursor")
		v.Newest = "/attempts?" + nq.Encode()
	}
	s.render(w, r, http.StatusOK, "attempts", page{Title: "Attempts", Nav: "attempts", Data: v})
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// subjectView is the data of a subject's page (an IP, a username, a pair,
// a spraying source or network...).
type subjectView struct {
	Info     kindInfo
	Kind     gate.Kind
	Value    string // canonical subject
	IP       string // pair parts
	Username string
	Blocked  *BlockedEntry
	// Also are the blocks of the same subject under the other kinds of
	// sameSubject (an IP's spraying block, a user's familiar block).
	Also      []blockedRow
	Checks    bool // the gate checks this kind: it can be blocked by hand
	Attempts  []AttemptRow
	MoreHref  string // the Attempts page with this filter
	Blocks    []BlockRow
	HistError string
	Durations any
	Self      string // this page's path, for forms to return to
	// Shared names the shared egress list the address is on (an IP's
	// page): never blocked whole, counted by (IP, username) pair.
	Shared string
}

// pageSubject shows one subject of kind k (an IP or IPv6 network, a
// username, a pair, a spraying source or network): its current state with
// unblock and block forms, the blocks of its subject under related kinds,
// its attempts and its blocks.
func (s *Server) pageSubject(k gate.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		value := subjectValue(r)
		subject, err := s.gate.Subject(k, value)
		if err != nil {
			s.renderError(w, r, http.StatusBadRequest, fmt.Sprintf("%q is not a valid %s: %v", value, k, err))
			return
		}
		v := subjectView{Info: kindInfoOf(k), Kind: k, Value: subject, Checks: s.gate.Checks(k), Durations: durationChoices,
			Self: subjectHref(k, subject)}
		ctx := r.Context()
		for _, sk := range sameSubject(k) {
			bs, err := s.gate.Blocked(ctx, sk, 0)
			if err != nil {
				s.renderError(w, r, http.StatusServiceUnavailable, "Redis is unavailable: "+err.Error())
				return
			}
			for _, b := range bs {
				if b.Subject != subject {
					continue
				}
				e := entry(b, s.now())
				if sk == k {
					v.Blocked = &e
				} else {
					v.Also = append(v.Also, blockedRow{Kind: sk, BlockedEntry: e, Href: subjectHref(sk, subject)})
				}
			}
		}
		cfg := s.gate.Config()
		q := url.Values{}
		switch {
		case slices.Contains(ipKinds, k) || k == gate.KindSprayNet:
			q.Set("ip", subject)
			if p, err := gate.ParsePrefix(subject); err == nil {
				v.Shared, _ = s.gate.SharedList(p.Addr())
			}
		case slices.Contains(userKinds, k):
			q.Set("username", subject)
		case k == gate.KindPair:
			v.IP, v.Username, _ = strings.Cut(subject, "|")
			q.Set("ip", v.IP)
			q.Set("username", v.Username)
		}
		v.MoreHref = "/attempts?" + q.Encode()
		q.Set("limit", "25")
		f, err := parseFilter(q, &cfg, s.now())
		if err == nil {
			v.Attempts, _, err = s.hist.Attempts(ctx, f)
		}
		if err == nil {
			v.Blocks, err = s.hist.Blocks(ctx, k, subject, 50)
		}
		if err != nil {
			s.log.Error("history query failed", "err", err)
			v.HistError = "History is unavailable: " + err.Error()
		}
		// No menu entry is this page: it is neither the Blocked list nor
		// the Attempts, though it shows some of each.
		s.render(w, r, http.StatusOK, "subject", page{Title: string(k) + " " + subject, Data: v})
	}
}

// search sends the header's search box to an IP or username page.
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	k := gate.KindUsername
	if _, err := parseIPFilter(q); err == nil {
		k = gate.KindIP
	}
	http.Redirect(w, r, subjectHref(k, q), http.StatusSeeOther)
}

// deadLetters reads the notifier's dead letters; an error says why none
// can be shown.
func (s *Server) deadLetters(ctx context.Context) ([]webhook.DeadLetter, error) {
	if s.dead == nil {
		return nil, errors.New("the admin has no NATS (DEFENDER_NATS_URL), where the notifier keeps them")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.dead(ctx)
}

// pageNotifier lists the notifier's webhook calls given up on.
func (s *Server) pageNotifier(w http.ResponseWriter, r *http.Request) {
	dls, err := s.deadLetters(r.Context())
	p := page{Title: "Notifier", Nav: "notifier", Data: dls}
	if err != nil {
		p.Error = err.Error()
	}
	s.render(w, r, http.StatusOK, "notifier", p)
}
