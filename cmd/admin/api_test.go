package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	return v
}

func values(es []BlockedEntry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Value)
	}
	return out
}

func TestBlockedListing(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	before := time.Now()
	e.block(gate.KindIP, "203.0.113.7", time.Hour)
	e.block(gate.KindIP, "2001:db8::1", 0)
	e.block(gate.KindUsername, "Alice", 10*time.Minute)
	e.block(gate.KindPair, "198.51.100.1|bob", 5*time.Minute)

	resp, body := e.do("GET", "/api/v1/blocked", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, resp.Header.Get("Content-Type"), "application/json")
	list := decode[BlockedList](t, body)
	require.Len(t, list.IPs, 2)
	require.Len(t, list.Usernames, 1)
	require.Len(t, list.Pairs, 1)

	// Permanent first, then by time left.
	assert.Equal(t, "2001:db8::/64", list.IPs[0].Value)
	assert.True(t, list.IPs[0].Permanent)
	assert.Nil(t, list.IPs[0].Until)
	assert.Zero(t, list.IPs[0].RetryAfter)

	ip := list.IPs[1]
	assert.Equal(t, "203.0.113.7", ip.Value)
	assert.False(t, ip.Permanent)
	require.NotNil(t, ip.Until)
	assert.WithinRange(t, *ip.Until, before.Add(time.Hour-2*time.Second), time.Now().Add(time.Hour+time.Second))
	assert.InDelta(t, 3600, ip.RetryAfter, 5)

	assert.Equal(t, "alice", list.Usernames[0].Value, "usernames are listed normalised")
	assert.Equal(t, "198.51.100.1|bob", list.Pairs[0].Value)
	assert.Equal(t, "198.51.100.1", list.Pairs[0].IP)
	assert.Equal(t, "bob", list.Pairs[0].Username)

	// The wire form: until is RFC 3339 or null.
	var raw map[string][]map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	assert.Nil(t, raw["ips"][0]["until"])
	_, err := time.Parse(time.RFC3339, raw["ips"][1]["until"].(string))
	assert.NoError(t, err)

	// Empty lists are [], not null.
	e2 := newEnv(t, envOpts{noNATS: true})
	_, body = e2.do("GET", "/api/v1/blocked", nil, nil)
	assert.JSONEq(t, `{"ips":[],"usernames":[],"pairs":[],"sprays":[],"spray_nets":[],"spray_shared":[],"usernames_familiar":[]}`, body)
}

