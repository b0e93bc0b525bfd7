package main

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/record"
)

// FuzzParseFilter: the attempt filters of a query string (the API, the
// attempts page and the CLI share them) never panic; a refusal is a
// client error; what is accepted is within bounds.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"username=alice&ip=2001:db8::/64&result=failure&since=1h&until=2024-05-01&limit=10",
		"ip=::ffff:1.2.3.4/120&since=7d", "since=99999999999999999&until=-1", "limit=0", "cursor=%%", "result=ANY",
		"username=%FF%00&ip=[::1]:80", "since=36500d", "since=2562047h"} {
		f.Add(s)
	}
	cfg := gate.DefaultConfig()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := parseFilter(q, &cfg, now)
		if err != nil {
			require.True(t, errors.Is(err, ErrBadFilter), "%v", err)
			return
		}
		require.True(t, flt.Limit >= 0 && flt.Limit <= maxLimit)
		if flt.IP.IsValid() {
			require.Equal(t, flt.IP.Masked(), flt.IP)
			require.False(t, flt.IP.Addr().Is4In6())
		}
		if !flt.After.IsZero() {
			c, err := record.ParseCursor(flt.After.String())
			require.NoError(t, err)
			require.Equal(t, flt.After, c)
		}
		for _, v := range q["since"] {
			if d, err := parseDuration(v); err == nil {
				require.Positive(t, d)
			}
		}
	})
}
