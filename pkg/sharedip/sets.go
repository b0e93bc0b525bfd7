package sharedip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Sets is the shared egress lists of one process. Lookup is lock-free and
// safe for concurrent use with everything else; loads are serialised.
type Sets struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	metrics *metrics

	// cur is what Lookup and Lists read: replaced whole, never changed.
	cur atomic.Pointer[snapshot]
	// mu serialises loads, and guards sources' state.
	mu      sync.Mutex
	sources []*source
}

// snapshot is the lists at one moment, in the order of Sets.sources.
type snapshot struct {
	lists []listState
}

type listState struct {
	table *bart.Lite // nil until loaded
	info  ListInfo
}

// ListInfo describes one list, for the admin.
type ListInfo struct {
	// Name is what Lookup returns for the list's addresses.
	Name string
	// Source is where the list in use came from: "built-in", a file, a
	// URL or the cache file; before anything is loaded, where it will
	// come from.
	Source string
	// Prefixes is the number of distinct prefixes in use.
	Prefixes int
	// BadLines is the number of lines skipped when the list in use was
	// loaded.
	BadLines int
	// LoadedAt is when the list in use was loaded (zero: not yet).
	LoadedAt time.Time
	// Checked is when its source was last read or fetched, successfully
	// or not (zero: never).
	Checked time.Time
	// LastError is why that last read or fetch failed or was refused; ""
	// when it succeeded.
	LastError string
}

// source is where one list comes from, and the state of its loads.
type source struct {
	name     string
	format   format
	builtin  []netip.Prefix // the list itself, for cgnat
	file     string
	url      string
	fileVar  string // the settings of file and url, named in errors
	urlVar   string
	cache    string // file keeping the last list fetched; "" none
	index    int    // in snapshot.lists
	prefixes int    // of the list in use

	// For refreshes: when the source was last read or fetched (for a list
	// loaded from the cache, when the cache was written), how many times
	// in a row that failed, the validators of the last answer accepted,
	// and the stamp of the file last read.
	checked            time.Time
	failures           int
	etag, lastModified string
	stamp              fileStamp
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	mod  time.Time
	size int64
}

// Option configures Sets.
type Option func(*Sets)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Sets) { s.log = l } }

// WithHTTPClient sets the client that fetches the URLs (default a client
// of http.DefaultTransport, which honours HTTPS_PROXY). Config.HTTPTimeout
// bounds each fetch whatever the client.
func WithHTTPClient(c *http.Client) Option { return func(s *Sets) { s.client = c } }

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// New loads the lists of cfg that are built in or in files, and the
// cache of those fetched (see Config.CacheDir). It fetches nothing: Run
// does. A file that cannot be read or is refused as a whole fails New
// with an error naming its setting; bad lines within bounds are logged.
func New(cfg Config, opts ...Option) (*Sets, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sets{cfg: cfg, log: slog.Default(), client: &http.Client{}}
	for _, o := range opts {
		o(s)
	}
	if cfg.CacheDir != "" {
		if err := checkDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("DEFENDER_SHARED_CACHE_DIR: %w", err)
		}
	}
	if cfg.CGNAT {
		s.add(&source{name: ListCGNAT, builtin: []netip.Prefix{cgnat}})
	}
	if cfg.RelayFile != "" || cfg.RelayURL != "" {
		s.add(&source{name: ListRelay, format: formatRelay, file: cfg.RelayFile, url: cfg.RelayURL,
			fileVar: "DEFENDER_SHARED_RELAY_FILE", urlVar: "DEFENDER_SHARED_RELAY_URL"})
	}
	if cfg.TorFile != "" || cfg.TorURL != "" {
		s.add(&source{name: ListTor, format: formatTor, file: cfg.TorFile, url: cfg.TorURL,
			fileVar: "DEFENDER_SHARED_TOR_FILE", urlVar: "DEFENDER_SHARED_TOR_URL"})
	}
	for _, f := range cfg.CIDRFiles {
		s.add(&source{name: f.Name, format: formatCIDR, file: f.Path, fileVar: "DEFENDER_SHARED_CIDR_FILES"})
	}
	names := make([]string, len(s.sources))
	lists := make([]listState, len(s.sources))
	for i, src := range s.sources {
		names[i] = src.name
		lists[i].info = ListInfo{Name: src.name, Source: src.origin()}
	}
	s.metrics = newMetrics(names)
	s.cur.Store(&snapshot{lists: lists})
	for _, src := range s.sources {
		if err := s.start(src); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Sets) add(src *source) {
	src.index = len(s.sources)
	if src.url != "" && s.cfg.CacheDir != "" {
		src.cache = filepath.Join(s.cfg.CacheDir, src.name+".cache")
	}
	s.sources = append(s.sources, src)
}

// origin is where the list will come from before anything is loaded.
func (src *source) origin() string {
	switch {
	case src.builtin != nil:
		return "built-in"
	case src.url != "":
		return src.url
	}
	return src.file
}

// checkDir makes sure the cache can be written, now rather than at the
// first fetch, hours later.
func checkDir(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}

