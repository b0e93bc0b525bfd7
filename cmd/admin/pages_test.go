package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// hiddenTables lists the kinds whose table the Blocked page renders hidden.
func hiddenTables(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`<section class="card[^"]*" data-kind="([a-z_]+)"[^>]*>`).FindAllStringSubmatch(body, -1) {
		if strings.HasSuffix(m[0], " hidden>") {
			out = append(out, m[1])
		}
	}
	return out
}

// formKinds lists the "Block by hand" form's kinds with their examples.
func formKinds(body string) map[string]string {
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`<option value="([a-z_]+)" data-example="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestBlockedPageShowsTheKindsThatBlock: an empty table of a kind this
// configuration never blocks (pairs outside combo mode) is hidden, shown
// once it has a block; the "Block by hand" form offers the kinds the gates
// check, each with an example value of its own as placeholder.
func TestBlockedPageShowsTheKindsThatBlock(t *testing.T) {
	tests := []struct {
		name   string
		vars   map[string]string
		hidden []string
		form   []string
	}{
		{"default", nil, []string{"pair", "username_familiar"}, []string{"ip", "username", "spray", "spray_net"}},
		{"combo mode", map[string]string{"DEFENDER_LOCK_OUT_BY_IP_AND_USERNAME": "true"},
			[]string{"ip", "username", "username_familiar"}, []string{"pair", "spray", "spray_net"}},
		{"smart lockout, no spraying", map[string]string{"DEFENDER_SMART_LOCKOUT": "true", "DEFENDER_SPRAY_LIMIT": "0"},
			[]string{"pair", "spray", "spray_net", "spray_shared"}, []string{"ip", "username", "username_familiar"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{noNATS: true, vars: tc.vars})
			resp, body := e.do("GET", "/blocked", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.ElementsMatch(t, tc.hidden, hiddenTables(t, body))
			kinds := formKinds(body)
			assert.ElementsMatch(t, tc.form, keysOf(kinds))
			for k, example := range kinds {
				assert.Equal(t, kindInfoOf(gate.Kind(k)).Example, example)
				assert.NotEmpty(t, example, k)
			}
			first := regexp.MustCompile(`<option value="([a-z_]+)"`).FindStringSubmatch(body)
			require.NotNil(t, first)
			assert.Contains(t, body, `id="block-value" required placeholder="`+kindInfoOf(gate.Kind(first[1])).Example+`"`,
				"the placeholder is the first kind's example")
		})
	}

	// A pair blocked all the same (by a gate in combo mode) shows its table.
	e := newEnv(t, envOpts{noNATS: true})
	e.block(gate.KindPair, "203.0.113.7|alice", time.Hour)
	_, body := e.do("GET", "/blocked", nil, nil)
	assert.NotContains(t, hiddenTables(t, body), "pair")
	assert.Contains(t, body, "203.0.113.7|alice")
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestMenuHighlightsItsPage: each page of the menu highlights its entry;
// a subject's page, none.
func TestMenuHighlightsItsPage(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	active := regexp.MustCompile(`<a href="([^"]*)" class="active" aria-current="page">`)
	tests := []struct{ path, want string }{
		{"/", "/"}, {"/blocked", "/blocked"}, {"/attempts", "/attempts"}, {"/notifier", "/notifier"},
		{"/username/alice", ""}, {"/ip/203.0.113.7", ""}, {"/pair/203.0.113.7%7Calice", ""},
	}
	for _, tc := range tests {
		resp, body := e.do("GET", tc.path, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, tc.path)
		var got []string
		for _, m := range active.FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		if tc.want == "" {
			assert.Empty(t, got, "%s highlights no menu entry", tc.path)
		} else {
			assert.Equal(t, []string{tc.want}, got, tc.path)
		}
	}
}

// TestDotUsernamesHaveTheirPage: the usernames "." and "..", which a
// path would resolve away, open their own page from every link to them:
// the Blocked list, the attempts, the search box.
func TestDotUsernamesHaveTheirPage(t *testing.T) {
	e := newEnv(t, envOpts{noNATS: true})
	now := time.Now().UTC()
	for _, u := range []string{".", ".."} {
		e.block(gate.KindUsername, u, time.Hour)
		e.insertAttempts([]attempt{{ts: now, ip: "203.0.113.7", user: u, result: "failure", path: "/login"}})
	}
	_, blocked := e.do("GET", "/blocked", nil, nil)
	_, attempts := e.do("GET", "/attempts", nil, nil)
	for _, u := range []string{".", ".."} {
		href := subjectHref(gate.KindUsername, u)
		assert.NotContains(t, href, "/"+u+"/", "no dot segment")
		assert.False(t, strings.HasSuffix(href, "/"+u), "no dot segment")
		assert.Contains(t, blocked, `href="`+href+`"`, "the Blocked list links %q's page", u)
		assert.Contains(t, attempts, `href="`+href+`"`, "the attempts link %q's page", u)

		resp, body := e.do("GET", href, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, href)
		assert.Contains(t, body, `<span class="subject" id="subject">`+u+`</span>`)
		assert.Contains(t, body, `badge blocked`, "%q's page shows its block", u)

		resp, _ = e.do("GET", "/search?q="+u, nil, nil)
		assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
		assert.Equal(t, href, resp.Header.Get("Location"))
	}
	// Other values keep their path.
	assert.Equal(t, "/username/alice", subjectHref(gate.KindUsername, "alice"))
	assert.Equal(t, "/username/...", subjectHref(gate.KindUsername, "..."))
	assert.Equal(t, "/ip/2001:db8::%2F64", subjectHref(gate.KindIP, "2001:db8::/64"))
}