func TestUnblockAnyValue(t *testing.T) {
	e := newEnv(t, envOpts{})
	events := e.subscribe("dt.unblock.>")
	tests := []struct {
		name  string
		kind  gate.Kind
		block string // as blocked
		path  string // as sent in the DELETE path
		want  string // canonical subject
	}{
		{"ipv6 address", gate.KindIP, "2001:db8::1", "2001:db8::1", "2001:db8::/64"},
		{"ipv6 network raw", gate.KindIP, "2001:db8:1::7", "2001:db8:1::/64", "2001:db8:1::/64"},
		{"ipv6 network escaped", gate.KindIP, "2001:db8:2::7", url.PathEscape("2001:db8:2::/64"), "2001:db8:2::/64"},
		{"ipv4", gate.KindIP, "192.0.2.9", "192.0.2.9", "192.0.2.9"},
		{"ipv4-mapped", gate.KindIP, "192.0.2.10", "::ffff:192.0.2.10", "192.0.2.10"},
		{"plus raw", gate.KindUsername, "a+b", "a+b", "a+b"},
		{"slash raw", gate.KindUsername, "dept/alice", "dept/alice", "dept/alice"},
		{"slash escaped", gate.KindUsername, "x/y", url.PathEscape("x/y"), "x/y"},
		{"dot dot escaped", gate.KindUsername, "../etc", url.PathEscape("../etc"), "../etc"},
		{"percent", gate.KindUsername, "100%", url.PathEscape("100%"), "100%"},
		{"space", gate.KindUsername, "john smith", url.PathEscape("john smith"), "john smith"},
		{"query chars", gate.KindUsername, "a?b#c", url.PathEscape("a?b#c"), "a?b#c"},
		{"cyrillic", gate.KindUsername, "Иван", url.PathEscape("Иван"), "иван"},
		{"html", gate.KindUsername, "<script>alert(1)</script>", url.PathEscape("<script>alert(1)</script>"), "<script>alert(1)</script>"},
		{"pair", gate.KindPair, "2001:db8::5|bob/x", url.PathEscape("2001:db8::5|bob/x"), "2001:db8::/64|bob/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.block(tc.kind, tc.block, time.Hour)
			require.Contains(t, e.blocked(tc.kind), tc.want)

			resp, body := e.do("DELETE", "/api/v1/blocked/"+string(tc.kind)+"/"+tc.path, nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			res := decode[UnblockResult](t, body)
			assert.Equal(t, UnblockResult{Kind: tc.kind, Value: tc.want, Unblocked: true}, res)
			assert.NotContains(t, e.blocked(tc.kind), tc.want)

			ev := next(t, events)
			assert.Equal(t, "unblock", string(ev.Type))
			assert.Equal(t, string(tc.kind), ev.Kind)
			assert.Equal(t, tc.want, ev.Subject)
			assert.Equal(t, "admin", ev.Reason)

			// Again: nothing to lift, still 200, and no second event.
			resp, body = e.do("DELETE", "/api/v1/blocked/"+string(tc.kind)+"/"+tc.path, nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.False(t, decode[UnblockResult](t, body).Unblocked)
		})
	}
	select {
	case m := <-events:
		t.Fatalf("unexpected event %s", m.Data)
	default:
	}
}

func TestUnblockBadInput(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	for _, path := range []string{
		"/api/v1/blocked/ip/not-an-ip",
		"/api/v1/blocked/ip/",
		"/api/v1/blocked/username/",
		"/api/v1/blocked/username/%20%20",
		"/api/v1/blocked/pair/no-bar",
		"/api/v1/blocked/country/fr",
	} {
		resp, body := e.do("DELETE", path, nil, nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
		assert.NotEmpty(t, decode[apiError](t, body).Error, path)
	}
}

func TestBlockAPI(t *testing.T) {
	e := newEnv(t, envOpts{})
	blocks := e.subscribe("dt.block.>")
	jsonHdr := http.Header{"Content-Type": {"application/json"}}

	resp, body := e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"ip","value":"2001:db8:9::1","duration":"2h"}`), jsonHdr)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	res := decode[BlockResult](t, body)
	assert.Equal(t, gate.KindIP, res.Kind)
	assert.Equal(t, "2001:db8:9::/64", res.Value)
	assert.InDelta(t, 7200, res.RetryAfter, 2)
	ev := next(t, blocks)
	assert.Equal(t, "block", string(ev.Type))
	assert.Equal(t, "2001:db8:9::/64", ev.Subject)
	assert.Equal(t, "admin", ev.Reason)
	require.NotNil(t, ev.Until)

	resp, body = e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"username","value":"Mallory","permanent":true}`), jsonHdr)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.True(t, decode[BlockResult](t, body).Permanent)
	ev = next(t, blocks)
	assert.True(t, ev.Permanent)
	assert.Nil(t, ev.Until)

	resp, body = e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"username","value":"eve","duration":90}`), jsonHdr)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.InDelta(t, 90, decode[BlockResult](t, body).RetryAfter, 2)

	_, body = e.do("GET", "/api/v1/blocked", nil, nil)
	list := decode[BlockedList](t, body)
	assert.Equal(t, []string{"2001:db8:9::/64"}, values(list.IPs))
	assert.Equal(t, []string{"mallory", "eve"}, values(list.Usernames))

	for _, bad := range []string{
		`{"kind":"ip","value":"300.1.1.1","duration":"1h"}`,
		`{"kind":"host","value":"x","duration":"1h"}`,
		`{"kind":"ip","value":"192.0.2.1","duration":"soon"}`,
		`{"kind":"ip","value":"192.0.2.1","duration":-5}`,
		`{"kind":"ip","value":"192.0.2.1","extra":1}`,
		`not json`,
	} {
		resp, body := e.do("POST", "/api/v1/blocked", strings.NewReader(bad), jsonHdr)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
		assert.NotEmpty(t, decode[apiError](t, body).Error, bad)
	}

	// A pair, which this configuration (not combo mode) never checks, is
	// refused with the reason: listed, it would refuse nobody.
	resp, body = e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"pair","value":"192.0.2.9|bob","duration":"1h"}`), jsonHdr)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	assert.Contains(t, decode[apiError](t, body).Error, "DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME")
	assert.Empty(t, e.blocked(gate.KindPair))
}

