package sharedip_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/sharedip"
)

// answer is what the test server answers next.
type answer struct {
	status  int
	body    string
	headers map[string]string
}

// listServer serves whatever answer it is set to, and remembers the
// requests' conditional headers.
type listServer struct {
	*httptest.Server
	mu       sync.Mutex
	next     answer
	requests int
	ifNone   []string // If-None-Match of each request
	ifSince  []string // If-Modified-Since of each request
}

func newListServer(t *testing.T) *listServer {
	ls := &listServer{}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		a := ls.next
		ls.requests++
		ls.ifNone = append(ls.ifNone, r.Header.Get("If-None-Match"))
		ls.ifSince = append(ls.ifSince, r.Header.Get("If-Modified-Since"))
		ls.mu.Unlock()
		for k, v := range a.headers {
			w.Header().Set(k, v)
		}
		if a.status == 0 {
			a.status = http.StatusOK
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *listServer) serve(a answer) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.next = a
}

func (ls *listServer) count() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.requests
}

func relayFrom(t *testing.T, url string) sharedip.Config {
	t.Helper()
	cfg := sharedip.DefaultConfig()
	cfg.RelayURL = url
	return cfg
}

// A refresh that fails or is refused keeps the list in use, and lookups
// answer from it throughout, while the server serves good, then bad
// lists of every kind, then good again.
func TestRefreshKeepsTheLastGoodList(t *testing.T) {
	srv := newListServer(t)
	var logs logBuffer
	s, err := sharedip.New(relayFrom(t, srv.URL), logs.option())
	require.NoError(t, err)
	_, ok := s.Lookup(addr("172.224.226.1"))
	require.False(t, ok, "nothing before the first fetch")

	// Readers look up all along, as logins would.
	ctx, stop := context.WithCancel(t.Context())
	var readers sync.WaitGroup
	var misses, reads atomic.Int64
	started := make(chan struct{})
	srv.serve(answer{body: relayCSV})
	require.NoError(t, s.Refresh(ctx))
	for range 4 {
		readers.Go(func() {
			started <- struct{}{}
			for ctx.Err() == nil {
				if list, ok := s.Lookup(addr("172.224.226.1")); !ok || list != sharedip.ListRelay {
					misses.Add(1)
				}
				reads.Add(1)
			}
		})
		<-started
	}

	bad := []struct {
		name   string
		answer answer
		result string
		errMsg string
	}{
		{"html", answer{body: "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n<body>Back soon</body></html>\n"}, "refused", "3 of 3 entries are bad"},
		{"slash0", answer{body: relayCSV + "0.0.0.0/0,XX,,,\n"}, "refused", "line 4: \"0.0.0.0/0,XX,,,\": 0.0.0.0/0 is wider than /8"},
		{"500", answer{status: http.StatusInternalServerError, body: "oops"}, "failed", "HTTP status 500 Internal Server Error"},
		{"empty", answer{body: ""}, "refused", "empty, where it held 3 prefixes"},
		{"404", answer{status: http.StatusNotFound}, "failed", "HTTP status 404"},
	}
	for _, b := range bad {
		srv.serve(b.answer)
		err := s.Refresh(ctx)
		require.Error(t, err, b.name)
		assert.Contains(t, err.Error(), b.errMsg, b.name)
		assert.Contains(t, err.Error(), "icloud-relay (DEFENDER_SHARED_RELAY_URL): "+srv.URL+": ", b.name)
		info := s.Lists()[1]
		assert.Equal(t, 3, info.Prefixes, b.name)
		assert.Contains(t, info.LastError, b.errMsg, b.name)
		assert.Equal(t, srv.URL, info.Source)
		assert.True(t, info.Checked.After(info.LoadedAt), b.name)
		list, ok := s.Lookup(addr("2a02:26f7:b3c0:4000::1"))
		assert.True(t, ok, b.name)
		assert.Equal(t, sharedip.ListRelay, list, b.name)
		assert.Contains(t, logs.String(), "the last good one stays in use", b.name)
	}
	stop()
	readers.Wait()
	assert.Zero(t, misses.Load(), "lookups missed the list during refreshes, of %d", reads.Load())
	assert.EqualValues(t, 3, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "refused"))
	assert.EqualValues(t, 2, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "failed"))
	assert.EqualValues(t, 1, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "ok"))
	assert.EqualValues(t, 3, metric(t, s, "defender_shared_prefixes", sharedip.ListRelay))

	srv.serve(answer{body: "104.28.0.0/24,US,US-CA,Los Angeles,\n"})
	before := time.Now()
	require.NoError(t, s.Refresh(t.Context()))
	_, ok = s.Lookup(addr("172.224.226.1"))
	assert.False(t, ok, "the new list replaced the old one")
	list, ok := s.Lookup(addr("104.28.0.1"))
	assert.True(t, ok)
	assert.Equal(t, sharedip.ListRelay, list)
	info := s.Lists()[1]
	assert.Empty(t, info.LastError)
	assert.Equal(t, 1, info.Prefixes)
	assert.False(t, info.LoadedAt.Before(before))
	assert.EqualValues(t, 2, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "ok"))
	assert.EqualValues(t, 1, metric(t, s, "defender_shared_prefixes", sharedip.ListRelay))
	assert.InDelta(t, float64(info.LoadedAt.UnixNano())/1e9, metric(t, s, "defender_shared_last_success_timestamp_seconds", sharedip.ListRelay), 1e-3)
}

