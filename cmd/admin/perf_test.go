package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/record"
)

// TestPerf10M fills ClickHouse with ten million attempts over 7 days
// (testdata/perf_fill.sql) and times the admin's API as an administrator
// browses it, each call beside the plainest SQL for the same answer sent
// straight to ClickHouse in the same run: the median of 5 of each, taken
// in turns so that both see the same load. It prints the table
// docs/DESIGN.md quotes; it asserts what each call answers, never its
// time. It takes several minutes and a few GB of disk, so it runs only
// with DEFENDER_PERF_10M=1:
//
//	DEFENDER_PERF_10M=1 go test ./cmd/admin -run TestPerf10M -v -timeout 1h
func TestPerf10M(t *testing.T) {
	if os.Getenv("DEFENDER_PERF_10M") != "1" {
		t.Skip("set DEFENDER_PERF_10M=1 to fill ClickHouse with ten million attempts and time the admin")
	}
	e := newEnv(t, envOpts{noNATS: true})
	ctx := context.Background()
	fill, err := os.ReadFile("testdata/perf_fill.sql")
	require.NoError(t, err)
	start := time.Now()
	for i := 0; i < 10; i++ {
		require.NoError(t, e.ch.Exec(ctx, string(fill)), "fill %d", i)
	}
	var rows uint64
	require.NoError(t, e.ch.QueryRow(ctx, "SELECT count() FROM defender.attempts").Scan(&rows))
	require.EqualValues(t, 10_000_000, rows)
	t.Logf("filled %d attempts in %s", rows, time.Since(start).Round(time.Second))

	// A username and an address of typical activity, and the busiest.
	var user, ip string
	var userRows, ipRows uint64
	require.NoError(t, e.ch.QueryRow(ctx, "SELECT 'user150000', count() FROM defender.attempts WHERE username = 'user150000'").Scan(&user, &userRows))
	require.NoError(t, e.ch.QueryRow(ctx, "SELECT ip, count() AS c FROM defender.attempts WHERE ip IN ('10.7.161.32', '10.7.161.33', '10.7.161.34')"+
		" GROUP BY ip ORDER BY c DESC, ip LIMIT 1").Scan(&ip, &ipRows))
	require.NotZero(t, userRows)
	require.NotZero(t, ipRows)

	week := time.Now().Add(-7 * 24 * time.Hour).Unix()
	first := e.get(t, "/api/v1/attempts?limit=50")
	require.Contains(t, first, `"next":"`)
	next := strings.SplitN(strings.SplitN(first, `"next":"`, 2)[1], `"`, 2)[0]
	c, err := record.ParseCursor(next)
	require.NoError(t, err)
	const cols = "SELECT id, ts, ts_ms, ip, username, toString(result), blocked_by, path, user_agent, observe, shared, familiar FROM defender.attempts"
	const newest = " ORDER BY ts DESC, ts_ms DESC, id DESC LIMIT 50"
	// The top tables as computed, without the admin's minute of keeping
	// them (History.Top): what each refresh costs.
	computeTop := func(by string) func() {
		return func() {
			items, err := record.Top(ctx, e.srv.hist.conn, by, time.Now().Add(-7*24*time.Hour), 10)
			require.NoError(t, err)
			require.NotEmpty(t, items)
		}
	}
	calls := []struct {
		name, path, plain string
		args              []any
		direct            func() // timed instead of the path
	}{
		{"latest 50", "/api/v1/attempts?limit=50", cols + newest, nil, nil},
		{"next page", "/api/v1/attempts?limit=50&cursor=" + url.QueryEscape(next),
			cols + " WHERE (ts, ts_ms, id) < (toDateTime(?), ?, toUUID(?))" + newest, []any{c.Time.Unix(), c.Time.Nanosecond() / 1e6, c.ID}, nil},
		{fmt.Sprintf("one username (%d rows)", userRows), "/api/v1/attempts?limit=50&username=" + user, cols + " WHERE username = ?" + newest, []any{user}, nil},
		{"one username (the busiest)", "/api/v1/attempts?limit=50&username=user0", cols + " WHERE username = 'user0'" + newest, nil, nil},
		{fmt.Sprintf("one IP (%d rows)", ipRows), "/api/v1/attempts?limit=50&ip=" + ip, cols + " WHERE ip = ?" + newest, []any{ip}, nil},
		{"one IP (the busiest)", "/api/v1/attempts?limit=50&ip=10.0.0.0", cols + " WHERE ip = '10.0.0.0'" + newest, nil, nil},
		{"stats, 7 days (the chart)", "/api/v1/stats/attempts?window=7d",
			"SELECT intDiv(toUInt32(ts), 7200) * 7200 AS b, result, count() FROM defender.attempts WHERE ts >= toDateTime(?) GROUP BY b, result", []any{week}, nil},
		{"top IPs, 7 days", "/api/v1/stats/top?by=ip&window=7d",
			"SELECT ip, countIf(result = 'failure') AS f, countIf(result = 'blocked') AS b FROM defender.attempts WHERE ts >= toDateTime(?) AND result != 'success' GROUP BY ip ORDER BY f + b DESC LIMIT 10", []any{week}, nil},
		{"top usernames, 7 days", "/api/v1/stats/top?by=username&window=7d",
			"SELECT username, countIf(result = 'failure') AS f, countIf(result = 'blocked') AS b FROM defender.attempts WHERE ts >= toDateTime(?) AND result != 'success' GROUP BY username ORDER BY f + b DESC LIMIT 10", []any{week}, nil},
		{"top IPs, 7 days, computed (each refresh)", "",
			"SELECT ip, countIf(result = 'failure') AS f, countIf(result = 'blocked') AS b FROM defender.attempts WHERE ts >= toDateTime(?) AND result != 'success' GROUP BY ip ORDER BY f + b DESC LIMIT 10", []any{week}, computeTop("ip")},
		{"top usernames, 7 days, computed (each refresh)", "",
			"SELECT username, countIf(result = 'failure') AS f, countIf(result = 'blocked') AS b FROM defender.attempts WHERE ts >= toDateTime(?) AND result != 'success' GROUP BY username ORDER BY f + b DESC LIMIT 10", []any{week}, computeTop("username")},
		{"dashboard page, 7 days (totals)", "/?window=7d",
			"SELECT result, count() FROM defender.attempts WHERE ts >= toDateTime(?) GROUP BY result", []any{week}, nil},
	}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "admin call\tadmin\tplain SQL\tratio\t")
	for _, c := range calls {
		var admin, plain []time.Duration
		for i := 0; i < 5; i++ {
			t0 := time.Now()
			if c.direct != nil {
				c.direct()
			} else {
				require.NotContains(t, e.get(t, c.path), `"attempts":[]`, c.name)
			}
			admin = append(admin, time.Since(t0))
			t0 = time.Now()
			n := e.plainRows(t, c.plain, c.args...)
			plain = append(plain, time.Since(t0))
			require.NotZero(t, n, c.name)
		}
		a, p := median(admin), median(plain)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t\n", c.name, a.Round(time.Millisecond), p.Round(time.Millisecond), a.Seconds()/p.Seconds())
	}
	require.NoError(t, tw.Flush())
	t.Logf("median of 5, %d attempts:\n%s", rows, out.String())

	// The top tables name the same sources as the plain query.
	for _, by := range []string{"ip", "username"} {
		top := decode[TopList](t, e.get(t, "/api/v1/stats/top?by="+by+"&window=7d"))
		var want, got []string
		rows, err := e.ch.Query(ctx, "SELECT "+by+" FROM defender.attempts WHERE ts >= toDateTime(?) AND result != 'success'"+
			" GROUP BY "+by+" ORDER BY count() DESC, "+by+" LIMIT 10", time.Now().Add(-7*24*time.Hour).Unix())
		require.NoError(t, err)
		for rows.Next() {
			var v string
			require.NoError(t, rows.Scan(&v))
			want = append(want, v)
		}
		require.NoError(t, rows.Err())
		rows.Close()
		for _, it := range top.Items {
			got = append(got, it.Value)
		}
		assert.Equal(t, want, got, "top %s", by)
	}
}

// get is a GET of the admin that must answer 200.
func (e *env) get(t *testing.T, path string) string {
	t.Helper()
	resp, body := e.do("GET", path, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
	return body
}

// plainRows runs q straight on ClickHouse and reads every row.
func (e *env) plainRows(t *testing.T, q string, args ...any) int {
	t.Helper()
	rows, err := e.ch.Query(context.Background(), q, args...)
	require.NoError(t, err, q)
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
