package webhook

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/events"
)

func TestSlackLine(t *testing.T) {
	at := time.Date(2026, 3, 14, 14, 49, 0, 0, time.UTC)
	in := func(d time.Duration) *time.Time { u := at.Add(d); return &u }
	base := events.Block{V: 1, Type: events.TypeBlock, ID: "x", Time: at, Kind: "username", Subject: "alice",
		Until: in(15 * time.Minute), Failures: 5, Reason: "auto"}
	tests := []struct {
		name string
		edit func(b *events.Block)
		want string
	}{
		{name: "block", edit: func(*events.Block) {},
			want: "defender: username `alice` blocked after 5 failures until 15:04 UTC"},
		{name: "from an address", edit: func(b *events.Block) { b.IP = "203.0.113.7" },
			want: "defender: username `alice` blocked after 5 failures until 15:04 UTC (from 203.0.113.7)"},
		{name: "ip block names its address once", edit: func(b *events.Block) { b.Kind, b.Subject, b.IP = "ip", "2001:db8::1", "2001:db8::1" },
			want: "defender: ip `2001:db8::1` blocked after 5 failures until 15:04 UTC"},
		{name: "unblocked by the user", edit: func(b *events.Block) {
			b.Type, b.Until, b.Reason, b.IP = events.TypeUnblock, nil, "user", "198.51.100.2"
		}, want: "defender: username `alice` unblocked (user) (from 198.51.100.2)"},
		{name: "ends another day", edit: func(b *events.Block) { b.Until = in(48 * time.Hour) },
			want: "defender: username `alice` blocked after 5 failures until 2026-03-16 14:49 UTC"},
		{name: "other zone", edit: func(b *events.Block) {
			u := b.Until.In(time.FixedZone("X", 3600))
			b.Until = &u
		}, want: "defender: username `alice` blocked after 5 failures until 15:04 UTC"},
		{name: "permanent", edit: func(b *events.Block) { b.Permanent, b.Until = true, nil },
			want: "defender: username `alice` blocked after 5 failures permanently"},
		{name: "by an admin", edit: func(b *events.Block) { b.Failures, b.Reason = 0, "admin" },
			want: "defender: username `alice` blocked until 15:04 UTC (admin)"},
		{name: "unblock", edit: func(b *events.Block) { b.Type, b.Until, b.Reason = events.TypeUnblock, nil, "admin" },
			want: "defender: username `alice` unblocked (admin)"},
		{name: "local", edit: func(b *events.Block) { b.Kind, b.Subject, b.Local, b.Gate = "ip", "203.0.113.7", true, "gate-1" },
			want: "defender: ip `203.0.113.7` blocked after 5 failures until 15:04 UTC on gate `gate-1` only"},
		{name: "observe", edit: func(b *events.Block) { b.Observe = true },
			want: "defender: [observe] username `alice` blocked after 5 failures until 15:04 UTC"},
		{name: "hostile gate and reason", edit: func(b *events.Block) { b.Local, b.Gate, b.Reason = true, "<!here>`", "<x>" },
			want: "defender: username `alice` blocked after 5 failures until 15:04 UTC (&lt;x&gt;) on gate `&lt;!here&gt;ˋ` only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := base
			tc.edit(&b)
			assert.Equal(t, tc.want, slackLine(b))
		})
	}
}

func TestSlackEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"<!channel>", "&lt;!channel&gt;"},
		{"<https://evil|x>", "&lt;https://evil|x&gt;"},
		{"a&amp;b", "a&amp;amp;b"},
		{"a\nb\r\tc", `a\nb\r\tc`},
		{"``` code", "ˋˋˋ code"},
		{"admin\u202egnp.exe", `admin\u202egnp.exe`},
		{"a\u2028b", `a\u2028b`},
		{"zoë 日本", "zoë 日本"},
		{"bad\xffbyte", "bad\ufffdbyte"},
		{strings.Repeat("<", 100), strings.Repeat("&lt;", 50) + "…"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, slackEscape(tc.in, 200), "%q", tc.in)
	}
}

func TestSlackTextBounded(t *testing.T) {
	blocks := make([]events.Block, 500)
	for i := range blocks {
		blocks[i] = events.Block{Type: events.TypeBlock, Kind: "username", Subject: strings.Repeat("<", 10_000), Permanent: true}
	}
	text := slackText(blocks)
	lines := strings.Split(text, "\n")
	require.Equal(t, slackMaxLines+1, len(lines), "lines")
	assert.Equal(t, "defender: and 450 more", lines[slackMaxLines])
	assert.LessOrEqual(t, len(text), slackMaxText)
	assert.Equal(t, "defender: username `x` unblocked", slackText([]events.Block{{Type: events.TypeUnblock, Kind: "username", Subject: "x"}}))
}

func FuzzSlackText(f *testing.F) {
	for _, s := range []string{"alice", "<!channel>", "<https://evil|x>", "a\nb", "`x`", "\u202e", "\xff"} {
		f.Add(s, "gate", "auto")
	}
	f.Fuzz(func(t *testing.T, subject, gate, reason string) {
		b := events.Block{Type: events.TypeBlock, Kind: "pair", Subject: subject, Gate: gate, Reason: reason, IP: reason, Local: true}
		data, err := body(FormatSlack, []events.Block{b, b}, time.Time{})
		require.NoError(t, err)
		var msg struct{ Text string }
		require.NoError(t, json.Unmarshal(data, &msg))
		assert.NotContains(t, msg.Text, "<")
		assert.NotContains(t, msg.Text, ">")
		lines := strings.Split(msg.Text, "\n")
		require.Len(t, lines, 2, "a field broke the lines")
		for _, l := range lines {
			assert.Equal(t, 4, strings.Count(l, "`"), "a field broke the code spans: %q", l)
			assert.LessOrEqual(t, len(l), 600)
		}
	})
}
