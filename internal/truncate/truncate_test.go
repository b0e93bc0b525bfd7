package truncate

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abcdef", 3, "abc"},
		{"aжb", 2, "a"}, // ж is two bytes: not split
		{"aжb", 3, "aж"},
		{"ж", 1, ""},
		{"", 0, ""},
	} {
		got := UTF8(tc.in, tc.n)
		assert.Equal(t, tc.want, got, "%q to %d", tc.in, tc.n)
		assert.True(t, utf8.ValidString(got))
	}
}
