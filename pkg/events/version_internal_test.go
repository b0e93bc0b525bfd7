package events

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/mod/semver"
)

func TestCanonicalVersion(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"2.9.10", "v2.9.10", true},
		{"2.10", "v2.10.0", true},
		{"v2.15.2", "v2.15.2", true},
		{"2.11.0-RC.1", "v2.11.0", true},
		{"2.10.3+build", "v2.10.3", true},
		{"", "", false},
		{"2", "", false},
		{"2.x.1", "", false},
		{"2.10.1.4", "", false},
	} {
		got, ok := canonical(c.in)
		assert.Equal(t, c.ok, ok, c.in)
		if c.ok {
			assert.Equal(t, c.want, got, c.in)
		}
	}
	// Numbers, not strings: 2.9 is older than 2.10.
	older := func(a, b string) bool {
		va, _ := canonical(a)
		vb, _ := canonical(b)
		return semver.Compare(va, vb) < 0
	}
	assert.True(t, older("2.9.10", "2.10.0"))
	assert.False(t, older("2.10.0", "2.10.0"))
	assert.False(t, older("3.0.0", "2.10.0"))
}