func TestAttemptsAPI(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	base := time.Now().UTC().Truncate(time.Second).Add(-30 * time.Minute)
	var rows []attempt
	// 30 attempts, three per second, so that paging must break ties by id.
	for i := 0; i < 30; i++ {
		r := attempt{ts: base.Add(time.Duration(i/3) * time.Second), ip: "203.0.113.7", user: "alice", result: "failure", path: "/login"}
		switch i % 3 {
		case 1:
			r.ip, r.user, r.result = "2001:db8::1", "bob", "success"
		case 2:
			r.ip, r.user, r.result, r.blockedBy = "2001:db8:0:0:1::2", "Иван", "blocked", []string{"ip", "username"}
		}
		rows = append(rows, r)
	}
	rows = append(rows, attempt{ts: base.Add(-2 * time.Hour), ip: "198.51.100.1", user: "<script>alert(1)</script>", result: "failure"})
	e.insertAttempts(rows)
	// A redelivered event stored twice shows once.
	dup := attempt{id: uuid.Must(uuid.NewV7()), ts: base.Add(-3 * time.Hour), ip: "192.0.2.1", user: "dup", result: "failure"}
	e.insertAttempts([]attempt{dup})
	e.insertAttempts([]attempt{dup})

	get := func(q string) AttemptPage {
		t.Helper()
		resp, body := e.do("GET", "/api/v1/attempts?"+q, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return decode[AttemptPage](t, body)
	}

	all := get("limit=1000")
	require.Len(t, all.Attempts, 32)
	assert.Nil(t, all.Next)
	for i := 1; i < len(all.Attempts); i++ {
		a, b := all.Attempts[i-1], all.Attempts[i]
		assert.False(t, a.Time.Before(b.Time), "newest first at %d", i)
	}

	for _, a := range all.Attempts {
		if a.Result == "blocked" {
			assert.Equal(t, []string{"ip", "username"}, a.BlockedBy, "which counters refused it")
		} else {
			assert.Equal(t, []string{}, a.BlockedBy)
		}
	}
	resp, body := e.do("GET", "/attempts?result=blocked", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 10, strings.Count(body, `<span class="mark blocked-by" title="the counters that refused it">by ip, username</span>`),
		"the attempts table says which side refused")

	page := get("")
	assert.Len(t, page.Attempts, 32, "default limit is 100")

	assert.Len(t, get("username=alice").Attempts, 10)
	assert.Len(t, get("username=ALICE").Attempts, 10, "the normalised form matches")
	assert.Len(t, get("username="+url.QueryEscape("Иван")).Attempts, 10)
	assert.Len(t, get("username="+url.QueryEscape("<script>alert(1)</script>")).Attempts, 1)
	assert.Len(t, get("ip=203.0.113.7").Attempts, 10)
	assert.Len(t, get("ip=2001:db8::1").Attempts, 10)
	assert.Len(t, get("ip="+url.QueryEscape("2001:db8::/64")).Attempts, 20, "a network matches its addresses")
	assert.Len(t, get("ip="+url.QueryEscape("203.0.113.0/24")).Attempts, 10)
	assert.Len(t, get("result=blocked").Attempts, 10)
	assert.Len(t, get("result=failure&ip=203.0.113.7").Attempts, 10)
	assert.Len(t, get("result=success&username=alice").Attempts, 0)
	assert.Len(t, get("since=1h").Attempts, 30)
	assert.Len(t, get("since="+base.Add(5*time.Second).Format(time.RFC3339)).Attempts, 15)
	assert.Len(t, get("until="+base.Add(5*time.Second).Format(time.RFC3339)+"&since=2h").Attempts, 15)
	assert.Len(t, get("until="+url.QueryEscape(base.Format(time.RFC3339))).Attempts, 2)
	assert.Len(t, get("username=dup").Attempts, 1, "duplicates of one event id are hidden")

	// Keyset paging: pages of 4 cover everything once, in order.
	var seen []string
	q := "limit=4"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20)
		p := get(q)
		assert.LessOrEqual(t, len(p.Attempts), 4)
		for _, a := range p.Attempts {
			seen = append(seen, a.ID)
		}
		if p.Next == nil {
			break
		}
		q = "limit=4&cursor=" + url.QueryEscape(*p.Next)
	}
	var want []string
	for _, a := range all.Attempts {
		want = append(want, a.ID)
	}
	assert.Equal(t, want, seen)

	// Paging with a filter keeps the filter.
	p := get("result=success&limit=7")
	require.NotNil(t, p.Next)
	p2 := get("result=success&limit=7&cursor=" + url.QueryEscape(*p.Next))
	assert.Len(t, p2.Attempts, 3)
	for _, a := range append(p.Attempts, p2.Attempts...) {
		assert.Equal(t, "success", a.Result)
	}

	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "result=maybe", "ip=300.1.2.3", "ip=" + url.QueryEscape("1.2.3.4/40"),
		"since=yesterday", "until=-1h", "cursor=" + url.QueryEscape("!!!"), "cursor=abc"} {
		resp, body := e.do("GET", "/api/v1/attempts?"+bad, nil, nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
		assert.NotEmpty(t, decode[apiError](t, body).Error, bad)
	}
}