// A fetch that cannot reach the server is a failure, and keeps the list.
func TestRefreshUnreachable(t *testing.T) {
	srv := newListServer(t)
	srv.serve(answer{body: torList})
	cfg := sharedip.DefaultConfig()
	cfg.TorURL = srv.URL
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	require.NoError(t, s.Refresh(t.Context()))
	srv.Close()
	require.Error(t, s.Refresh(t.Context()))
	list, _ := s.Lookup(addr("185.220.101.1"))
	assert.Equal(t, sharedip.ListTor, list)
	assert.EqualValues(t, 1, metric(t, s, "defender_shared_refreshes_total", sharedip.ListTor, "failed"))
}

// The validators of the last list accepted make the next fetch
// conditional; a 304 is a success that changes nothing. Those of a
// refused list are not kept, so it is fetched whole next time.
func TestConditionalGet(t *testing.T) {
	srv := newListServer(t)
	s, err := sharedip.New(relayFrom(t, srv.URL), quiet)
	require.NoError(t, err)
	lastMod := "Mon, 01 Jan 2024 00:00:00 GMT"
	srv.serve(answer{body: relayCSV, headers: map[string]string{"ETag": `"v1"`, "Last-Modified": lastMod}})
	require.NoError(t, s.Refresh(t.Context()))
	loadedAt := s.Lists()[1].LoadedAt

	srv.serve(answer{status: http.StatusNotModified})
	require.NoError(t, s.Refresh(t.Context()))
	assert.Equal(t, []string{"", `"v1"`}, srv.ifNone)
	assert.Equal(t, []string{"", lastMod}, srv.ifSince)
	info := s.Lists()[1]
	assert.Equal(t, loadedAt, info.LoadedAt, "not loaded again")
	assert.True(t, info.Checked.After(loadedAt))
	assert.Equal(t, 3, info.Prefixes)
	assert.EqualValues(t, 2, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "ok"))
	assert.Greater(t, metric(t, s, "defender_shared_last_success_timestamp_seconds", sharedip.ListRelay), float64(loadedAt.UnixNano())/1e9,
		"a list found unchanged is current")

	srv.serve(answer{body: "<html>", headers: map[string]string{"ETag": `"v2"`}})
	require.ErrorIs(t, s.Refresh(t.Context()), sharedip.ErrRefused)
	srv.serve(answer{status: http.StatusNotModified})
	require.NoError(t, s.Refresh(t.Context()))
	assert.Equal(t, `"v1"`, srv.ifNone[3], "the refused list's ETag is not kept")
}

// A 304 to a request that was not conditional is not a list.
func TestUnaskedNotModified(t *testing.T) {
	srv := newListServer(t)
	s, err := sharedip.New(relayFrom(t, srv.URL), quiet)
	require.NoError(t, err)
	srv.serve(answer{status: http.StatusNotModified})
	assert.ErrorContains(t, s.Refresh(t.Context()), "HTTP status 304")
}

