package mail

import (
	"context"
	"errors"
	"html"
	"log/slog"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// testOptions send to the test SMTP server on port in plain text.
func testOptions(port int) Options {
	return Options{Host: "127.0.0.1", Port: port, TLS: "none", From: "Defender <no-reply@example.com>", Site: "Example Shop",
		Log: slog.New(slog.DiscardHandler)}
}

// send makes a Sender from o and sends m with it.
func send(t *testing.T, o Options, m Message) error {
	t.Helper()
	s, err := NewSender(o)
	require.NoError(t, err)
	return s.Send(context.Background(), m)
}

func testMessage() Message {
	until := time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)
	return Message{
		To:        "alice@example.org",
		Username:  "alice",
		IP:        "203.0.113.7",
		Failures:  7,
		Time:      until.Add(-15 * time.Minute),
		Until:     &until,
		UnlockURL: "https://shop.example/defender/unlock?token=abc123&u=1",
		UnlockTTL: time.Hour,
		EventID:   "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
	}
}

func TestSendDelivers(t *testing.T) {
	box := testenv.SMTP(t, testenv.SMTPOptions{})
	o := testOptions(box.Port)
	m := testMessage()
	require.NoError(t, send(t, o, m))

	msgs := box.Messages()
	require.Len(t, msgs, 1)
	assert.Equal(t, "no-reply@example.com", msgs[0].From)
	assert.Equal(t, []string{"alice@example.org"}, msgs[0].To)

	p := msgs[0].Parse(t)
	to, err := p.Header.AddressList("To")
	require.NoError(t, err)
	assert.Equal(t, []*netmail.Address{{Address: "alice@example.org"}}, to)
	from, err := p.Header.AddressList("From")
	require.NoError(t, err)
	assert.Equal(t, []*netmail.Address{{Name: "Defender", Address: "no-reply@example.com"}}, from)
	assert.Equal(t, "Your account was locked after failed sign-ins", p.Header.Get("Subject"))
	assert.Equal(t, MessageID(m.EventID, o.From), p.Header.Get("Message-Id"))
	assert.Equal(t, "<"+m.EventID+"@example.com>", p.Header.Get("Message-Id"))
	assert.Equal(t, "auto-generated", p.Header.Get("Auto-Submitted"))
	_, err = p.Header.Date()
	assert.NoError(t, err, "Date header")
	assert.Equal(t, "multipart/alternative", p.Type)

	for name, body := range map[string]string{"text": p.Text, "HTML": html.UnescapeString(p.HTML)} {
		assert.Contains(t, body, "203.0.113.7", name)
		assert.Contains(t, body, "7 failed sign-in attempts", name)
		assert.Contains(t, body, m.UnlockURL, name)
		assert.Contains(t, body, "2026-03-04 05:06 UTC", name) // until
		assert.Contains(t, body, "2026-03-04 04:51 UTC", name) // the block
		assert.Contains(t, body, "valid for 1 hour", name)
		assert.Contains(t, body, "Example Shop", name)
		assert.Contains(t, body, "alice", name)
	}
}

func TestSendSameEventSameMessageID(t *testing.T) {
	box := testenv.SMTP(t, testenv.SMTPOptions{})
	o := testOptions(box.Port)
	m := testMessage()
	require.NoError(t, send(t, o, m))
	require.NoError(t, send(t, o, m))
	other := m
	other.EventID = "0190a3b4-0000-7e8f-9a0b-1c2d3e4f5a6b"
	require.NoError(t, send(t, o, other))

	msgs := box.Messages()
	require.Len(t, msgs, 3)
	first := msgs[0].Parse(t).Header.Get("Message-Id")
	assert.Equal(t, first, msgs[1].Parse(t).Header.Get("Message-Id"), "a resend keeps the Message-ID")
	assert.NotEqual(t, first, msgs[2].Parse(t).Header.Get("Message-Id"), "another event has another")
}

