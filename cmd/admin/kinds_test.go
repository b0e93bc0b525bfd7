package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// TestKindInfosCoverEveryKind: the admin has one way to show each
// gate.Kind, in gate.Kinds' order, and its array in GET /api/v1/blocked is
// named by kindInfo.Key.
func TestKindInfosCoverEveryKind(t *testing.T) {
	require.Len(t, kindInfos, len(gate.Kinds))
	keys := map[string]bool{}
	for i, k := range gate.Kinds {
		ki := kindInfos[i]
		assert.Equal(t, k, ki.Kind)
		assert.False(t, keys[ki.Key], "key %s twice", ki.Key)
		keys[ki.Key] = true
		assert.NotEmpty(t, ki.Title, k)
		assert.NotEmpty(t, ki.Column, k)
		assert.NotEmpty(t, ki.Short, k)
		assert.Regexp(t, `^#[0-9a-f]{6}$`, ki.Color, k)
		assert.Equal(t, k == gate.KindSprayShared, ki.Report, "only spray_shared is a report")

		var list BlockedList
		l := list.of(k)
		require.NotNil(t, l, k)
		*l = []BlockedEntry{{Value: "x"}}
		data, err := json.Marshal(list)
		require.NoError(t, err)
		var raw map[string][]BlockedEntry
		require.NoError(t, json.Unmarshal(data, &raw))
		assert.Len(t, raw[ki.Key], 1, "kind %s is listed under %q", k, ki.Key)

		for _, s := range []string{string(k), ki.Key, strings.ToUpper(ki.Key)} {
			got, err := parseKind(s)
			require.NoError(t, err, s)
			assert.Equal(t, k, got, s)
		}
		assert.Regexp(t, `[ ,]`+regexp.QuoteMeta(string(k))+`(,|\s)`, usage, "admin help names every kind")
	}
	_, err := parseKind("asn")
	assert.ErrorContains(t, err, "username_familiar")
}

// newKindSubjects blocks one subject of each kind the gate blocks by
// itself (never by hand), as a gate's counting would, and returns them
// canonical.
func newKindSubjects(e *env) map[gate.Kind]string {
	subjects := map[gate.Kind]string{
		gate.KindSpray:            "203.0.113.50",
		gate.KindSprayNet:         "2001:db8:77::/48",
		gate.KindSprayShared:      "100.64.0.9",
		gate.KindUsernameFamiliar: "dave",
	}
	e.storeBlock(gate.KindSpray, subjects[gate.KindSpray], time.Hour)
	e.storeBlock(gate.KindSprayNet, subjects[gate.KindSprayNet], 0)
	e.storeBlock(gate.KindSprayShared, subjects[gate.KindSprayShared], 30*time.Minute)
	e.storeBlock(gate.KindUsernameFamiliar, subjects[gate.KindUsernameFamiliar], 10*time.Minute)
	return subjects
}

