package sharedip_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/sharedip"
)

const (
	relayCSV = "172.224.226.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\n104.28.0.0/24,US,US-CA,Los Angeles,\n"
	torList  = "185.220.101.1\n2a0b:f4c2::1\n"
	office   = "# the office's proxies\n192.0.2.0/28\n2001:db8:1::/48\n"
	partners = "198.51.100.7\n"
)

// allLists is a configuration of every list, from files in a new
// directory.
func allLists(t *testing.T) sharedip.Config {
	dir := t.TempDir()
	cfg := sharedip.DefaultConfig()
	cfg.RelayFile = writeFile(t, dir, "relay.csv", relayCSV)
	cfg.TorFile = writeFile(t, dir, "tor.txt", torList)
	cfg.CIDRFiles = []sharedip.CIDRFile{
		{Name: "office", Path: writeFile(t, dir, "office.txt", office)},
		{Name: "partners", Path: writeFile(t, dir, "partners.txt", partners)},
	}
	return cfg
}

// onEach is an address of each list.
var onEach = map[string]netip.Addr{
	sharedip.ListCGNAT: addr("100.64.0.1"),
	sharedip.ListRelay: addr("172.224.226.31"),
	sharedip.ListTor:   addr("185.220.101.1"),
	"office":           addr("2001:db8:1:2::5"),
	"partners":         addr("198.51.100.7"),
}

// Sets is what the gate asks on every login.
var _ gate.SharedLists = (*sharedip.Sets)(nil)

func TestLookup(t *testing.T) {
	s, err := sharedip.New(allLists(t), quiet)
	require.NoError(t, err)
	for _, tc := range []struct {
		addr string
		want string // "" not listed
	}{
		{"100.64.0.1", sharedip.ListCGNAT},
		{"100.127.255.255", sharedip.ListCGNAT},
		{"100.128.0.0", ""},
		{"100.63.255.255", ""},
		{"172.224.226.0", sharedip.ListRelay},
		{"172.224.226.31", sharedip.ListRelay},
		{"172.224.226.32", ""},
		{"2a02:26f7:b3c0:4000:1234::1", sharedip.ListRelay},
		{"2a02:26f7:b3c0:4001::1", ""},
		{"104.28.0.200", sharedip.ListRelay},
		{"185.220.101.1", sharedip.ListTor},
		{"185.220.101.2", ""},
		{"2a0b:f4c2::1", sharedip.ListTor},
		{"2a0b:f4c2::2", ""},
		{"192.0.2.15", "office"},
		{"192.0.2.16", ""},
		{"2001:db8:1:ffff::1", "office"},
		{"198.51.100.7", "partners"},
		// IPv4-mapped IPv6 is the IPv4 address.
		{"::ffff:100.64.0.1", sharedip.ListCGNAT},
		{"::ffff:185.220.101.1", sharedip.ListTor},
		// A NAT64 address is also the IPv4 client it carries, as pkg/gate counts it.
		{"64:ff9b::100.64.0.1", sharedip.ListCGNAT},
		{"64:ff9b::198.51.100.7", "partners"},
		{"64:ff9b::198.51.100.8", ""},
		{"64:ff9b:1::198.51.100.7", ""}, // a network-specific prefix is not recognised
		{"fe80::1%eth0", ""},
		{"::", ""},
		{"0.0.0.0", ""},
	} {
		list, ok := s.Lookup(addr(tc.addr))
		assert.Equal(t, tc.want, list, tc.addr)
		assert.Equal(t, tc.want != "", ok, tc.addr)
	}
	list, ok := s.Lookup(netip.Addr{})
	assert.False(t, ok, "the zero Addr is on no list")
	assert.Empty(t, list)
}

// An address on several lists is on the first, in the order of Lists.
func TestLookupOrder(t *testing.T) {
	cfg := allLists(t)
	dir := t.TempDir()
	cfg.CIDRFiles = []sharedip.CIDRFile{
		{Name: "wide", Path: writeFile(t, dir, "wide.txt", "100.64.0.0/16\n198.51.100.0/24\n")},
		{Name: "narrow", Path: writeFile(t, dir, "narrow.txt", "198.51.100.7\n")},
	}
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	list, _ := s.Lookup(addr("100.64.0.1"))
	assert.Equal(t, sharedip.ListCGNAT, list)
	list, _ = s.Lookup(addr("198.51.100.7"))
	assert.Equal(t, "wide", list, "the first list, not the narrowest prefix")
}

func TestTurningListsOff(t *testing.T) {
	for _, off := range []string{sharedip.ListCGNAT, sharedip.ListRelay, sharedip.ListTor, "office", "all"} {
		t.Run(off, func(t *testing.T) {
			cfg := allLists(t)
			if off == sharedip.ListCGNAT || off == "all" {
				cfg.CGNAT = false
			}
			if off == sharedip.ListRelay || off == "all" {
				cfg.RelayFile = ""
			}
			if off == sharedip.ListTor || off == "all" {
				cfg.TorFile = ""
			}
			if off == "office" {
				cfg.CIDRFiles = cfg.CIDRFiles[1:]
			}
			if off == "all" {
				cfg.CIDRFiles = nil
			}
			s, err := sharedip.New(cfg, quiet)
			require.NoError(t, err)
			var names []string
			for _, l := range s.Lists() {
				names = append(names, l.Name)
			}
			for name, a := range onEach {
				isOff := off == "all" || name == off
				list, ok := s.Lookup(a)
				assert.Equal(t, !isOff, ok, "%s (%s)", name, a)
				if !isOff {
					assert.Equal(t, name, list)
					assert.Contains(t, names, name)
				} else {
					assert.NotContains(t, names, name)
				}
			}
		})
	}
	var none *sharedip.Sets
	_, ok := none.Lookup(addr("100.64.0.1"))
	assert.False(t, ok, "a nil *Sets has no lists")
}

