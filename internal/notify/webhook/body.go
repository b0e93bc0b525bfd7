package webhook

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/defender-go/defender/pkg/events"
)

// Bounds of a Slack message. Slack cuts a text near 40,000 characters;
// an alert should stay readable well before that.
const (
	slackMaxLines   = 50     // block lines per message; the rest are counted in "and N more"
	slackMaxText    = 30_000 // bytes of the whole text
	slackMaxSubject = 200    // bytes of an escaped subject
	slackMaxField   = 64     // bytes of any other escaped field
)

// body is what an endpoint of format f receives for blocks, at now.
func body(f Format, blocks []events.Block, now time.Time) ([]byte, error) {
	if f == FormatSlack {
		return json.Marshal(struct {
			Text string `json:"text"`
		}{slackText(blocks)})
	}
	return json.Marshal(struct {
		Blocks []events.Block `json:"blocks"`
		SentAt string         `json:"sent_at"`
	}{blocks, now.UTC().Format(time.RFC3339)})
}

// slackText is blocks as Slack lines, one per block, at most
// slackMaxLines of them and slackMaxText bytes, then "and N more".
func slackText(blocks []events.Block) string {
	var sb strings.Builder
	for i, b := range blocks {
		if i > 0 {
			sb.WriteByte('\n')
		}
		line := slackLine(b)
		// The reserve keeps room for the "and N more" line.
		if i == slackMaxLines || sb.Len()+len(line) > slackMaxText-100 {
			fmt.Fprintf(&sb, "defender: and %d more", len(blocks)-i)
			break
		}
		sb.WriteString(line)
	}
	return sb.String()
}

// slackLine is one block in words, for example "defender: username
// `alice` blocked after 5 failures until 15:04 UTC (from 203.0.113.7)".
// Every field that comes from outside goes through slackEscape.
func slackLine(b events.Block) string {
	var sb strings.Builder
	sb.WriteString("defender: ")
	if b.Observe {
		sb.WriteString("[observe] ")
	}
	fmt.Fprintf(&sb, "%s `%s` ", slackEscape(b.Kind, slackMaxField), slackEscape(b.Subject, slackMaxSubject))
	if b.Type == events.TypeUnblock {
		sb.WriteString("unblocked")
	} else {
		sb.WriteString("blocked")
		if b.Failures > 0 {
			fmt.Fprintf(&sb, " after %d failures", b.Failures)
		}
		sb.WriteString(until(b))
	}
	if b.Reason != "" && b.Reason != "auto" {
		fmt.Fprintf(&sb, " (%s)", slackEscape(b.Reason, slackMaxField))
	}
	// An ip block's subject already says where it came from.
	if b.IP != "" && b.IP != b.Subject {
		fmt.Fprintf(&sb, " (from %s)", slackEscape(b.IP, slackMaxField))
	}
	if b.Local {
		fmt.Fprintf(&sb, " on gate `%s` only", slackEscape(b.Gate, slackMaxField))
	}
	return sb.String()
}

// until is how long a block lasts, in words: the date is written only
// when the block ends on another day than it began.
func until(b events.Block) string {
	if b.Permanent || b.Until == nil {
		return " permanently"
	}
	end := b.Until.UTC()
	layout := "15:04 UTC"
	if y, m, d := end.Date(); b.Time.IsZero() || !sameDay(b.Time.UTC(), y, m, d) {
		layout = "2006-01-02 15:04 UTC"
	}
	return " until " + end.Format(layout)
}

// sameDay reports whether t falls on the date y-m-d.
func sameDay(t time.Time, y int, m time.Month, d int) bool {
	ty, tm, td := t.Date()
	return ty == y && tm == m && td == d
}

// slackEscape makes s inert inside an inline code span of Slack's mrkdwn,
// cut to at most limit bytes ("…" marks a cut):
//   - &, < and > become &amp; &lt; &gt;, as Slack asks: "<!channel>"
//     would ping everyone, "<https://evil|click>" would be a link;
//   - a backtick becomes ˋ (U+02CB), so that it cannot close the span;
//   - control and invisible formatting characters (newlines, bidi
//     overrides, line separators) are written as Go escapes (\n, \u202e),
//     so that a name can neither start a line of its own nor disguise
//     itself.
func slackEscape(s string, limit int) string {
	var sb strings.Builder
	for _, r := range s {
		piece := slackRune(r)
		if sb.Len()+len(piece) > limit {
			sb.WriteString("…")
			break
		}
		sb.WriteString(piece)
	}
	return sb.String()
}

// slackRune is r as slackEscape writes it.
func slackRune(r rune) string {
	switch r {
	case '&':
		return "&amp;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	case '`':
		return "ˋ"
	}
	if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
		q := strconv.QuoteRuneToASCII(r)
		return q[1 : len(q)-1]
	}
	return string(r)
}
