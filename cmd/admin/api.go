package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/notify/webhook"
	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

// BlockedEntry is one blocked subject as the API shows it.
type BlockedEntry struct {
	Value string `json:"value"`
	// Until is when the block ends; nil when permanent.
	Until     *time.Time `json:"until"`
	Permanent bool       `json:"permanent"`
	// RetryAfter is the number of seconds left (rounded up); 0 when permanent.
	RetryAfter int `json:"retry_after"`
	// IP and Username are the parts of a pair.
	IP       string `json:"ip,omitempty"`
	Username string `json:"username,omitempty"`
	// Report is true for a kind whose block refuses nobody (spray_shared:
	// spraying reported from a shared address).
	Report bool `json:"report,omitempty"`
}

// BlockedList is the answer of GET /api/v1/blocked: one array per kind
// (kindInfo.Key), every one present, [] when empty.
type BlockedList struct {
	IPs               []BlockedEntry `json:"ips"`
	Usernames         []BlockedEntry `json:"usernames"`
	Pairs             []BlockedEntry `json:"pairs"`
	Sprays            []BlockedEntry `json:"sprays"`
	SprayNets         []BlockedEntry `json:"spray_nets"`
	SprayShared       []BlockedEntry `json:"spray_shared"`
	UsernamesFamiliar []BlockedEntry `json:"usernames_familiar"`
}

// of is the array of kind k (nil for a kind that is none of gate.Kinds).
func (l *BlockedList) of(k gate.Kind) *[]BlockedEntry {
	switch k {
	case gate.KindIP:
		return &l.IPs
	case gate.KindUsername:
		return &l.Usernames
	case gate.KindPair:
		return &l.Pairs
	case gate.KindSpray:
		return &l.Sprays
	case gate.KindSprayNet:
		return &l.SprayNets
	case gate.KindSprayShared:
		return &l.SprayShared
	case gate.KindUsernameFamiliar:
		return &l.UsernamesFamiliar
	}
	return nil
}

// entry turns a store state into an API entry as of now.
func entry(b gate.BlockState, now time.Time) BlockedEntry {
	e := BlockedEntry{Value: b.Subject, Permanent: b.Permanent, Report: kindInfoOf(b.Kind).Report}
	if !b.Permanent {
		u := now.Add(b.TTL).UTC().Truncate(time.Second)
		e.Until = &u
		e.RetryAfter = int(math.Ceil(b.TTL.Seconds()))
	}
	if b.Kind == gate.KindPair {
		e.IP, e.Username, _ = strings.Cut(b.Subject, "|")
	}
	return e
}

// listBlocked reads every blocked subject of every kind (at most limit
// each; <= 0: all), the permanent ones and those ending last first.
func listBlocked(ctx context.Context, g *gate.Gate, limit int, now time.Time) (BlockedList, error) {
	var out BlockedList
	for _, k := range gate.Kinds {
		bs, err := g.Blocked(ctx, k, limit)
		if err != nil {
			return out, err
		}
		es := make([]BlockedEntry, 0, len(bs))
		for _, b := range bs {
			es = append(es, entry(b, now))
		}
		slices.SortFunc(es, func(a, b BlockedEntry) int {
			if a.Permanent != b.Permanent {
				if a.Permanent {
					return -1
				}
				return 1
			}
			return cmp.Or(cmp.Compare(b.RetryAfter, a.RetryAfter), strings.Compare(a.Value, b.Value))
		})
		*out.of(k) = es // every gate.Kind has its array (TestKindInfosCoverEveryKind)
	}
	return out, nil
}

