package sharedip

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/envflag"
	"github.com/defender-go/defender/internal/redact"
)

// Names of the built-in lists, as Lookup returns them.
const (
	ListCGNAT = "cgnat"
	ListRelay = "icloud-relay"
	ListTor   = "tor"
)

// Public sources of the lists, for operators to set as
// DEFENDER_SHARED_RELAY_URL and DEFENDER_SHARED_TOR_URL. Nothing is
// fetched unless a URL is set.
const (
	RelayURL = "https://mask-api.icloud.com/egress-ip-ranges.csv"
	TorURL   = "https://check.torproject.org/torbulkexitlist"
)

// Defaults of Config.
const (
	DefaultRefresh     = 24 * time.Hour
	DefaultHTTPTimeout = time.Minute
	// DefaultMaxBytes caps a list's size: Apple's list is about 11 MB
	// (284,000 lines), so the cap leaves it room to grow fivefold while a
	// runaway response cannot take the process's memory.
	DefaultMaxBytes = 64 << 20
)

// MinRefresh is the shortest refresh interval but 0: the lists change
// daily at most, and their publishers are not to be polled in a loop.
const MinRefresh = time.Minute

// Config says which lists are loaded and from where. Build it with
// DefaultConfig or ConfigFromEnv; field comments name the variable.
type Config struct {
	// CGNAT loads the carrier-grade NAT range 100.64.0.0/10 as the list
	// "cgnat" (DEFENDER_SHARED_CGNAT, true).
	CGNAT bool
	// RelayFile (DEFENDER_SHARED_RELAY_FILE) and RelayURL
	// (DEFENDER_SHARED_RELAY_URL) are iCloud Private Relay's egress list,
	// "icloud-relay", in Apple's CSV format (see RelayURL). With both, the
	// file is the list until the URL has been fetched.
	RelayFile string
	RelayURL  string
	// TorFile (DEFENDER_SHARED_TOR_FILE) and TorURL (DEFENDER_SHARED_TOR_URL)
	// are the Tor exits, "tor": one address per line (see TorURL) or
	// Tor's exit-addresses format.
	TorFile string
	TorURL  string
	// CIDRFiles are the operator's lists (DEFENDER_SHARED_CIDR_FILES): one
	// address or CIDR prefix per line, # comments.
	CIDRFiles []CIDRFile
	// Refresh is how often the URLs are fetched again and the files read
	// again if they changed (DEFENDER_SHARED_REFRESH, 24 h). 0 fetches each
	// URL once, when Run starts (retried until it succeeds), and reads no
	// file again.
	Refresh time.Duration
	// CacheDir, if set, keeps the last list fetched from each URL there,
	// so that a restart has it before the first fetch, and does not fetch
	// again before Refresh has passed since (DEFENDER_SHARED_CACHE_DIR).
	CacheDir string
	// HTTPTimeout bounds one fetch, body included (1 min).
	HTTPTimeout time.Duration
	// MaxBytes caps the size of a list, fetched or read (64 MiB).
	MaxBytes int64
}

// CIDRFile is one of the operator's lists.
type CIDRFile struct {
	// Name is what Lookup returns for its addresses; ConfigFromEnv makes
	// it the file's base name without extension when none is given.
	Name string
	Path string
}

// DefaultConfig returns the defaults: CGNAT only, refreshed daily.
func DefaultConfig() Config {
	return Config{
		CGNAT:       true,
		Refresh:     DefaultRefresh,
		HTTPTimeout: DefaultHTTPTimeout,
		MaxBytes:    DefaultMaxBytes,
	}
}

