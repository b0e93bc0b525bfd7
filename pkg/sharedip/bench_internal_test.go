package sharedip

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkLoadRelay measures loading a list of Apple's size from its
// text, as New and a refresh do once it is read: parsing, the rules, the
// table. It reports the heap the loaded list holds as held-MiB.
func BenchmarkLoadRelay(b *testing.B) {
	syn := syntheticRelay(b, relayLines)
	held, _ := heldBytes(b, syn.text)
	b.SetBytes(int64(len(syn.text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := check(parse(formatRelay, syn.text), 0, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(held)/(1<<20), "held-MiB")
}

// heldBytes is the heap that the list loaded from text holds once loaded,
// its text and what loading it took collected.
func heldBytes(tb testing.TB, text string) (uint64, loaded) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, err := check(parse(formatRelay, text), 0, false)
	if err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(l)
	return after.HeapAlloc - before.HeapAlloc, l
}

// The table of a list of Apple's size stays small (5.4 MiB measured):
// bounded here at 64 MiB, the most a gate should give it.
func TestRelayListMemory(t *testing.T) {
	syn := syntheticRelay(t, relayLines)
	held, l := heldBytes(t, syn.text)
	t.Logf("%d lines, %.1f MB of text: %d prefixes hold %.1f MiB", relayLines, float64(len(syn.text))/1e6, l.prefixes, float64(held)/(1<<20))
	if held > 64<<20 {
		t.Errorf("a list of %d prefixes holds %.1f MiB, more than 64 MiB", l.prefixes, float64(held)/(1<<20))
	}
	if l.prefixes < relayLines*9/10 {
		t.Errorf("%d prefixes of %d lines: the synthetic list is mostly duplicates", l.prefixes, relayLines)
	}
}

// BenchmarkLookup measures Lookup with the lists a gate would have:
// CGNAT, a Private Relay list of Apple's size, 1,500 Tor exits and an
// operator's list. A miss goes through every list. Hits and misses are
// in the same providers' blocks, so they go as deep into the tables as
// lookups go.
func BenchmarkLookup(b *testing.B) {
	syn := syntheticRelay(b, relayLines)
	dir := b.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	var tor strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&tor, "185.220.%d.%d\n", 100+i/250, 1+i%250)
	}
	cfg := DefaultConfig()
	cfg.RelayFile = write("relay.csv", syn.text)
	cfg.TorFile = write("tor.txt", tor.String())
	cfg.CIDRFiles = []CIDRFile{{Name: "office", Path: write("office.txt", "192.0.2.0/24\n2001:db8:1::/48\n")}}
	s, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		addrs []netip.Addr
		hit   bool
	}{{"hit4", syn.hits4, true}, {"miss4", syn.misses4, false}, {"hit6", syn.hits6, true}, {"miss6", syn.misses6, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a := c.addrs[i%len(c.addrs)]
				if list, ok := s.Lookup(a); ok != c.hit || (ok && list != ListRelay) {
					b.Fatalf("%s: %q %v", a, list, ok)
				}
				i++
			}
		})
	}
}
