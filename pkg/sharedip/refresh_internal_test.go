package sharedip

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDue(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name  string
		src   source
		every time.Duration
		want  time.Duration // after at; -1: never
	}{
		{"built-in", source{builtin: cgnat4}, day, -1},
		{"URL never fetched", source{url: "u"}, day, 0},
		{"URL never fetched, refresh 0", source{url: "u"}, 0, 0},
		{"loaded", source{url: "u", checked: at}, day, day},
		{"loaded, refresh 0", source{url: "u", checked: at}, 0, -1},
		{"file", source{file: "f", checked: at}, time.Hour, time.Hour},
		{"failed once", source{url: "u", checked: at, failures: 1}, day, time.Minute},
		{"failed twice", source{url: "u", checked: at, failures: 2}, day, 2 * time.Minute},
		{"failed 6 times", source{url: "u", checked: at, failures: 6}, day, 32 * time.Minute},
		{"failed 7 times", source{url: "u", checked: at, failures: 7}, day, time.Hour},
		{"failed 100 times", source{url: "u", checked: at, failures: 100}, day, time.Hour},
		{"failed, refresh shorter than the backoff", source{url: "u", checked: at, failures: 5}, 10 * time.Minute, 10 * time.Minute},
		{"failed, refresh 0: retried until it works", source{url: "u", checked: at, failures: 3}, 0, 4 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			due, ok := tc.src.due(tc.every)
			if tc.want < 0 {
				assert.False(t, ok)
				return
			}
			require.True(t, ok)
			if tc.src.checked.IsZero() {
				assert.True(t, due.IsZero(), "at once")
				return
			}
			assert.Equal(t, at.Add(tc.want), due)
		})
	}
}

var cgnat4 = []netip.Prefix{cgnat}

// A list loaded from a cache written a moment ago is not fetched at
// start: it is due when a fetch would have been.
func TestCacheDefersTheFirstFetch(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.CGNAT = false
	cfg.RelayURL = "http://127.0.0.1:1/unreachable"
	cfg.CacheDir = dir
	written := time.Now().Add(-time.Hour).Truncate(time.Second)
	path := filepath.Join(dir, ListRelay+".cache")
	require.NoError(t, os.WriteFile(path, []byte("172.224.226.0/27,GB,GB-EN,London,\n"), 0o600))
	require.NoError(t, os.Chtimes(path, written, written))
	s, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	due, ok := s.sources[0].due(cfg.Refresh)
	require.True(t, ok)
	assert.Equal(t, written.Add(cfg.Refresh), due)
	next, ok := s.refreshDue(t.Context(), time.Now())
	require.True(t, ok)
	assert.Equal(t, written.Add(cfg.Refresh), next, "nothing fetched")
	assert.Empty(t, s.Lists()[0].LastError)

	cfg.Refresh = 0
	s, err = New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	_, ok = s.sources[0].due(cfg.Refresh)
	assert.False(t, ok, "refresh 0 fetches nothing a cache holds")
}