// TestEveryKindListedAndUnblocked: the API lists the gate's new kinds
// (spray, spray_net, spray_shared, username_familiar) each in its own
// array beside ips, usernames and pairs, marks spray_shared's entries as
// reports, and lifts each through DELETE /api/v1/blocked/<kind>/<value>,
// whatever the spelling, publishing the unblock event on its subject.
func TestEveryKindListedAndUnblocked(t *testing.T) {
	e := newEnv(t, envOpts{})
	unblocks := e.subscribe("dt.unblock.>")
	e.block(gate.KindIP, "203.0.113.7", time.Hour)
	subjects := newKindSubjects(e)

	resp, body := e.do("GET", "/api/v1/blocked", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var raw map[string][]map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	for _, key := range []string{"ips", "usernames", "pairs", "sprays", "spray_nets", "spray_shared", "usernames_familiar"} {
		assert.Contains(t, raw, key)
	}
	list := decode[BlockedList](t, body)
	assert.Equal(t, []string{"203.0.113.7"}, values(list.IPs), "the ip block stays where outside checks look")
	assert.Equal(t, []string{"203.0.113.50"}, values(list.Sprays))
	assert.Equal(t, []string{"2001:db8:77::/48"}, values(list.SprayNets))
	assert.True(t, list.SprayNets[0].Permanent)
	assert.Equal(t, []string{"100.64.0.9"}, values(list.SprayShared))
	assert.True(t, list.SprayShared[0].Report, "a shared address's spraying is a report")
	assert.Equal(t, true, raw["spray_shared"][0]["report"])
	assert.NotContains(t, raw["sprays"][0], "report", "a real block is no report")
	assert.Equal(t, []string{"dave"}, values(list.UsernamesFamiliar))
	assert.InDelta(t, 600, list.UsernamesFamiliar[0].RetryAfter, 5)

	tests := []struct {
		kind gate.Kind
		path string // kind (or key) and value as sent
	}{
		{gate.KindSpray, "spray/203.0.113.50"},
		{gate.KindSprayNet, "spray_nets/" + url.PathEscape("2001:db8:77:0:0::/48")},
		{gate.KindSprayShared, "spray_shared/::ffff:100.64.0.9"},
		{gate.KindUsernameFamiliar, "usernames_familiar/DAVE"},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			resp, body := e.do("DELETE", "/api/v1/blocked/"+tc.path, nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, UnblockResult{Kind: tc.kind, Value: subjects[tc.kind], Unblocked: true}, decode[UnblockResult](t, body))
			assert.NotContains(t, e.blocked(tc.kind), subjects[tc.kind])
			ev := next(t, unblocks)
			assert.Equal(t, string(tc.kind), ev.Kind)
			assert.Equal(t, subjects[tc.kind], ev.Subject)
			assert.Equal(t, "admin", ev.Reason)
			assert.False(t, ev.Observe)
		})
	}
	_, body = e.do("GET", "/api/v1/blocked", nil, nil)
	list = decode[BlockedList](t, body)
	assert.Empty(t, list.Sprays)
	assert.Empty(t, list.SprayNets)
	assert.Empty(t, list.SprayShared)
	assert.Empty(t, list.UsernamesFamiliar)
	assert.Len(t, list.IPs, 1)

	for _, bad := range []string{"spray_net/2001:db8::1", "spray_net/10.0.0.0%2F8", "spray/not-an-ip", "username_familiar/%20"} {
		resp, body := e.do("DELETE", "/api/v1/blocked/"+bad, nil, nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
		assert.NotEmpty(t, decode[apiError](t, body).Error, bad)
	}
	// A block by hand takes the kinds the gate checks (gate.Checks): a
	// spraying source while spraying is counted, never a shared address's
	// report, a familiar block only with smart lockout on.
	jsonHdr := http.Header{"Content-Type": {"application/json"}}
	resp, body = e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"sprays","value":"192.0.2.1","duration":"1h"}`), jsonHdr)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Equal(t, gate.KindSpray, decode[BlockResult](t, body).Kind)
	assert.Contains(t, e.blocked(gate.KindSpray), "192.0.2.1")
	for kind, why := range map[string]string{"spray_shared": "reported, never enforced", "username_familiar": "DEFENDER_SMART_LOCKOUT"} {
		resp, body = e.do("POST", "/api/v1/blocked", strings.NewReader(`{"kind":"`+kind+`","value":"100.64.0.1","duration":"1h"}`), jsonHdr)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, decode[apiError](t, body).Error, why, kind)
	}
}

// TestBlockedPageEveryKind: the Blocked page has a table per kind, the
// reports labelled as such with a Clear button; a report's button clears
// it, with a notice that says so.
func TestBlockedPageEveryKind(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	subjects := newKindSubjects(e)
	resp, body := e.do("GET", "/blocked", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, ki := range kindInfos {
		assert.Contains(t, body, `<tbody data-kind="`+string(ki.Kind)+`">`)
		assert.Contains(t, body, `data-key="`+ki.Key+`"`)
		assert.Contains(t, body, ki.Title)
	}
	for k, v := range subjects {
		assert.Contains(t, body, `data-value="`+v+`"`, k)
	}
	assert.Contains(t, body, `aria-label="Clear report spray_shared 100.64.0.9"`)
	assert.Contains(t, body, `aria-label="Unblock spray 203.0.113.50"`)
	assert.Equal(t, 1, strings.Count(body, `class="badge report"`), "the one report, and only it, is labelled")

	form := url.Values{"csrf": {e.srv.csrf}, "kind": {"spray_shared"}, "value": {"100.64.0.9"}}
	resp, _ = e.do("POST", "/blocked/unblock", strings.NewReader(form.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {e.http.URL}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	loc := resp.Header.Get("Location")
	_, body = e.do("GET", loc, nil, nil)
	assert.Contains(t, body, "Cleared the report of spray_shared 100.64.0.9.")
	assert.Empty(t, e.blocked(gate.KindSprayShared))
}

// TestSubjectPagesOfEveryKind: each kind has its page; an address's page
// says what else its address is blocked as, a user's page its familiar
// block; the block history marks observe mode's would-be blocks and never
// shows them as blocks.
func TestSubjectPagesOfEveryKind(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	subjects := newKindSubjects(e)
	e.block(gate.KindUsername, "dave", time.Hour)
	now := time.Now().UTC()
	e.insertBlockOf(now.Add(-3*time.Minute), "spray", "203.0.113.50", true, now.Add(time.Hour), 11, false)
	e.insertBlockOf(now.Add(-2*time.Minute), "spray", "203.0.113.50", true, now.Add(time.Hour), 12, true)
	e.insertBlockOf(now.Add(-time.Minute), "spray", "203.0.113.50", false, time.Unix(0, 0), 0, true)
	e.insertAttempts([]attempt{
		{ts: now.Add(-time.Minute), ip: "203.0.113.50", user: "erin", result: "blocked", observe: true},
		{ts: now.Add(-time.Minute), ip: "2001:db8:77:5::1", user: "frank", result: "failure"},
	})

	for k, v := range subjects {
		resp, body := e.do("GET", subjectHref(k, v), nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s", k, body)
		assert.Contains(t, body, `<span class="subject" id="subject">`+v+`</span>`, k)
		assert.NotContains(t, body, `action="/blocked/block"`, "%s: blocked, so no block form", k)
		assert.Contains(t, body, `name="kind" value="`+string(k)+`"`, "%s: the unblock form", k)
	}

	_, body := e.do("GET", "/spray/203.0.113.50", nil, nil)
	assert.Contains(t, body, "would block")
	assert.Contains(t, body, "would unblock")
	assert.Equal(t, 1, strings.Count(body, `<span class="badge blocked">block</span>`), "one real block; the would-be ones are not blocks")
	assert.Contains(t, body, `<span class="badge would-block"`, "the observe attempt would have been refused")

	_, body = e.do("GET", "/spray_shared/100.64.0.9", nil, nil)
	assert.Contains(t, body, "refuses nobody")
	assert.Contains(t, body, "Clear report")

	_, body = e.do("GET", "/username/dave", nil, nil)
	assert.Regexp(t, `also <span class="badge blocked">blocked</span>\s+as <a href="/username_familiar/dave">`, body)

	_, body = e.do("GET", "/ip/203.0.113.50", nil, nil)
	assert.Regexp(t, `also <span class="badge blocked">blocked</span>\s+as <a href="/spray/203.0.113.50">`, body)
	assert.Contains(t, body, "would unblock", "an address's page shows its spraying blocks too (only the blocks history has an unblock)")

	_, body = e.do("GET", "/spray_net/"+url.PathEscape("2001:db8:77::/48"), nil, nil)
	assert.Contains(t, body, "frank", "a network's page lists its addresses' attempts")

	resp, _ := e.do("GET", "/spray_net/192.0.2.0%2F24", nil, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// TestAttemptMarks: the attempts API, pages and CLI carry observe, shared
// and familiar, and observe= filters.
func TestAttemptMarks(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC().Truncate(time.Second)
	e.insertAttempts([]attempt{
		{ts: now.Add(-3 * time.Minute), ip: "100.64.0.9", user: "gina", result: "blocked", observe: true, shared: "cgnat"},
		{ts: now.Add(-2 * time.Minute), ip: "192.0.2.4", user: "gina", result: "failure", familiar: true},
		{ts: now.Add(-time.Minute), ip: "192.0.2.5", user: "gina", result: "success"},
	})
	get := func(q string) []AttemptRow {
		t.Helper()
		resp, body := e.do("GET", "/api/v1/attempts?"+q, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return decode[AttemptPage](t, body).Attempts
	}
	all := get("username=gina")
	require.Len(t, all, 3)
	assert.Equal(t, AttemptRow{ID: all[2].ID, Time: now.Add(-3 * time.Minute), IP: "100.64.0.9", Username: "gina", Result: "blocked",
		BlockedBy: []string{}, Observe: true, Shared: "cgnat"}, all[2])
	assert.True(t, all[1].Familiar)
	assert.False(t, all[0].Observe || all[0].Familiar || all[0].Shared != "")
	_, body := e.do("GET", "/api/v1/attempts?username=gina&limit=1", nil, nil)
	assert.Contains(t, body, `"observe":false,"shared":"","familiar":false`, "the marks are always there")

	for q, n := range map[string]int{"observe=true": 1, "observe=false": 2, "observe=1": 1, "observe=any": 3, "observe=true&result=blocked": 1, "observe=false&result=blocked": 0} {
		assert.Len(t, get("username=gina&"+q), n, q)
	}
	resp, body := e.do("GET", "/api/v1/attempts?observe=maybe", nil, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, decode[apiError](t, body).Error, "observe")

	_, body = e.do("GET", "/attempts?username=gina", nil, nil)
	assert.Contains(t, body, `<span class="badge would-block"`)
	assert.Contains(t, body, `<span class="mark observe"`)
	assert.Contains(t, body, `<span class="mark shared" title="shared address list cgnat: never blocked whole">cgnat</span>`)
	assert.Contains(t, body, `<span class="mark familiar"`)
	_, body = e.do("GET", "/attempts?username=gina&observe=true", nil, nil)
	assert.Equal(t, 1, strings.Count(body, "<tr data-id="))
	assert.Contains(t, body, `<option value="true" selected>`)

	code, out, errOut := runCLI(t, e.lookup, "attempts", "--username", "gina")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `PATH\s+MARKS$`, lines[0])
	assert.Regexp(t, `success\s+192\.0\.2\.5\s+gina\s+-$`, lines[1])
	assert.Regexp(t, `failure\s+192\.0\.2\.4\s+gina\s+familiar$`, lines[2])
	assert.Regexp(t, `blocked\s+100\.64\.0\.9\s+gina\s+observe,shared=cgnat$`, lines[3])
	code, out, errOut = runCLI(t, e.lookup, "attempts", "--username", "gina", "--observe", "true")
	require.Equal(t, 0, code, errOut)
	assert.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2, out)
}

// TestStatsEveryKind: the chart of new blocks has a series per kind, real
// blocks only (observe=true: the would-be ones); the attempts chart and
// the totals keep what observe mode would have refused apart from what was
// refused.
func TestStatsEveryKind(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC()
	for i, k := range gate.Kinds {
		e.insertBlockOf(now.Add(-time.Duration(i+1)*time.Minute), string(k), "s", true, now.Add(time.Hour), 4, false)
	}
	e.insertBlockOf(now.Add(-time.Minute), "spray", "t", true, now.Add(time.Hour), 4, true)
	e.insertBlockOf(now.Add(-time.Minute), "spray", "t", false, time.Unix(0, 0), 0, false)
	e.insertAttempts([]attempt{
		{ts: now.Add(-time.Minute), ip: "192.0.2.1", user: "a", result: "blocked"},
		{ts: now.Add(-time.Minute), ip: "192.0.2.1", user: "a", result: "blocked", observe: true},
		{ts: now.Add(-time.Minute), ip: "192.0.2.1", user: "a", result: "failure", observe: true},
	})
	sum := func(v []int) (n int) {
		for _, x := range v {
			n += x
		}
		return n
	}
	_, body := e.do("GET", "/api/v1/stats/blocks?window=1h", nil, nil)
	s := decode[Series](t, body)
	require.Len(t, s.Series, len(gate.Kinds))
	for _, k := range gate.Kinds {
		assert.Equal(t, 1, sum(s.Series[string(k)]), k)
	}
	_, body = e.do("GET", "/api/v1/stats/blocks?window=1h&observe=true", nil, nil)
	s = decode[Series](t, body)
	assert.Equal(t, 1, sum(s.Series["spray"]))
	assert.Zero(t, sum(s.Series["ip"]))
	resp, _ := e.do("GET", "/api/v1/stats/blocks?observe=perhaps", nil, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	_, body = e.do("GET", "/api/v1/stats/attempts?window=1h", nil, nil)
	s = decode[Series](t, body)
	assert.Equal(t, 1, sum(s.Series["blocked"]))
	assert.Equal(t, 1, sum(s.Series[wouldBlock]))
	assert.Equal(t, 1, sum(s.Series["failure"]))

	resp, body = e.do("GET", "/?window=1h", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Regexp(t, `Refused \(blocked\)</span><span class="num">1<`, body)
	assert.Regexp(t, `Would refuse \(observe mode\)</span><span class="num">1<`, body)
	assert.Contains(t, body, "spray_net:#", "the chart has a colour for every kind")
}

// TestCLIEveryKind: admin blocked lists every kind, reports noted; admin
// unblock lifts each, by kind or key.
func TestCLIEveryKind(t *testing.T) {
	e := newEnv(t, envOpts{})
	unblocks := e.subscribe("dt.unblock.>")
	subjects := newKindSubjects(e)

	code, out, errOut := runCLI(t, e.lookup, "blocked")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, regexp.MustCompile(`(?m)^KIND\s+VALUE\s+UNTIL\s+LEFT\s+NOTE$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^spray\s+203\.0\.113\.50\s+\S+Z\s+(59m \d+s|1h 0m)\s+-$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^spray_net\s+2001:db8:77::/48\s+permanent\s+-\s+-$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^spray_shared\s+100\.64\.0\.9\s+\S+Z\s+\d+m \d+s\s+report: refuses nobody$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^username_familiar\s+dave\s+\S+Z`), out)
	assert.Contains(t, out, "3 blocked, 1 reported")

	code, out, _ = runCLI(t, e.lookup, "blocked", "--json")
	require.Equal(t, 0, code)
	list := decode[BlockedList](t, out)
	assert.Equal(t, []string{"2001:db8:77::/48"}, values(list.SprayNets))

	for _, args := range [][]string{
		{"spray", "203.0.113.50"}, {"spray_nets", "2001:db8:77::/48"}, {"spray_shared", "100.64.0.9"}, {"username_familiar", "Dave"},
	} {
		code, out, errOut := runCLI(t, e.lookup, append([]string{"unblock"}, args...)...)
		require.Equal(t, 0, code, errOut)
		k, err := parseKind(args[0])
		require.NoError(t, err)
		if k == gate.KindSprayShared {
			assert.Equal(t, "cleared the report of spray_shared 100.64.0.9\n", out)
		} else {
			assert.Equal(t, "unblocked "+string(k)+" "+subjects[k]+"\n", out)
		}
		ev := next(t, unblocks)
		assert.Equal(t, string(k), ev.Kind)
		assert.Equal(t, subjects[k], ev.Subject)
	}
	code, out, _ = runCLI(t, e.lookup, "blocked")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "0 blocked\n")
}

// TestLiveShowsEveryKindNeverObserve: the live view passes on blocks of
// every kind, and none of observe mode's would-be blocks, which are
// published on subjects of their own.
func TestLiveShowsEveryKindNeverObserve(t *testing.T) {
	e := newEnv(t, envOpts{})
	frames, cancel := e.live.subscribe()
	defer cancel()
	publish := func(tr gate.TransitionRecord) {
		t.Helper()
		b := events.NewBlock(tr, "gate-x")
		data, err := b.Encode()
		require.NoError(t, err)
		require.NoError(t, e.deps.nc.Publish(b.NATSSubject(e.subjPfx), data))
	}
	now := time.Now()
	for _, k := range gate.Kinds {
		publish(gate.TransitionRecord{Time: now, Kind: k, Subject: "observed-" + string(k), Blocked: true,
			Until: now.Add(time.Hour), Reason: gate.ReasonAuto, Observe: true})
		publish(gate.TransitionRecord{Time: now, Kind: k, Subject: "real-" + string(k), Blocked: true,
			Until: now.Add(time.Hour), Reason: gate.ReasonAuto})
	}
	require.NoError(t, e.deps.nc.Flush())
	// One connection published them in order: every observe event came
	// before the last real one.
	var got []LiveEvent
	for len(got) < len(gate.Kinds) {
		select {
		case f := <-frames:
			data, ok := strings.CutPrefix(string(f), "event: block\ndata: ")
			require.True(t, ok, "%q", f)
			var ev LiveEvent
			require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(data)), &ev))
			got = append(got, ev)
		case <-time.After(30 * time.Second):
			t.Fatalf("live events: %d of %d", len(got), len(gate.Kinds))
		}
	}
	for i, k := range gate.Kinds {
		assert.Equal(t, string(k), got[i].Kind)
		assert.Equal(t, "real-"+string(k), got[i].Value)
	}
	select {
	case f := <-frames:
		t.Fatalf("an observe event reached the live view: %s", f)
	default:
	}
}

// TestObserveModeAdmin: an admin configured as its gates in observe mode
// says the blocks it lists refuse nobody, and its live view follows the
// would-be blocks, which are what the gates' store holds, marked observe.
func TestObserveModeAdmin(t *testing.T) {
	e := newEnv(t, envOpts{observe: true})
	_, body := e.do("GET", "/blocked", nil, nil)
	assert.Contains(t, body, `id="observe-mode"`)
	code, out, errOut := runCLI(t, e.lookup, "blocked")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "observe mode (DEFENDER_MODE=observe): the gates refuse nobody")

	frames, cancel := e.live.subscribe()
	defer cancel()
	now := time.Now()
	b := events.NewBlock(gate.TransitionRecord{Time: now, Kind: gate.KindSpray, Subject: "203.0.113.90", Blocked: true,
		Until: now.Add(time.Hour), Reason: gate.ReasonAuto, Observe: true}, "gate-x")
	data, err := b.Encode()
	require.NoError(t, err)
	require.NoError(t, e.deps.nc.Publish(b.NATSSubject(e.subjPfx), data))
	select {
	case f := <-frames:
		assert.Contains(t, string(f), "event: block\n")
		assert.Contains(t, string(f), `"value":"203.0.113.90"`)
		assert.Contains(t, string(f), `"observe":true`)
	case <-time.After(30 * time.Second):
		t.Fatal("no live event")
	}

	// In enforce mode neither the note nor the would-be blocks.
	e2 := newEnv(t, envOpts{noNATS: true})
	_, body = e2.do("GET", "/blocked", nil, nil)
	assert.NotContains(t, body, `id="observe-mode"`)
}

// An IP's page says which shared egress list the address is on, as the
// gates look it up: carrier-grade NAT by default.
func TestIPPageNamesItsSharedList(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	_, body := e.do("GET", "/ip/100.64.1.2", nil, nil)
	assert.Contains(t, body, `id="shared"`)
	assert.Contains(t, body, "<strong>cgnat</strong>")
	_, body = e.do("GET", "/spray_shared/100.64.1.2", nil, nil)
	assert.Contains(t, body, "<strong>cgnat</strong>")
	_, body = e.do("GET", "/ip/203.0.113.9", nil, nil)
	assert.NotContains(t, body, `id="shared"`, "an ordinary address is on no list")
}
