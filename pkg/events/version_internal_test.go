package events

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want version
		ok   bool
	}{
		{"2.9.10", version{2, 9, 10}, true},
		{"2.10", version{2, 10, 0}, true},
		{"v2.15.2", version{2, 15, 2}, true},
		{"2.11.0-RC.1", version{2, 11, 0}, true},
		{"2.10.3+build", version{2, 10, 3}, true},
		{"", version{}, false},
		{"2", version{}, false},
		{"2.x.1", version{}, false},
		{"2.10.1.4", version{}, false},
	} {
		got, ok := parseVersion(c.in)
		assert.Equal(t, c.ok, ok, c.in)
		if c.ok {
			assert.Equal(t, c.want, got, c.in)
		}
	}
	// Numbers, not strings: 2.9 is older than 2.10.
	assert.True(t, version{2, 9, 10}.less(version{2, 10, 0}))
	assert.False(t, version{2, 10, 0}.less(version{2, 10, 0}))
	assert.False(t, version{3, 0, 0}.less(version{2, 10, 0}))
}
