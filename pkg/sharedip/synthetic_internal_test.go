package sharedip

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// relayLines is the size of Apple's egress-ip-ranges.csv, about 284,000
// lines, the size the synthetic list is made at.
const relayLines = 284_000

// synthetic is a list in the format of Apple's egress-ip-ranges.csv,
// made up but shaped like it: runs of adjacent IPv4 /27 to /32 and IPv6
// /64 networks, each run in one city, within a few providers' blocks.
// About 40% of the lines are IPv4.
type synthetic struct {
	text string
	// hits are addresses on the list; misses are addresses of the same
	// providers' blocks that are not, which go as deep into the table as
	// a lookup goes.
	hits4, hits6, misses4, misses6 []netip.Addr
}

var (
	syntheticMu    sync.Mutex
	syntheticCache = map[int]*synthetic{}
)

// syntheticRelay makes (once per size) a list of n lines, the same at
// every run.
func syntheticRelay(tb testing.TB, n int) *synthetic {
	tb.Helper()
	syntheticMu.Lock()
	defer syntheticMu.Unlock()
	if s, ok := syntheticCache[n]; ok {
		return s
	}
	r := rand.New(rand.NewPCG(2024, 284))
	cities := []string{"GB,GB-EN,London", "US,US-CA,Los Angeles", "US,US-NY,New York", "DE,DE-BE,Berlin",
		"FR,FR-IDF,Paris", "JP,JP-13,Tokyo", "BR,BR-SP,Sao Paulo", "AU,AU-NSW,Sydney", "IN,IN-MH,Mumbai", "CA,CA-ON,Toronto"}
	// IPv4 blocks of the providers, and a cursor in each.
	v4 := []struct {
		base uint32
		bits int
	}{{0xACE00000, 12}, {0x68100000, 12}, {0x8CF00000, 12}, {0x92400000, 12}}
	cur4 := make([]uint32, len(v4))
	v6 := []netip.Prefix{netip.MustParsePrefix("2a02:26f7::/32"), netip.MustParsePrefix("2a09:bac0::/29"),
		netip.MustParsePrefix("2606:54c0::/29"), netip.MustParsePrefix("2a04:4e41::/32")}
	cur6 := make([]uint64, len(v6)) // in /64s from the block's start

	var b strings.Builder
	b.Grow(n * 44)
	s := &synthetic{}
	lines := 0
	for lines < n {
		city := cities[r.IntN(len(cities))]
		run := 1 + r.IntN(48)
		run = min(run, n-lines)
		if r.IntN(10) < 4 {
			i := r.IntN(len(v4))
			bits := []int{27, 27, 27, 28, 28, 29, 30, 31, 32, 32}[r.IntN(10)]
			size := uint32(1) << (32 - bits)
			// align the cursor, leave a gap (the misses live there)
			c := (cur4[i] + size - 1) &^ (size - 1)
			c += size * uint32(r.IntN(4))
			for range run {
				if c+size > 1<<(32-v4[i].bits) {
					c = 0 // wrap: overlaps are duplicates, which the table collapses
				}
				a := v4[i].base + c
				fmt.Fprintf(&b, "%d.%d.%d.%d/%d,%s,\n", a>>24, a>>16&0xff, a>>8&0xff, a&0xff, bits, city)
				if r.IntN(64) == 0 {
					s.hits4 = append(s.hits4, addr4(a+uint32(r.IntN(int(size)))))
				}
				c += size
			}
			cur4[i] = c
		} else {
			i := r.IntN(len(v6))
			c := cur6[i] + uint64(r.IntN(16))
			span := uint64(1) << (64 - v6[i].Bits())
			for range run {
				c %= span
				a := v6[i].Addr().As16()
				hi := uint64(a[0])<<56 | uint64(a[1])<<48 | uint64(a[2])<<40 | uint64(a[3])<<32 |
					uint64(a[4])<<24 | uint64(a[5])<<16 | uint64(a[6])<<8 | uint64(a[7])
				hi += c
				p := addr6(hi, 0)
				fmt.Fprintf(&b, "%s/64,%s,\n", p, city)
				if r.IntN(64) == 0 {
					s.hits6 = append(s.hits6, addr6(hi, r.Uint64()))
				}
				c++
			}
			cur6[i] = c
		}
		lines += run
	}
	s.text = b.String()
	// Misses: addresses of the same blocks, kept if no prefix holds them.
	l, err := check(parse(formatRelay, s.text), 0, false)
	if err != nil {
		tb.Fatal(err)
	}
	for len(s.misses4) < 1024 || len(s.misses6) < 1024 {
		if len(s.misses4) < 1024 {
			blk := v4[r.IntN(len(v4))]
			a := addr4(blk.base + r.Uint32N(1<<(32-blk.bits)))
			if !l.table.Contains(a) {
				s.misses4 = append(s.misses4, a)
			}
		}
		if len(s.misses6) < 1024 {
			blk := v6[r.IntN(len(v6))]
			a := blk.Addr().As16()
			hi := uint64(a[0])<<56 | uint64(a[1])<<48 | uint64(a[2])<<40 | uint64(a[3])<<32 |
				uint64(a[4])<<24 | uint64(a[5])<<16 | uint64(a[6])<<8 | uint64(a[7])
			ad := addr6(hi+r.Uint64N(1<<(64-blk.Bits())), r.Uint64())
			if !l.table.Contains(ad) {
				s.misses6 = append(s.misses6, ad)
			}
		}
	}
	syntheticCache[n] = s
	return s
}

func addr4(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func addr6(hi, lo uint64) netip.Addr {
	var b [16]byte
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	return netip.AddrFrom16(b)
}
