package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/record"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name  string
		url   string
		addrs []string
		bad   bool
	}{
		{name: "default", url: "clickhouse://127.0.0.1:9000/defender", addrs: []string{"127.0.0.1:9000"}},
		{name: "no database", url: "clickhouse://ch:9000", addrs: []string{"ch:9000"}},
		{name: "several hosts", url: "clickhouse://a:9000,b:9000/defender", addrs: []string{"a:9000", "b:9000"}},
		{name: "user and options", url: "clickhouse://u:p@ch:9000/defender?dial_timeout=2s", addrs: []string{"ch:9000"}},
		{name: "http", url: "http://ch:8123/defender", bad: true},
		{name: "other database", url: "clickhouse://ch:9000/history", bad: true},
		{name: "no host", url: "clickhouse:///defender", bad: true},
		{name: "garbage", url: "::", bad: true},
		{name: "garbage with a password", url: "clickhouse://bob:s3cret@[ch:9000/defender", bad: true},
		{name: "bad escape in the password", url: "clickhouse://bob:s3cr%zz@ch:9000/defender", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := record.ParseURL(tc.url)
			if tc.bad {
				require.ErrorIs(t, err, record.ErrBadURL)
				assert.NotContains(t, err.Error(), "s3cr", "no password in the message")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.addrs, o.Addr)
			assert.Equal(t, "default", o.Auth.Database, "connects to default so Migrate can create defender")
		})
	}
}

func TestCursor(t *testing.T) {
	c := record.Cursor{Time: time.UnixMilli(1700000000123).UTC(), ID: "0190a1b2-0000-7000-8000-000000000001"}
	got, err := record.ParseCursor(c.String())
	require.NoError(t, err)
	assert.Equal(t, c, got)

	zero, err := record.ParseCursor("")
	require.NoError(t, err)
	assert.True(t, zero.IsZero())
	for _, bad := range []string{"x", "123", "123_nope", "_0190a1b2-0000-7000-8000-000000000001",
		"1700000000000_{00000000-0000-0000-0000-000000000000}", "1700000000000_urn:uuid:00000000-0000-0000-0000-000000000000",
		"1700000000000_00000000000000000000000000000000"} {
		_, err := record.ParseCursor(bad)
		assert.ErrorIs(t, err, record.ErrBadCursor, bad)
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add("1700000000123_0190a1b2-0000-7000-8000-000000000001")
	f.Add("")
	f.Add("-1_x")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := record.ParseCursor(s)
		if err != nil {
			return
		}
		again, err := record.ParseCursor(c.String())
		require.NoError(t, err)
		assert.Equal(t, c.Time.UnixMilli(), again.Time.UnixMilli())
	})
}