func TestBodyCap(t *testing.T) {
	srv := newListServer(t)
	cfg := relayFrom(t, srv.URL)
	cfg.MaxBytes = int64(len(relayCSV))
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	srv.serve(answer{body: relayCSV})
	require.NoError(t, s.Refresh(t.Context()), "a list of the cap's size")
	for _, h := range []map[string]string{
		nil, // Content-Length known at once
		{"Transfer-Encoding": "chunked"},
	} {
		srv.serve(answer{body: relayCSV + "1.2.3.4,,,,\n", headers: h})
		err := s.Refresh(t.Context())
		require.ErrorIs(t, err, sharedip.ErrRefused)
		assert.Contains(t, err.Error(), "the cap of "+strconv.Itoa(len(relayCSV)))
	}
	assert.EqualValues(t, 2, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "refused"))
	assert.Equal(t, 3, s.Lists()[1].Prefixes)

	// A file over the cap fails New.
	cfg = sharedip.DefaultConfig()
	cfg.MaxBytes = 10
	cfg.TorFile = writeFile(t, t.TempDir(), "tor.txt", torList)
	_, err = sharedip.New(cfg, quiet)
	assert.ErrorContains(t, err, "DEFENDER_SHARED_TOR_FILE: ")
}

// A server that does not answer is given up after HTTPTimeout.
func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := relayFrom(t, srv.URL)
	cfg.HTTPTimeout = 50 * time.Millisecond
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	err = s.Refresh(t.Context())
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 1, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "failed"))
}

// Run fetches the URLs at once, then waits; it returns nil when its
// context ends, a fetch in flight included, which is not counted as a
// failure.
func TestRun(t *testing.T) {
	srv := newListServer(t)
	srv.serve(answer{body: relayCSV})
	s, err := sharedip.New(relayFrom(t, srv.URL), quiet)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.Eventually(t, func() bool { _, ok := s.Lookup(addr("172.224.226.1")); return ok }, 10*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	assert.Equal(t, 1, srv.count())

	// Stopped in the middle of a fetch.
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	s, err = sharedip.New(relayFrom(t, hung.URL), quiet)
	require.NoError(t, err)
	ctx, cancel = context.WithCancel(t.Context())
	go func() { done <- s.Run(ctx) }()
	<-arrived
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	assert.Zero(t, metric(t, s, "defender_shared_refreshes_total", sharedip.ListRelay, "failed"), "a shutdown is not a failure")
	assert.Empty(t, s.Lists()[1].LastError)
}

// A file is read again when it changed; a refused or missing file keeps
// the list in use.
func TestFileReread(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "office.txt", office)
	cfg := sharedip.DefaultConfig()
	cfg.CIDRFiles = []sharedip.CIDRFile{{Name: "office", Path: path}}
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	loadedAt := s.Lists()[1].LoadedAt

	require.NoError(t, s.Refresh(t.Context()))
	assert.Equal(t, loadedAt, s.Lists()[1].LoadedAt, "unchanged: not loaded again")

	later := time.Now().Add(time.Minute) // a new stamp whatever the file system's clock granularity
	rewrite := func(text string) {
		require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
		require.NoError(t, os.Chtimes(path, later, later))
		later = later.Add(time.Minute)
	}
	rewrite("203.0.113.0/24\n")
	require.NoError(t, s.Refresh(t.Context()))
	list, _ := s.Lookup(addr("203.0.113.9"))
	assert.Equal(t, "office", list)
	_, ok := s.Lookup(addr("192.0.2.1"))
	assert.False(t, ok)

	rewrite("203.0.113.0/24\n0.0.0.0/0\n")
	require.ErrorIs(t, s.Refresh(t.Context()), sharedip.ErrRefused)
	require.NoError(t, os.Remove(path))
	err = s.Refresh(t.Context())
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "office (DEFENDER_SHARED_CIDR_FILES): "+path+": ")
	list, _ = s.Lookup(addr("203.0.113.9"))
	assert.Equal(t, "office", list, "the last good list stays")
	assert.EqualValues(t, 2, metric(t, s, "defender_shared_refreshes_total", "office", "ok"))
	assert.EqualValues(t, 1, metric(t, s, "defender_shared_refreshes_total", "office", "refused"))
	assert.EqualValues(t, 1, metric(t, s, "defender_shared_refreshes_total", "office", "failed"))

	// An operator's file may be emptied on purpose.
	rewrite("# none for now\n")
	require.NoError(t, s.Refresh(t.Context()))
	_, ok = s.Lookup(addr("203.0.113.9"))
	assert.False(t, ok)
}