func TestStatsAPI(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC()
	e.insertAttempts([]attempt{
		{ts: now.Add(-2 * time.Minute), ip: "203.0.113.7", user: "alice", result: "failure"},
		{ts: now.Add(-2 * time.Minute), ip: "203.0.113.7", user: "alice", result: "failure"},
		{ts: now.Add(-1 * time.Minute), ip: "203.0.113.7", user: "alice", result: "blocked"},
		{ts: now.Add(-1 * time.Minute), ip: "198.51.100.1", user: "bob", result: "failure"},
		{ts: now.Add(-1 * time.Minute), ip: "198.51.100.1", user: "bob", result: "success"},
		{ts: now.Add(-3 * time.Hour), ip: "192.0.2.1", user: "old", result: "failure"},
	})
	e.insertBlock(now.Add(-90*time.Second), "ip", "203.0.113.7", true, now.Add(time.Hour), 4)
	e.insertBlock(now.Add(-30*time.Second), "ip", "203.0.113.7", false, time.Unix(0, 0), 0)

	_, body := e.do("GET", "/api/v1/stats/attempts?window=15m", nil, nil)
	s := decode[Series](t, body)
	assert.Equal(t, 60, s.Step)
	assert.Len(t, s.Buckets, 15)
	sum := func(v []int) (n int) {
		for _, x := range v {
			n += x
		}
		return n
	}
	assert.Equal(t, 3, sum(s.Series["failure"]))
	assert.Equal(t, 1, sum(s.Series["blocked"]))
	assert.Equal(t, 1, sum(s.Series["success"]))

	_, body = e.do("GET", "/api/v1/stats/attempts?window=24h", nil, nil)
	assert.Equal(t, 4, sum(decode[Series](t, body).Series["failure"]))

	_, body = e.do("GET", "/api/v1/stats/blocks?window=1h", nil, nil)
	bs := decode[Series](t, body)
	assert.Equal(t, 1, sum(bs.Series["ip"]), "unblocks are not counted")

	_, body = e.do("GET", "/api/v1/stats/top?by=ip&window=1h", nil, nil)
	top := decode[TopList](t, body)
	require.Len(t, top.Items, 2)
	assert.Equal(t, record.TopEntry{Value: "203.0.113.7", Failures: 2, Blocked: 1}, top.Items[0])
	assert.Equal(t, record.TopEntry{Value: "198.51.100.1", Failures: 1}, top.Items[1])

	_, body = e.do("GET", "/api/v1/stats/top?by=username&window=7d&limit=1", nil, nil)
	assert.Equal(t, []record.TopEntry{{Value: "alice", Failures: 2, Blocked: 1}}, decode[TopList](t, body).Items)

	for _, bad := range []string{"/api/v1/stats/attempts?window=2y", "/api/v1/stats/top?by=country", "/api/v1/stats/top?limit=0"} {
		resp, _ := e.do("GET", bad, nil, nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
	}
}

func TestAttemptsLookBack(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC()
	ages := []time.Duration{10 * time.Minute, 3 * time.Hour, 3 * 24 * time.Hour, 20 * 24 * time.Hour, 60 * 24 * time.Hour}
	var rows []attempt
	for _, age := range ages {
		rows = append(rows, attempt{ts: now.Add(-age), ip: "192.0.2.1", user: "old", result: "failure"})
	}
	e.insertAttempts(rows)

	get := func(q string) AttemptPage {
		t.Helper()
		resp, body := e.do("GET", "/api/v1/attempts?"+q, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return decode[AttemptPage](t, body)
	}
	all := get("limit=10")
	require.Len(t, all.Attempts, len(ages))
	assert.Nil(t, all.Next)

	// One row a page: every window of the look-back is crossed.
	q, n := "limit=1", 0
	for ; ; n++ {
		require.Less(t, n, 10)
		p := get(q)
		require.Len(t, p.Attempts, 1)
		assert.Equal(t, all.Attempts[n].ID, p.Attempts[0].ID)
		if p.Next == nil {
			break
		}
		q = "limit=1&cursor=" + url.QueryEscape(*p.Next)
	}
	assert.Equal(t, len(ages)-1, n, "the last page has no next cursor")

	assert.Len(t, get("since=30d").Attempts, 4)
	assert.Len(t, get("until=2h").Attempts, 4)
	assert.Len(t, get("until=2h&since=10d").Attempts, 2)
}

// since is inclusive and until exclusive to the millisecond the API shows:
// a client paging back with until=<time of the oldest row seen> must not
// lose the rows earlier in that second, and since=<a row's time> must not
// bring back the rows before it in that second.
func TestAttemptsTimeBoundsToTheMillisecond(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	base := time.Now().UTC().Truncate(time.Second).Add(-30 * time.Minute)
	var rows []attempt
	for _, ms := range []int{100, 400, 700, 1000} {
		rows = append(rows, attempt{ts: base.Add(time.Duration(ms) * time.Millisecond), ip: "192.0.2.9", user: "ms", result: "failure"})
	}
	e.insertAttempts(rows)

	times := func(q string) []time.Time {
		t.Helper()
		resp, body := e.do("GET", "/api/v1/attempts?username=ms&"+q, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		var out []time.Time
		for _, a := range decode[AttemptPage](t, body).Attempts {
			out = append(out, a.Time)
		}
		return out
	}
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	rfc := func(ms int) string { return url.QueryEscape(at(ms).Format(time.RFC3339Nano)) }

	assert.Equal(t, []time.Time{at(1000), at(700), at(400)}, times("since="+rfc(400)), "since is inclusive, to the ms")
	assert.Equal(t, []time.Time{at(100)}, times("until="+rfc(400)), "until is exclusive, to the ms")
	assert.Equal(t, []time.Time{at(400)}, times("since="+rfc(400)+"&until="+rfc(700)))
	assert.Equal(t, []time.Time{at(700), at(400), at(100)}, times("until="+rfc(1000)), "a whole second")
	// Paging back by until (the time of the oldest row of the previous
	// page) loses nothing.
	var seen []time.Time
	q := "limit=1"
	for range 5 {
		page := times(q)
		if len(page) == 0 {
			break
		}
		seen = append(seen, page...)
		q = "limit=1&until=" + url.QueryEscape(page[len(page)-1].Format(time.RFC3339Nano))
	}
	assert.Equal(t, []time.Time{at(1000), at(700), at(400), at(100)}, seen)
}

// Bounds outside ClickHouse's DateTime (1970 to 2106) select as if
// unbounded on that side: toDateTime wraps such values round, which made
// since=36500d (the longest look-back accepted) or until=2110-01-01 list
// nothing.
func TestAttemptsTimeBoundsOutsideDateTime(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC()
	e.insertAttempts([]attempt{
		{ts: now.Add(-time.Minute), ip: "192.0.2.9", user: "far", result: "failure"},
		{ts: now.Add(-40 * 24 * time.Hour), ip: "192.0.2.9", user: "far", result: "failure"},
	})
	count := func(q string) int {
		t.Helper()
		resp, body := e.do("GET", "/api/v1/attempts?username=far&"+q, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return len(decode[AttemptPage](t, body).Attempts)
	}
	for _, q := range []string{"since=36500d", "since=1960-01-01", "until=2110-01-01", "until=9999-12-31T23:59:59Z",
		"since=1960-01-01&until=2110-01-01", "since=36500d&cursor=" + url.QueryEscape(record.Cursor{Time: now, ID: uuid.NewString()}.String())} {
		assert.Equal(t, 2, count(q), q)
	}
	for _, q := range []string{"since=2110-01-01", "until=1960-01-01"} {
		assert.Zero(t, count(q), q)
	}
}