func TestLists(t *testing.T) {
	cfg := allLists(t)
	before := time.Now()
	s, err := sharedip.New(cfg, quiet)
	require.NoError(t, err)
	infos := s.Lists()
	require.Len(t, infos, 5)
	want := []struct {
		name, source string
		prefixes     int
	}{
		{sharedip.ListCGNAT, "built-in", 1},
		{sharedip.ListRelay, cfg.RelayFile, 3},
		{sharedip.ListTor, cfg.TorFile, 2},
		{"office", cfg.CIDRFiles[0].Path, 2},
		{"partners", cfg.CIDRFiles[1].Path, 1},
	}
	for i, w := range want {
		assert.Equal(t, w.name, infos[i].Name)
		assert.Equal(t, w.source, infos[i].Source)
		assert.Equal(t, w.prefixes, infos[i].Prefixes, w.name)
		assert.False(t, infos[i].LoadedAt.Before(before), w.name)
		assert.Empty(t, infos[i].LastError)
		assert.Zero(t, infos[i].BadLines)
		assert.EqualValues(t, w.prefixes, metric(t, s, "defender_shared_prefixes", w.name), w.name)
		assert.EqualValues(t, infos[i].LoadedAt.Unix(), int64(metric(t, s, "defender_shared_last_success_timestamp_seconds", w.name)), w.name)
		for _, result := range []string{"ok", "failed", "refused"} {
			assert.Zero(t, metric(t, s, "defender_shared_refreshes_total", w.name, result), "%s %s exists at 0", w.name, result)
		}
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	s, err := sharedip.New(allLists(t), quiet)
	require.NoError(t, err)
	for _, a := range []string{"172.224.226.31", "2a02:26f7:b3c0:4000::1", "203.0.113.9", "2001:db8:2::1", "::ffff:100.64.0.1", "64:ff9b::198.51.100.7"} {
		ip := addr(a)
		assert.Zero(t, testing.AllocsPerRun(1000, func() { s.Lookup(ip) }), a)
	}
}

// At start, a file that cannot be read, or that is refused as a whole,
// fails New with an error naming its setting and the line.
func TestNewFailsNamingTheSetting(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.txt")
	wide := writeFile(t, dir, "wide.txt", "192.0.2.1\n0.0.0.0/0\n")
	page := writeFile(t, dir, "page.html", "<html>\n<body>Not Found</body>\n</html>\n")
	for _, tc := range []struct {
		name string
		set  func(*sharedip.Config, string)
	}{
		{"DEFENDER_SHARED_RELAY_FILE", func(c *sharedip.Config, p string) { c.RelayFile = p }},
		{"DEFENDER_SHARED_TOR_FILE", func(c *sharedip.Config, p string) { c.TorFile = p }},
		{"DEFENDER_SHARED_CIDR_FILES", func(c *sharedip.Config, p string) { c.CIDRFiles = []sharedip.CIDRFile{{Name: "x", Path: p}} }},
	} {
		for _, file := range []struct{ path, want string }{
			{missing, "no such file"},
			{wide, "list refused: "}, // too wide, or for Tor not an address
			{wide, `line 2: "0.0.0.0/0": `},
			{page, "list refused: 3 of 3 entries are bad"},
		} {
			cfg := sharedip.DefaultConfig()
			tc.set(&cfg, file.path)
			_, err := sharedip.New(cfg, quiet)
			require.Error(t, err, "%s=%s", tc.name, file.path)
			assert.Contains(t, err.Error(), tc.name+": "+file.path+": ")
			assert.Contains(t, err.Error(), file.want)
		}
	}
	cfg := sharedip.DefaultConfig()
	cfg.CacheDir = filepath.Join(dir, "nowhere")
	_, err := sharedip.New(cfg, quiet)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DEFENDER_SHARED_CACHE_DIR: ")
	cfg.CacheDir = missing
	require.NoError(t, os.WriteFile(missing, nil, 0o600))
	_, err = sharedip.New(cfg, quiet)
	assert.ErrorContains(t, err, "DEFENDER_SHARED_CACHE_DIR: ", "a file is not a directory")

	cfg = sharedip.DefaultConfig()
	cfg.Refresh = time.Second
	_, err = sharedip.New(cfg, quiet)
	assert.ErrorContains(t, err, "DEFENDER_SHARED_REFRESH", "New validates")
}

// A list with a few bad lines loads without them, and says which.
func TestBadLinesLogged(t *testing.T) {
	text := ""
	for i := range 30 {
		text += "192.0.2." + string(rune('0'+i%10)) + "\n"
	}
	text += "192.0.2.300\nproxy.example.org\n"
	cfg := sharedip.DefaultConfig()
	cfg.CIDRFiles = []sharedip.CIDRFile{{Name: "office", Path: writeFile(t, t.TempDir(), "office.txt", text)}}
	var logs logBuffer
	s, err := sharedip.New(cfg, logs.option())
	require.NoError(t, err)
	assert.Contains(t, logs.String(), `2 lines not read: line 31: \"192.0.2.300\": not an IP address; line 32: \"proxy.example.org\": not an IP address`)
	info := s.Lists()[1]
	assert.Equal(t, 2, info.BadLines)
	assert.Equal(t, 10, info.Prefixes)
}