// With a file and a URL, the file is the list until the URL is fetched.
func TestFileThenURL(t *testing.T) {
	srv := newListServer(t)
	cfg := sharedip.DefaultConfig()
	cfg.TorFile = writeFile(t, t.TempDir(), "tor.txt", "192.0.2.99\n")
	cfg.TorURL = srv.URL
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	assert.Equal(t, cfg.TorFile, s.Lists()[1].Source)
	list, _ := s.Lookup(addr("192.0.2.99"))
	assert.Equal(t, sharedip.ListTor, list)

	srv.serve(answer{status: http.StatusBadGateway})
	require.Error(t, s.Refresh(t.Context()))
	list, _ = s.Lookup(addr("192.0.2.99"))
	assert.Equal(t, sharedip.ListTor, list, "the file's list stays")
	srv.serve(answer{body: ""})
	require.ErrorIs(t, s.Refresh(t.Context()), sharedip.ErrRefused, "empty, where the file's list was not")

	srv.serve(answer{body: torList})
	require.NoError(t, s.Refresh(t.Context()))
	assert.Equal(t, srv.URL, s.Lists()[1].Source)
	_, ok := s.Lookup(addr("192.0.2.99"))
	assert.False(t, ok)
	list, _ = s.Lookup(addr("185.220.101.1"))
	assert.Equal(t, sharedip.ListTor, list)
}

// A list fetched is kept in the cache, which a restart loads when the
// URL cannot be reached. A cache that went bad is skipped.
func TestCache(t *testing.T) {
	srv := newListServer(t)
	cache := t.TempDir()
	cfg := relayFrom(t, srv.URL)
	cfg.CacheDir = cache
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	srv.serve(answer{body: relayCSV})
	require.NoError(t, s.Refresh(t.Context()))
	srv.serve(answer{body: "<html>"})
	require.Error(t, s.Refresh(t.Context()))
	srv.Close()

	s, err = sharedip.New(cfg, quiet)
	require.NoError(t, err)
	info := s.Lists()[1]
	assert.Equal(t, filepath.Join(cache, "icloud-relay.cache"), info.Source)
	assert.Equal(t, 3, info.Prefixes, "the list accepted, not the page refused after it")
	list, _ := s.Lookup(addr("172.224.226.1"))
	assert.Equal(t, sharedip.ListRelay, list)
	entries, err := os.ReadDir(cache)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	require.NoError(t, os.WriteFile(info.Source, []byte("0.0.0.0/0,,,,\n"), 0o600))
	var logs logBuffer
	s, err = sharedip.New(cfg, logs.option())
	require.NoError(t, err, "a bad cache is not a bad setting")
	assert.Zero(t, s.Lists()[1].Prefixes)
	assert.Contains(t, logs.String(), "cache unusable")
}

// A file newer than the cache wins over it; an older one does not.
func TestCacheOrFile(t *testing.T) {
	dir := t.TempDir()
	cfg := sharedip.DefaultConfig()
	cfg.TorURL = "http://127.0.0.1:1/never-fetched"
	cfg.CacheDir = dir
	cfg.TorFile = writeFile(t, dir, "tor.txt", "192.0.2.1\n")
	cache := writeFile(t, dir, "tor.cache", "192.0.2.2\n")
	old, recent := time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)

	require.NoError(t, os.Chtimes(cfg.TorFile, old, old))
	require.NoError(t, os.Chtimes(cache, recent, recent))
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	assert.Equal(t, cache, s.Lists()[1].Source)

	require.NoError(t, os.Chtimes(cfg.TorFile, recent, recent))
	require.NoError(t, os.Chtimes(cache, old, old))
	s, err = sharedip.New(cfg, quiet)
	require.NoError(t, err)
	assert.Equal(t, cfg.TorFile, s.Lists()[1].Source)
}