// apiBlocked is GET /api/v1/blocked[?limit=N].
func (s *Server) apiBlocked(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not a positive integer", v))
			return
		}
		limit = n
	}
	list, err := listBlocked(r.Context(), s.gate, limit, s.now())
	if err != nil {
		s.log.Error("list blocked", "err", err)
		writeError(w, http.StatusServiceUnavailable, "blocked state unavailable: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// UnblockResult is the answer of DELETE /api/v1/blocked/{kind}/{value}.
type UnblockResult struct {
	Kind  gate.Kind `json:"kind"`
	Value string    `json:"value"` // the canonical subject
	// Unblocked is true when a block existed and was lifted (failures are
	// forgotten either way).
	Unblocked bool `json:"unblocked"`
}

// unblockSubject lifts a block through the gate, which publishes the
// unblock event. The CLI and the server share it.
func unblockSubject(ctx context.Context, g *gate.Gate, kind, value string) (UnblockResult, error) {
	k, err := parseKind(kind)
	if err != nil {
		return UnblockResult{}, badInput(err)
	}
	subject, err := g.Subject(k, value)
	if err != nil {
		return UnblockResult{}, badInput(err)
	}
	ok, err := g.Unblock(ctx, k, subject)
	if err != nil {
		return UnblockResult{}, err
	}
	return UnblockResult{Kind: k, Value: subject, Unblocked: ok}, nil
}

// unblock is unblockSubject, counted and logged.
func (s *Server) unblock(ctx context.Context, kind, value string) (UnblockResult, error) {
	res, err := unblockSubject(ctx, s.gate, kind, value)
	if err != nil {
		return res, err
	}
	s.actions.WithLabelValues("unblock", string(res.Kind)).Inc()
	s.log.Info("admin unblock", "kind", string(res.Kind), "subject", res.Value, "was_blocked", res.Unblocked)
	return res, nil
}

// apiUnblock is DELETE /api/v1/blocked/{kind}/{value...}. The value is the
// rest of the path, URL-decoded: "2001:db8::/64" and "a/b" need no escaping
// of their slashes, though escaping them (%2F) works too.
func (s *Server) apiUnblock(w http.ResponseWriter, r *http.Request) {
	res, err := s.unblock(r.Context(), r.PathValue("kind"), r.PathValue("value"))
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// BlockRequest is the body of POST /api/v1/blocked.
type BlockRequest struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Duration is a Go duration ("90m"), days ("7d") or a number of
	// seconds; absent: the first lockout cool-off of the configuration.
	Duration json.RawMessage `json:"duration,omitempty"`
	// Permanent blocks until an admin unblocks.
	Permanent bool `json:"permanent"`
}

// BlockResult is the answer of POST /api/v1/blocked.
type BlockResult struct {
	Kind gate.Kind `json:"kind"`
	BlockedEntry
}

// blockSubject blocks by hand through the gate, which publishes the block
// event; d is ignored when permanent. The CLI and the server share it.
func blockSubject(ctx context.Context, g *gate.Gate, kind, value string, d time.Duration, permanent bool, now time.Time) (BlockResult, error) {
	k, err := parseKind(kind)
	if err != nil {
		return BlockResult{}, badInput(err)
	}
	subject, err := g.Subject(k, value)
	if err != nil {
		return BlockResult{}, badInput(err)
	}
	if permanent {
		d = 0
	} else if d <= 0 {
		return BlockResult{}, badInput(errors.New("duration must be positive (or permanent)"))
	}
	if err := g.Block(ctx, k, subject, d); err != nil {
		if errors.Is(err, gate.ErrNotChecked) {
			return BlockResult{}, badInput(err)
		}
		return BlockResult{}, err
	}
	return BlockResult{Kind: k, BlockedEntry: entry(gate.BlockState{Kind: k, Subject: subject, TTL: d, Permanent: d == 0}, now)}, nil
}

// block is blockSubject, counted and logged.
func (s *Server) block(ctx context.Context, kind, value string, d time.Duration, permanent bool) (BlockResult, error) {
	res, err := blockSubject(ctx, s.gate, kind, value, d, permanent, s.now())
	if err != nil {
		return res, err
	}
	s.actions.WithLabelValues("block", string(res.Kind)).Inc()
	s.log.Info("admin block", "kind", string(res.Kind), "subject", res.Value, "permanent", res.Permanent, "until", res.Until)
	return res, nil
}

// apiBlock is POST /api/v1/blocked with a JSON BlockRequest.
func (s *Server) apiBlock(w http.ResponseWriter, r *http.Request) {
	var req BlockRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body is not a JSON block request: "+err.Error())
		return
	}
	d, err := s.requestDuration(req.Duration)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.block(r.Context(), req.Kind, req.Value, d, req.Permanent)
	if err != nil {
		s.apiFail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// requestDuration reads BlockRequest.Duration.
func (s *Server) requestDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return s.gate.Config().LockoutCooloffs[0], nil
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err == nil {
		if secs <= 0 || secs > maxDuration.Seconds() {
			return 0, fmt.Errorf("duration %v seconds is out of range", secs)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return 0, fmt.Errorf("duration must be a string like \"1h\" or a number of seconds")
	}
	return parseDuration(str)
}

// maxDuration bounds a block's duration and a look-back (100 years).
const maxDuration = 36500 * envflag.Day

// parseDuration reads a block's duration or a look-back with the settings'
// grammar (envflag.ParseDuration: "90m", "7d", or seconds), positive and
// at most maxDuration.
func parseDuration(s string) (time.Duration, error) {
	d, err := envflag.ParseDuration(strings.TrimSpace(s), time.Second)
	switch {
	case err != nil:
		return 0, fmt.Errorf("duration %q is not like 90s, 1h30m, 7d or 3600: %w", s, err)
	case d <= 0 || d > maxDuration:
		return 0, fmt.Errorf("duration %q is out of range (more than 0, at most 36500d)", s)
	}
	return d, nil
}

// inputError marks an error caused by the request.
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

func badInput(err error) error { return inputError{err} }

// apiFail answers an error: 400 for bad input, 503 for a store failure.
func (s *Server) apiFail(w http.ResponseWriter, err error) {
	var in inputError
	if errors.As(err, &in) || errors.Is(err, ErrBadFilter) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Error("admin request failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "store unavailable: "+err.Error())
}

// AttemptPage is the answer of GET /api/v1/attempts.
type AttemptPage struct {
	Attempts []AttemptRow `json:"attempts"`
	// Next is the cursor of the next (older) page: pass it back as
	// ?cursor=; null on the last page.
	Next *string `json:"next"`
}

// parseFilter reads attempt filters from a query string (API, pages and CLI
// share it). Times are RFC 3339, unix seconds, or a duration ago ("1h", "7d").
func parseFilter(q url.Values, cfg *gate.Config, now time.Time) (record.AttemptFilter, error) {
	var f record.AttemptFilter
	bad := func(format string, a ...any) (record.AttemptFilter, error) {
		return record.AttemptFilter{}, fmt.Errorf("%w: "+format, append([]any{ErrBadFilter}, a...)...)
	}
	if u := strings.TrimSpace(q.Get("username")); u != "" {
		f.Usernames = []string{u}
		if n := gate.NormalizeUsername(u, cfg.MaxUsernameLength); n != u && n != "" {
			f.Usernames = append(f.Usernames, n)
		}
	}
	if v := strings.TrimSpace(q.Get("ip")); v != "" {
		p, err := parseIPFilter(v)
		if err != nil {
			return bad("ip %q is not an address or network", v)
		}
		f.IP = p
	}
	switch v := strings.ToLower(strings.TrimSpace(q.Get("result"))); v {
	case "", "any", "all":
	case "success", "failure", "blocked":
		f.Result = v
	default:
		return bad("result %q (want success, failure or blocked)", v)
	}
	var err error
	if f.Observe, err = parseObserve(q.Get("observe")); err != nil {
		return record.AttemptFilter{}, err
	}
	if f.Since, err = parseTime(q.Get("since"), now); err != nil {
		return bad("since: %v", err)
	}
	if f.Until, err = parseTime(q.Get("until"), now); err != nil {
		return bad("until: %v", err)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return bad("limit %q is out of range 1..%d", v, maxLimit)
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := record.ParseCursor(v)
		if err != nil {
			return record.AttemptFilter{}, err
		}
		f.After = c
	}
	return f, nil
}

// parseObserve reads the observe filter: true (observe mode's rows
// only), false (enforce mode's only), or "" and any (nil: both).
func parseObserve(v string) (*bool, error) {
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case "", "any", "all":
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%w: observe %q (want true or false)", ErrBadFilter, v)
	}
	return &b, nil
}

// parseIPFilter reads an address or a network.
func parseIPFilter(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := gate.ParseIP(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseTime reads RFC 3339, a date, unix seconds or a duration ago.
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0).UTC(), nil
	}
	if d, err := parseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339, unix seconds or a duration ago like 1h", s)
}

// apiAttempts is GET /api/v1/attempts.
func (s *Server) apiAttempts(w http.ResponseWriter, r *http.Request) {
	cfg := s.gate.Config()
	f, err := parseFilter(r.URL.Query(), &cfg, s.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rows, next, err := s.hist.Attempts(r.Context(), f)
	if err != nil {
		s.historyFail(w, err)
		return
	}
	page := AttemptPage{Attempts: rows}
	if next != nil {
		c := next.String()
		page.Next = &c
	}
	writeJSON(w, http.StatusOK, page)
}

// historyFail answers a ClickHouse error.
func (s *Server) historyFail(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrBadFilter) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Error("history query failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "history unavailable: "+err.Error())
}

// apiStatsAttempts is GET /api/v1/stats/attempts?window=1h: attempts per
// bucket by result.
func (s *Server) apiStatsAttempts(w http.ResponseWriter, r *http.Request) {
	win, err := ParseWindow(r.URL.Query().Get("window"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	series, err := s.hist.AttemptSeries(r.Context(), win, s.now())
	if err != nil {
		s.historyFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, series)
}

// apiStatsBlocks is GET /api/v1/stats/blocks?window=1h[&observe=true]: new
// blocks per bucket by kind; with observe=true, observe mode's would-be
// blocks instead.
func (s *Server) apiStatsBlocks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	win, err := ParseWindow(q.Get("window"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	observe, err := parseObserve(q.Get("observe"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	series, err := s.hist.BlockSeries(r.Context(), win, s.now(), observe != nil && *observe)
	if err != nil {
		s.historyFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, series)
}

// TopList is the answer of GET /api/v1/stats/top.
type TopList struct {
	By     string            `json:"by"`
	Window string            `json:"window"`
	Items  []record.TopEntry `json:"items"`
}

// apiStatsTop is GET /api/v1/stats/top?by=ip|username&window=1h&limit=10.
func (s *Server) apiStatsTop(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	win, err := ParseWindow(q.Get("window"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is out of range 1..100", v))
			return
		}
	}
	by := cmp.Or(q.Get("by"), "ip")
	items, err := s.hist.Top(r.Context(), by, win.Span, limit)
	if err != nil {
		s.historyFail(w, err)
		return
	}
	if items == nil {
		items = []record.TopEntry{}
	}
	writeJSON(w, http.StatusOK, TopList{By: by, Window: win.Name, Items: items})
}

// apiDeadLetters answers the notifier's webhook calls given up on, oldest
// first.
func (s *Server) apiDeadLetters(w http.ResponseWriter, r *http.Request) {
	dls, err := s.deadLetters(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if dls == nil {
		dls = []webhook.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": dls})
}