// EnvVars lists every variable ConfigFromEnv reads, with its description.
var EnvVars = []envflag.Var{
	{Name: "DEFENDER_SHARED_CGNAT", Usage: "treat carrier-grade NAT (100.64.0.0/10) as a shared egress list, cgnat (default true)"},
	{Name: "DEFENDER_SHARED_RELAY_FILE", Usage: "iCloud Private Relay egress list (Apple's CSV), read at start"},
	{Name: "DEFENDER_SHARED_RELAY_URL", Usage: "iCloud Private Relay egress list to fetch and refresh, e.g. " + RelayURL},
	{Name: "DEFENDER_SHARED_TOR_FILE", Usage: "Tor exit addresses (one per line, or Tor's exit-addresses format), read at start"},
	{Name: "DEFENDER_SHARED_TOR_URL", Usage: "Tor exit addresses to fetch and refresh, e.g. " + TorURL},
	{Name: "DEFENDER_SHARED_CIDR_FILES", Usage: "the operator's shared egress lists, comma-separated name=path or path (named after the file); one address or CIDR per line"},
	{Name: "DEFENDER_SHARED_REFRESH", Usage: "how often the lists' URLs are fetched and their files re-read, seconds or a duration like 12h; 0 = never (default 24h)"},
	{Name: "DEFENDER_SHARED_CACHE_DIR", Usage: "directory keeping the last list fetched from each URL across restarts"},
}

// ConfigFromEnv reads DEFENDER_SHARED_* variables through lookup
// (os.LookupEnv in a main) over DefaultConfig, and validates the result.
// Every error names the variable at fault. Booleans and durations take
// envflag's grammar, as every setting does: true/false, 1/0, yes/no,
// on/off; a Go duration, days or a number of seconds.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	r := envflag.NewReader(lookup)
	r.Bool("DEFENDER_SHARED_CGNAT", &c.CGNAT)
	r.String("DEFENDER_SHARED_RELAY_FILE", &c.RelayFile)
	r.String("DEFENDER_SHARED_RELAY_URL", &c.RelayURL)
	r.String("DEFENDER_SHARED_TOR_FILE", &c.TorFile)
	r.String("DEFENDER_SHARED_TOR_URL", &c.TorURL)
	var files []string
	r.List("DEFENDER_SHARED_CIDR_FILES", &files)
	for _, f := range files {
		c.CIDRFiles = append(c.CIDRFiles, cidrFile(f))
	}
	r.Duration("DEFENDER_SHARED_REFRESH", &c.Refresh, time.Second)
	r.String("DEFENDER_SHARED_CACHE_DIR", &c.CacheDir)
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// cidrFile reads "name=path" or "path", named after the file's base name
// without its extension: /etc/defender/office-proxies.txt is
// "office-proxies".
func cidrFile(s string) CIDRFile {
	if name, path, ok := strings.Cut(s, "="); ok {
		return CIDRFile{Name: strings.TrimSpace(name), Path: strings.TrimSpace(path)}
	}
	base := filepath.Base(s)
	return CIDRFile{Name: strings.TrimSuffix(base, filepath.Ext(base)), Path: s}
}

// Validate reports every setting that cannot work, each naming its
// variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	for name, u := range map[string]string{"DEFENDER_SHARED_RELAY_URL": c.RelayURL, "DEFENDER_SHARED_TOR_URL": c.TorURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			bad(name, "%q is not an http(s) URL", redact.URLList(u))
		}
	}
	names := map[string]bool{ListCGNAT: true, ListRelay: true, ListTor: true}
	for _, f := range c.CIDRFiles {
		switch {
		case f.Path == "":
			bad("DEFENDER_SHARED_CIDR_FILES", "%q has no path", f.Name+"=")
		case !validName(f.Name):
			bad("DEFENDER_SHARED_CIDR_FILES", "%q is not a list name (letters, digits, '.', '_' and '-'); give one as name=%s", f.Name, f.Path)
		case names[f.Name]:
			bad("DEFENDER_SHARED_CIDR_FILES", "the name %q is taken; give %s another as name=%s", f.Name, f.Path, f.Path)
		}
		names[f.Name] = true
	}
	if c.Refresh < 0 || (c.Refresh > 0 && c.Refresh < MinRefresh) {
		bad("DEFENDER_SHARED_REFRESH", "%s is neither 0 (never) nor at least %s", c.Refresh, MinRefresh)
	}
	if c.HTTPTimeout <= 0 {
		bad("sharedip: Config.HTTPTimeout", "%s is not positive", c.HTTPTimeout)
	}
	if c.MaxBytes <= 0 {
		bad("sharedip: Config.MaxBytes", "%d is not positive", c.MaxBytes)
	}
	return errors.Join(errs...)
}

// validName: names are metric labels, log values, event fields and cache
// file names, so they keep to a plain alphabet.
func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
