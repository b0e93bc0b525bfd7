package webhook_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify/webhook"
)

func TestParseEndpoints(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []webhook.Endpoint
		err  string // a part of the error; "" when it parses
	}{
		{
			name: "one bare URL is json",
			in:   "https://a.example/hook",
			want: []webhook.Endpoint{{URL: "https://a.example/hook", Format: webhook.FormatJSON}},
		},
		{
			name: "formats and spaces",
			in:   " https://a.example/hook , slack=https://hooks.slack.com/services/X ,json=http://b.example:8080/in?k=v",
			want: []webhook.Endpoint{
				{URL: "https://a.example/hook", Format: webhook.FormatJSON},
				{URL: "https://hooks.slack.com/services/X", Format: webhook.FormatSlack},
				{URL: "http://b.example:8080/in?k=v", Format: webhook.FormatJSON},
			},
		},
		{
			name: "a query's = is not a format",
			in:   "https://a.example/hook?token=abc",
			want: []webhook.Endpoint{{URL: "https://a.example/hook?token=abc", Format: webhook.FormatJSON}},
		},
		{
			name: "format names in any case",
			in:   "SLACK=https://hooks.slack.com/services/X,Json=https://a.example/",
			want: []webhook.Endpoint{
				{URL: "https://hooks.slack.com/services/X", Format: webhook.FormatSlack},
				{URL: "https://a.example/", Format: webhook.FormatJSON},
			},
		},
		{name: "empty", in: "", err: "none given"},
		{name: "blank", in: "  ", err: "none given"},
		{name: "empty entry", in: "https://a.example/x,,https://b.example/y", err: "endpoint 2 of 3: empty"},
		{name: "trailing comma", in: "https://a.example/x,", err: "endpoint 2 of 2: empty"},
		{name: "ftp", in: "ftp://files.example/up", err: `endpoint 1 of 1: ftp://files.example/…: scheme "ftp" is not http or https`},
		{name: "no scheme", in: "hooks.slack.com/services/SECRET", err: "endpoint 1 of 1: URL has no scheme"},
		{name: "missing host", in: "https:///hook", err: "https:///…: URL has no host"},
		{name: "port without host", in: "https://:443/hook", err: "URL has no host"},
		{name: "format without URL", in: "slack=", err: "endpoint 1 of 1: no URL"},
		{name: "unknown format", in: "teams=https://a.example/x", err: `unknown format "teams" (want json or slack)`},
		{name: "bad URL", in: "https://a.example/%zz", err: "endpoint 1 of 1: not a valid URL"},
		{name: "duplicate", in: "https://a.example/x,slack=https://a.example/x", err: "endpoint 2 of 2: same URL as endpoint 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := webhook.ParseEndpoints(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.NotContains(t, err.Error(), "SECRET", "the error quotes a URL's path")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseEndpoints(f *testing.F) {
	for _, s := range []string{
		"https://a.example/hook", "slack=https://hooks.slack.com/services/X,json=http://b:1/",
		"ftp://x/y", "https:///x", "=,=", "slack=slack=https://a/", "https://u:p@a.example/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := webhook.ParseEndpoints(s)
		if err != nil {
			return
		}
		require.NotEmpty(t, eps)
		for _, e := range eps {
			u, err := url.Parse(e.URL)
			require.NoError(t, err)
			assert.Contains(t, []string{"http", "https"}, u.Scheme)
			assert.NotEmpty(t, u.Hostname())
			assert.Contains(t, []webhook.Format{webhook.FormatJSON, webhook.FormatSlack}, e.Format)
			assert.False(t, strings.Contains(e.URL, ","), "a URL holds the list's separator")
		}
	})
}
