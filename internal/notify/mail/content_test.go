package mail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestDefaultTextsNeverJudgeThePassword: the mail may reach the attacker
// too, so it must not tell whether a password tried was right.
func TestDefaultTextsNeverJudgeThePassword(t *testing.T) {
	tmpl, err := loadTemplates("", "")
	require.NoError(t, err)
	raw, err := defaults.ReadFile("templates/block.txt")
	require.NoError(t, err)
	rawHTML, err := defaults.ReadFile("templates/block.html")
	require.NoError(t, err)
	bodies := []string{string(raw), string(rawHTML)}
	for _, d := range samples() {
		text, html, err := tmpl.render(d)
		require.NoError(t, err)
		bodies = append(bodies, text, html)
	}
	for _, body := range bodies {
		lower := strings.ToLower(body)
		for _, word := range []string{"correct", "right password", "wrong password", "incorrect"} {
			assert.NotContains(t, lower, word)
		}
	}
}

func TestDefaultTextsSayWhatToDo(t *testing.T) {
	tmpl, err := loadTemplates("", "")
	require.NoError(t, err)
	until := time.Date(2026, 1, 2, 4, 5, 0, 0, time.UTC)
	tests := []struct {
		name string
		m    Message
		want []string
		not  []string
	}{
		{"until, with a link", Message{Username: "bob", IP: "2001:db8::1", Failures: 3, Time: until.Add(-time.Hour), Until: &until,
			UnlockURL: "https://example.com/u", UnlockTTL: 30 * time.Minute},
			[]string{"3 failed sign-in attempts", "from 2001:db8::1 at 2026-01-02 03:05 UTC", "until 2026-01-02 04:05 UTC",
				"https://example.com/u", "valid for 30 minutes", "works once", "button", "change your", "two-factor"}, nil},
		{"permanent, no link", Message{Username: "bob", Failures: 1, Time: until},
			[]string{"1 failed sign-in attempt.", "until it is unlocked", "support", "two-factor"},
			[]string{"came from", "link"}},
		{"until, no link", Message{Username: "bob", Failures: 9, Time: until, Until: &until},
			[]string{"Wait until then", "two-factor"}, []string{"link"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, html, err := tmpl.render(newData("Example", tc.m))
			require.NoError(t, err)
			for _, body := range []string{text, html} {
				flat := strings.Join(strings.Fields(body), " ") // the HTML wraps lines
				for _, w := range tc.want {
					assert.Contains(t, flat, w)
				}
				for _, w := range tc.not {
					assert.NotContains(t, flat, w)
				}
			}
		})
	}
}

func TestOperatorTemplates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	textPath := write("custom.txt", "Custom text for {{.Username}}: {{.Failures}} failures.\n")
	htmlPath := write("custom.html", "<p>Custom HTML for {{.Username}}</p>\n")

	box := testenv.SMTP(t, testenv.SMTPOptions{})
	o := testOptions(box.Port)
	o.TextTemplate, o.HTMLTemplate = textPath, htmlPath
	m := testMessage()
	m.Username = "<b>carol</b>"
	require.NoError(t, send(t, o, m))
	msgs := box.Messages()
	require.Len(t, msgs, 1)
	p := msgs[0].Parse(t)
	assert.Equal(t, "Custom text for <b>carol</b>: 7 failures.\n", p.Text)
	assert.Equal(t, "<p>Custom HTML for &lt;b&gt;carol&lt;/b&gt;</p>\n", p.HTML, "still escaped")

	t.Run("one replaced, the other default", func(t *testing.T) {
		tmpl, err := loadTemplates(textPath, "")
		require.NoError(t, err)
		text, html, err := tmpl.render(newData("Example", m))
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(text, "Custom text"))
		assert.Contains(t, html, "If this was not you")
	})

	broken := []struct {
		name, file, content string
		text                bool
	}{
		{"text does not parse", "broken.txt", "Hello {{.Username", true},
		{"HTML does not parse", "broken.html", "<p>{{if .IP}}</p>", false},
		{"unknown field", "nofield.txt", "{{.Password}}", true},
		{"unknown field in a branch", "branch.html", "{{if .UnlockURL}}{{.Link}}{{end}}", false},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.file, tc.content)
			o := testOptions(1)
			if tc.text {
				o.TextTemplate = p
			} else {
				o.HTMLTemplate = p
			}
			_, err := NewSender(o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), p)
		})
	}
	t.Run("missing file", func(t *testing.T) {
		o := testOptions(1)
		o.TextTemplate = filepath.Join(dir, "absent.txt")
		_, err := NewSender(o)
		require.Error(t, err)
		assert.Contains(t, err.Error(), o.TextTemplate)
	})
}

func TestClean(t *testing.T) {
	tests := []struct {
		name, in, want string
		max            int
	}{
		{"plain", "alice", "alice", 200},
		{"CR LF tab", "a\r\nb\tc", "abc", 200},
		{"format characters", "a\u202Eb\u200Bc\uFEFF", "abc", 200},
		{"NEL and separators", "a\u0085b\u2028c\u2029d", "abcd", 200},
		{"unicode kept", "Zoë 山田 😀", "Zoë 山田 😀", 200},
		{"exactly max", "abc", "abc", 3},
		{"over max", "abcd", "abc…", 3},
		{"dropped do not count", "a\nb\nc", "abc", 3},
		{"empty", "", "", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, clean(tc.in, tc.max))
		})
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"alice", "evil\r\nBcc: x@example.com", "\u202Egnp", strings.Repeat("ж", 300), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := clean(s, maxNameRunes)
		assert.LessOrEqual(t, utf8.RuneCountInString(got), maxNameRunes+1)
		for _, r := range got {
			assert.False(t, unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp), "%U kept", r)
		}
	})
}

func TestValidFor(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "a limited time"},
		{time.Hour, "1 hour"},
		{24 * time.Hour, "24 hours"},
		{90 * time.Minute, "90 minutes"},
		{time.Minute, "1 minute"},
		{45 * time.Second, "45 seconds"},
		{time.Minute + 40*time.Second, "2 minutes"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, validFor(tc.d), "%s", tc.d)
	}
}
