package gate

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/rangetable"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizeUsername(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"lower", "alice", "alice"},
		{"case", "Alice", "alice"},
		{"spaces", "  alice \t", "alice"},
		{"full width", "ａｌｉｃｅ", "alice"},
		{"full width upper", "ＡＬＩＣＥ", "alice"},
		{"zero width space", "al\u200bice", "alice"},
		{"bom", "\ufeffalice", "alice"},
		{"nul", "alice\x00", "alice"},
		{"newline inside becomes space", "ali\nce", "ali ce"},
		{"ideographic space trimmed", "\u3000alice\u3000", "alice"},
		{"german sharp s folds", "STRASSE", "strasse"},
		{"sharp s", "straße", "strasse"},
		{"greek final sigma", "ΟΔΟΣ", "οδοσ"},
		{"turkish dotted I", "İ", "i"},
		{"turkish dotless i", "kıwı", "kiwi"},
		{"turkish dotted capital inside", "kİwİ", "kiwi"},
		{"i with a combining dot stays two", "ki\u0307wi", "ki\u0307wi"},
		{"ligature", "ﬁle", "file"},
		{"email", "Bob@Example.COM", "bob@example.com"},
		{"glob chars kept", "a*b?[c]", "a*b?[c]"},
		{"key separators kept", "x:y{z}", "x:y{z}"},
		{"invalid utf8", "bob\xff", "bob\ufffd"},
		{"empty", "", ""},
		{"only spaces", "   ", ""},
		{"only invisible", "\u200b\u200d", ""},
		{"cyrillic", "Иван", "иван"},
		{"html kept", "<script>", "<script>"},
		{"combining grapheme joiner", "caro\u034fl", "carol"},
		{"variation selector", "carol\ufe0f", "carol"},
		{"hangul filler", "\u3164carol", "carol"},
		{"khmer inherent vowel", "ca\u17b4rol", "carol"},
		{"mongolian variation selector", "car\u180bol", "carol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, NormalizeUsername(tc.in, 255))
		})
	}
}

func TestNormalizeUsernameCaps(t *testing.T) {
	long := strings.Repeat("ж", 1000)
	got := NormalizeUsername(long, 255)
	assert.Equal(t, 255, utf8.RuneCountInString(got))
	assert.Equal(t, strings.Repeat("a", 10), NormalizeUsername(strings.Repeat("A", 10)+"    b", 12))
	huge := strings.Repeat("x", 10<<20)
	assert.Len(t, NormalizeUsername(huge, 255), 255)
}

// Padding in front of a name, however long, is dropped and leaves the
// name: applications trim spaces, so "<2000 spaces>alice" logs in as alice
// and must be counted as alice. The gate's bound on its work cut such a
// name before trimming and counted no username (or a piece of the padding).
func TestNormalizeUsernamePadding(t *testing.T) {
	for _, pad := range []string{" ", "\t", "\u3000", "\u00a0", "\u200b", "\ufeff", "\x00", " \u200b"} {
		for _, n := range []int{1, 100, 2000, 100000} {
			got := NormalizeUsername(strings.Repeat(pad, n)+"Alice", 255)
			assert.Equal(t, "alice", got, "%d x %q", n, pad)
		}
	}
}

func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"Alice", " ａｌｉｃｅ ", "al\u200bice", "\xff\xfe", "İstanbul", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u := NormalizeUsername(s, 64)
		require.True(t, utf8.ValidString(u))
		require.LessOrEqual(t, utf8.RuneCountInString(u), 64)
		require.Equal(t, strings.TrimSpace(u), u)
		for _, r := range u {
			require.False(t, r < 0x20 || r == 0x7f, "control character %q in %q", r, u)
		}
		// Idempotent: the identity of an identity is itself.
		require.Equal(t, u, NormalizeUsername(u, 64))
		// Padding in front changes nothing, however long.
		require.Equal(t, u, NormalizeUsername(strings.Repeat(" \u200b", 200)+s, 64))
	})
}

// TestDefaultIgnorableMatchesUnicode compares the derived
// Default_Ignorable_Code_Point with Unicode's own list for the version of
// Unicode that golang.org/x/text normalises by: the same code points, no
// more, no fewer. (With a new x/text, add the data of its version from
// DerivedCoreProperties.txt.)
func TestDefaultIgnorableMatchesUnicode(t *testing.T) {
	path := filepath.Join("testdata", "unicode", "DerivedCoreProperties-"+norm.Version+"-Default_Ignorable_Code_Point.txt")
	data, err := os.ReadFile(path)
	require.NoError(t, err, "Unicode's data for the version x/text uses (%s)", norm.Version)
	want := map[rune]bool{}
	total := -1
	for _, line := range strings.Split(string(data), "\n") {
		if n, ok := strings.CutPrefix(line, "# Total code points: "); ok {
			total, err = strconv.Atoi(n)
			require.NoError(t, err)
		}
		line, _, _ = strings.Cut(line, "#")
		field, prop, ok := strings.Cut(line, ";")
		if !ok {
			continue
		}
		require.Equal(t, "Default_Ignorable_Code_Point", strings.TrimSpace(prop))
		lo, hi, isRange := strings.Cut(strings.TrimSpace(field), "..")
		if !isRange {
			hi = lo
		}
		from, err := strconv.ParseUint(lo, 16, 32)
		require.NoError(t, err)
		to, err := strconv.ParseUint(hi, 16, 32)
		require.NoError(t, err)
		for r := rune(from); r <= rune(to); r++ {
			want[r] = true
		}
	}
	require.Equal(t, total, len(want), "the file's own total")
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if got := unicode.Is(defaultIgnorable(), r); got != want[r] {
			t.Errorf("%U: derived %v, Unicode %s says %v", r, got, norm.Version, want[r])
		}
	}
}

// TestInvisibleCharactersMakeNoIdentity: each default-ignorable character
// the attack tests found (and every other one) inside a name leaves the
// name as it is, so it gets no budget nor block of its own, and shows as
// the name it is in the admin.
func TestInvisibleCharactersMakeNoIdentity(t *testing.T) {
	for _, r := range []rune{0x034F, 0xFE00, 0xFE0F, 0x3164, 0x115F, 0xFFA0, 0x180B, 0x17B4, 0x200B, 0x2060, 0xE0001, 0xE0100} {
		for _, name := range []string{"caro" + string(r) + "l", string(r) + "carol", "carol" + string(r), "CARO" + string(r) + string(r) + "L"} {
			assert.Equal(t, "carol", NormalizeUsername(name, 255), "%U in %+q", r, name)
		}
	}
	rangetable.Visit(defaultIgnorable(), func(r rune) {
		if got := NormalizeUsername("caro"+string(r)+"l", 255); got != "carol" {
			t.Errorf("%U: %+q", r, got)
		}
	})
	// Visible characters of the same scripts stay.
	assert.Equal(t, "한글", NormalizeUsername("한글", 255))
	assert.Equal(t, "ᠮᠣᠩᠭᠣᠯ", NormalizeUsername("ᠮᠣᠩᠭᠣᠯ", 255))
}