func TestSendHostileUsernames(t *testing.T) {
	long := strings.Repeat("ж", 10000)
	tests := []struct {
		name     string
		username string
		wantText string // in the text part, quoted as the default template quotes it
	}{
		{"header injection", "evil\r\nBcc: victim@example.com", `"evilBcc: victim@example.com"`},
		{"script", "<script>alert(1)</script>", `"<script>alert(1)</script>"`},
		{"link", "<a href=https://evil>click</a>", `"<a href=https://evil>click</a>"`},
		{"10,000 runes", long, `"` + strings.Repeat("ж", 200) + `…"`},
		{"right-to-left override", "\u202Eexe.gnp", `"exe.gnp"`},
		{"unicode line separator", "a\u2028b\u0085c", `"abc"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			box := testenv.SMTP(t, testenv.SMTPOptions{})
			m := testMessage()
			m.Username = tc.username
			require.NoError(t, send(t, testOptions(box.Port), m))
			msgs := box.Messages()
			require.Len(t, msgs, 1)
			assert.Equal(t, []string{"alice@example.org"}, msgs[0].To, "envelope recipients")

			p := msgs[0].Parse(t)
			assert.Empty(t, p.Header["Bcc"])
			assert.Len(t, p.Header["To"], 1)
			to, err := p.Header.AddressList("To")
			require.NoError(t, err)
			assert.Len(t, to, 1)
			for _, piece := range []string{"victim", "script", "evil", "click", "ж", "gnp"} {
				assert.NotContains(t, p.RawHeader, piece, "the username reached a header")
			}

			lower := strings.ToLower(p.HTML)
			assert.NotContains(t, lower, "<script")
			assert.NotContains(t, lower, "<a href=https://evil")
			assert.NotContains(t, p.HTML, "\u202E")

			assert.Contains(t, p.Text, tc.wantText)
			assert.NotContains(t, p.Text, "\u202E")
			assert.NotContains(t, p.Text, strings.Repeat("ж", 201))
			assert.NotContains(t, p.Text, "\r", "mail line ends are CRLF, so a lone CR is the name's")
			for _, line := range strings.Split(p.Text, "\n") {
				assert.False(t, strings.HasPrefix(line, "Bcc:"), "a line of the name's own: %q", line)
			}
		})
	}
}

func TestSendStartTLSWithAuth(t *testing.T) {
	box := testenv.SMTP(t, testenv.SMTPOptions{User: "mailer", Pass: "s3cret", TLS: testenv.SMTPStartTLS})
	o := testOptions(box.Port)
	o.TLS, o.InsecureSkipVerify, o.Username, o.Password = "starttls", true, "mailer", "s3cret"

	require.NoError(t, send(t, o, testMessage()))
	require.Len(t, box.Messages(), 1)

	t.Run("wrong password", func(t *testing.T) {
		o := o
		o.Password = "guess"
		err := send(t, o, testMessage())
		require.Error(t, err)
		assert.Contains(t, err.Error(), `refused the SMTP login as "mailer"`)
		assert.False(t, Permanent(err), "a configuration error, not this message's: %v", err)
		assert.Len(t, box.Messages(), 1, "nothing more delivered")
	})
	t.Run("certificate verified by default", func(t *testing.T) {
		o := o
		o.InsecureSkipVerify = false
		err := send(t, o, testMessage())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "certificate")
		assert.Len(t, box.Messages(), 1, "nothing more delivered")
	})
}

func TestSendStartTLSRequired(t *testing.T) {
	box := testenv.SMTP(t, testenv.SMTPOptions{})
	o := testOptions(box.Port)
	o.TLS = "starttls"
	err := send(t, o, testMessage())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "STARTTLS")
	assert.False(t, Permanent(err))
	assert.Zero(t, box.MailCommands(), "no MAIL command in clear")
	assert.Empty(t, box.Messages())

	t.Run("opportunistic sends in clear without a login", func(t *testing.T) {
		o := o
		o.TLS = "opportunistic"
		require.NoError(t, send(t, o, testMessage()))
		assert.Len(t, box.Messages(), 1)
	})
	t.Run("opportunistic never logs in in clear", func(t *testing.T) {
		box := testenv.SMTP(t, testenv.SMTPOptions{User: "mailer", Pass: "s3cret"})
		o := testOptions(box.Port)
		o.TLS, o.Username, o.Password = "opportunistic", "mailer", "s3cret"
		require.Error(t, send(t, o, testMessage()))
		assert.Zero(t, box.MailCommands())
	})
}

func TestSendImplicitTLS(t *testing.T) {
	box := testenv.SMTP(t, testenv.SMTPOptions{User: "mailer", Pass: "s3cret", TLS: testenv.SMTPImplicitTLS})
	o := testOptions(box.Port)
	o.TLS, o.InsecureSkipVerify, o.Username, o.Password = "tls", true, "mailer", "s3cret"
	require.NoError(t, send(t, o, testMessage()))
	assert.Len(t, box.Messages(), 1)
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		name     string
		rcptErr  *smtp.SMTPError
		want     bool
		wantCode string
	}{
		{"550 for the recipient", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, true, "550"},
		{"450 for the recipient", &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "try later"}, false, "450"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			box := testenv.SMTP(t, testenv.SMTPOptions{RcptErr: tc.rcptErr})
			err := send(t, testOptions(box.Port), testMessage())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantCode)
			assert.Equal(t, tc.want, Permanent(err), "%v", err)
			assert.Empty(t, box.Messages())
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		err := send(t, testOptions(testenv.FreePort(t)), testMessage())
		require.Error(t, err)
		assert.False(t, Permanent(err), "%v", err)
	})
	t.Run("invalid recipient address", func(t *testing.T) {
		for _, to := range []string{"", "not an address", "a@example.com, b@example.com", `"Bank" <evil@example.com>`, "a@example.com\r\nBcc: b@example.com"} {
			m := testMessage()
			m.To = to
			err := send(t, testOptions(testenv.FreePort(t)), m)
			require.Error(t, err, "%q", to)
			assert.True(t, Permanent(err), "%q: %v", to, err)
		}
	})
	t.Run("no event id", func(t *testing.T) {
		m := testMessage()
		m.EventID = ""
		err := send(t, testOptions(testenv.FreePort(t)), m)
		require.Error(t, err)
		assert.True(t, Permanent(err), "%v", err)
	})
	t.Run("cancelled", func(t *testing.T) {
		s, err := NewSender(testOptions(testenv.FreePort(t)))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err = s.Send(ctx, testMessage())
		require.Error(t, err)
		assert.False(t, Permanent(err))
	})
	assert.False(t, Permanent(nil))
	assert.False(t, Permanent(errors.New("550 looks permanent but is just text")))
}

func TestMessageID(t *testing.T) {
	tests := []struct {
		name, eventID, from, want string
	}{
		{"uuid", "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", "Defender <no-reply@example.com>", "<0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b@example.com>"},
		{"bare from", "abc", "no-reply@mail.example.com", "<abc@mail.example.com>"},
		{"from not an address", "abc", "nobody", "<abc@defender.invalid>"},
		{"from with a non-ASCII domain", "abc", "x@exämple.com", "<abc@defender.invalid>"},
		{"id with a line break", "a\r\nBcc: x", "x@example.com", "hashed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := MessageID(tc.eventID, tc.from)
			assert.Equal(t, got, MessageID(tc.eventID, tc.from), "deterministic")
			if tc.want == "hashed" {
				assert.Regexp(t, `^<sha256\.[0-9a-f]{32}@example\.com>$`, got)
				return
			}
			assert.Equal(t, tc.want, got)
		})
	}
	assert.NotEqual(t, MessageID("a\r\n", "x@example.com"), MessageID("a\r\n\r\n", "x@example.com"))
	assert.Regexp(t, `^<sha256\.`, MessageID(strings.Repeat("a", 129), "x@example.com"), "too long for the header")
}

func TestNewSenderOptions(t *testing.T) {
	ok := Options{Host: "smtp.example.com", From: "no-reply@example.com"}
	_, err := NewSender(ok)
	require.NoError(t, err)

	tests := []struct {
		name    string
		change  func(*Options)
		wantErr string
	}{
		{"no host", func(o *Options) { o.Host = "" }, "Options.Host"},
		{"no from", func(o *Options) { o.From = "" }, "Options.From"},
		{"bad from", func(o *Options) { o.From = "Defender <no-reply>" }, "Options.From"},
		{"bad port", func(o *Options) { o.Port = 70000 }, "Options.Port"},
		{"bad TLS", func(o *Options) { o.TLS = "ssl" }, "Options.TLS"},
		{"password without user", func(o *Options) { o.Password = "x" }, "Options.Password"},
		{"login in clear", func(o *Options) { o.TLS, o.Username = "none", "u" }, "in clear"},
		{"negative timeout", func(o *Options) { o.Timeout = -time.Second }, "Options.Timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			_, err := NewSender(o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestOptionsDefaultPorts(t *testing.T) {
	for mode, want := range map[string]int{"": 587, "starttls": 587, "opportunistic": 587, "tls": 465, "none": 25} {
		o := Options{TLS: mode}
		o.setDefaults()
		assert.Equal(t, want, o.Port, "TLS %q", mode)
	}
}
