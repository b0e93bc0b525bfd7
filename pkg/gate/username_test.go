package gate

import (
	"strings"
	"testing"
	"unicode/utf8"

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
		{"turkish dotted I", "İ", "i̇"},
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