// start loads a list at New: its built-in prefixes, its file, then its
// cache if that is newer than the file.
func (s *Sets) start(src *source) error {
	now := time.Now()
	if src.builtin != nil {
		t := new(bart.Lite)
		for _, p := range src.builtin {
			t.Insert(p)
		}
		s.accept(src, loaded{table: t, prefixes: t.Size()}, "built-in", now)
		return nil
	}
	if src.file != "" {
		l, stamp, err := s.readFile(src, src.file)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", src.fileVar, src.file, err)
		}
		s.accept(src, l, src.file, now)
		src.stamp = stamp
		if src.url == "" {
			src.checked = now // the file is due again after Refresh
		}
	}
	if src.cache == "" {
		return nil
	}
	// A cache is ours, not a setting: if it cannot be used, the list is
	// the file's, or empty, until the first fetch.
	fi, err := os.Stat(src.cache)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("shared list: cache unusable", "list", src.name, "cache", src.cache, "err", err)
		}
		return nil
	}
	if !src.stamp.mod.IsZero() && !fi.ModTime().After(src.stamp.mod) {
		return nil // the file is newer
	}
	l, _, err := s.readFile(src, src.cache)
	if err != nil {
		s.log.Warn("shared list: cache unusable", "list", src.name, "cache", src.cache, "err", err)
		return nil
	}
	s.accept(src, l, src.cache, now)
	// Due again when a fetch would have been: a restart does not fetch
	// what it fetched a moment ago.
	src.checked = fi.ModTime()
	return nil
}

// readFile reads and checks a list's file (or cache).
func (s *Sets) readFile(src *source, path string) (loaded, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return loaded{}, fileStamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return loaded{}, fileStamp{}, err
	}
	text, err := readCapped(f, fi.Size(), s.cfg.MaxBytes)
	if err != nil {
		return loaded{}, fileStamp{}, err
	}
	l, err := s.checkText(src, path, text, false)
	return l, fileStamp{fi.ModTime(), fi.Size()}, err
}

// checkText parses and checks a list's text, logging the bad lines of a
// list accepted in spite of them.
func (s *Sets) checkText(src *source, from, text string, fetched bool) (loaded, error) {
	p := parse(src.format, text)
	l, err := check(p, src.prefixes, fetched)
	if err == nil && p.badCount > 0 {
		s.log.Warn("shared list: bad lines skipped", "list", src.name, "source", from,
			"lines", lineList(p.bad, p.badCount, "not read"))
	}
	return l, err
}

// accept puts a loaded list in use.
func (s *Sets) accept(src *source, l loaded, from string, now time.Time) {
	src.prefixes = l.prefixes
	s.update(src, func(ls *listState) {
		ls.table = l.table
		ls.info.Source = from
		ls.info.Prefixes = l.prefixes
		ls.info.BadLines = l.badLines
		ls.info.LoadedAt = now
		ls.info.Checked = now
		ls.info.LastError = ""
	})
	s.metrics.loaded(src.name, l.prefixes, now)
	s.log.Info("shared list loaded", "list", src.name, "source", from, "prefixes", l.prefixes, "bad_lines", l.badLines)
}

// update publishes a snapshot with one list changed by f. Callers hold
// s.mu, or are New.
func (s *Sets) update(src *source, f func(*listState)) {
	old := s.cur.Load()
	lists := append([]listState(nil), old.lists...)
	f(&lists[src.index])
	s.cur.Store(&snapshot{lists: lists})
}

// nat64 is the well-known prefix of IPv4/IPv6 translators (RFC 6052),
// under which pkg/gate counts a client as the IPv4 address it carries.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Lookup says which list addr is on, the first in the order of Lists
// when it is on several. IPv4-mapped IPv6 is looked up as IPv4, and an
// address of the NAT64 well-known prefix (64:ff9b::a.b.c.d) also as the
// IPv4 client it stands for, as pkg/gate counts it. It takes no lock and
// allocates nothing; a nil *Sets has no lists.
func (s *Sets) Lookup(addr netip.Addr) (list string, ok bool) {
	if s == nil {
		return "", false
	}
	snap := s.cur.Load()
	addr = addr.Unmap()
	if list, ok = snap.lookup(addr); ok || !nat64.Contains(addr) {
		return list, ok
	}
	b := addr.As16()
	return snap.lookup(netip.AddrFrom4([4]byte(b[12:])))
}

func (snap *snapshot) lookup(addr netip.Addr) (string, bool) {
	for i := range snap.lists {
		if t := snap.lists[i].table; t != nil && t.Contains(addr) {
			return snap.lists[i].info.Name, true
		}
	}
	return "", false
}

// Lists describes the configured lists, in the order Lookup tries them:
// cgnat, icloud-relay, tor, then the operator's in their order.
func (s *Sets) Lists() []ListInfo {
	snap := s.cur.Load()
	out := make([]ListInfo, len(snap.lists))
	for i, ls := range snap.lists {
		out[i] = ls.info
	}
	return out
}
