package mail

import (
	"embed"
	"fmt"
	htemplate "html/template"
	"io"
	"io/fs"
	"strings"
	ttemplate "text/template"
	"time"
	"unicode"
)

// subject is the same for every mail: a header is no place for anything
// an attacker typed (see the package doc).
const subject = "Your account was locked after failed sign-ins"

// maxNameRunes caps the username in the bodies: enough for any real
// name, short enough that a 10,000-character one does not bury the mail.
const maxNameRunes = 200

// maxIPRunes caps the address: an IPv6 address with a zone fits.
const maxIPRunes = 64

//go:embed templates/block.txt templates/block.html
var defaults embed.FS

// data is what the templates see; the package doc lists its fields for
// operators who write their own.
type data struct {
	Site        string
	Username    string
	IP          string
	Failures    int
	Time        string
	Until       string
	UnlockURL   string
	UnlockValid string
}

// newData prepares m for the templates: the username and address
// cleaned, the times in UTC as text.
func newData(site string, m Message) data {
	d := data{
		Site:      site,
		Username:  clean(m.Username, maxNameRunes),
		IP:        clean(m.IP, maxIPRunes),
		Failures:  m.Failures,
		Time:      stamp(m.Time),
		UnlockURL: m.UnlockURL,
	}
	if m.Until != nil {
		d.Until = stamp(*m.Until)
	}
	if m.UnlockURL != "" {
		d.UnlockValid = validFor(m.UnlockTTL)
	}
	return d
}

// clean removes from s the characters that change how the text around
// them reads: controls (CR and LF would start a line the attacker
// wrote), format characters (U+202E reverses what follows) and the
// Unicode line and paragraph separators. It keeps at most max runes and
// marks a cut with "…".
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			continue
		}
		if n == max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// stamp writes t the same way for every reader, whatever their zone.
func stamp(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// validFor says how long an unlock link lasts in words.
func validFor(d time.Duration) string {
	switch {
	case d <= 0:
		return "a limited time"
	case d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int(d.Round(time.Minute)/time.Minute), "minute")
	default:
		return plural(int(d.Round(time.Second)/time.Second), "second")
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// templates are the two bodies of the mail.
type templates struct {
	text *ttemplate.Template
	html *htemplate.Template
}

// loadTemplates reads the operator's templates, or the embedded defaults
// for an empty path.
func loadTemplates(textPath, htmlPath string) (templates, error) {
	text, err := load("text", textPath, "templates/block.txt", ttemplate.ParseFiles, ttemplate.ParseFS)
	if err != nil {
		return templates{}, err
	}
	html, err := load("HTML", htmlPath, "templates/block.html", htemplate.ParseFiles, htemplate.ParseFS)
	if err != nil {
		return templates{}, err
	}
	return templates{text: text, html: html}, nil
}

type executor interface {
	Execute(w io.Writer, data any) error
}

// load parses one template and executes it on samples, so that a
// template naming a field that does not exist fails at start, not at
// the first block.
func load[T executor](kind, path, builtin string, fromFiles func(...string) (T, error), fromFS func(fs.FS, ...string) (T, error)) (T, error) {
	var t T
	var err error
	if path == "" {
		path = "(embedded) " + builtin
		t, err = fromFS(defaults, builtin)
	} else {
		t, err = fromFiles(path)
	}
	for _, d := range samples() {
		if err != nil {
			break
		}
		err = t.Execute(io.Discard, d)
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("mail: %s template %s: %w", kind, path, err)
	}
	return t, nil
}

// samples take every branch of the default templates: a block with an
// end, an address and a link, and a permanent one with none of these.
func samples() []data {
	until := time.Date(2026, 1, 2, 4, 5, 0, 0, time.UTC)
	full := Message{Username: "alice", IP: "192.0.2.1", Failures: 5, Time: until.Add(-time.Hour), Until: &until,
		UnlockURL: "https://example.com/unlock?t=x", UnlockTTL: time.Hour}
	bare := Message{Username: "alice", Failures: 5, Time: until}
	return []data{newData("Example", full), newData("Example", bare)}
}

// render writes both bodies for d.
func (t templates) render(d data) (text, html string, err error) {
	var tb, hb strings.Builder
	if err := t.text.Execute(&tb, d); err != nil {
		return "", "", fmt.Errorf("text body: %w", err)
	}
	if err := t.html.Execute(&hb, d); err != nil {
		return "", "", fmt.Errorf("HTML body: %w", err)
	}
	return tb.String(), hb.String(), nil
}
