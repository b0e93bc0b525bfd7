package mail

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Options configure a Sender. Host and From are required.
type Options struct {
	// Host and Port name the SMTP server. Port 0 is the TLS mode's usual
	// port: 587 for starttls and opportunistic, 465 for tls, 25 for none.
	Host string
	Port int
	// Username and Password log in with SMTP AUTH (PLAIN or LOGIN, as the
	// server offers them, and only over TLS); an empty Username sends
	// without logging in.
	Username, Password string
	// TLS is how the connection is protected:
	//   - "starttls" (the default): STARTTLS required; a server that does
	//     not offer it gets nothing but EHLO.
	//   - "opportunistic": STARTTLS when offered, plain text otherwise.
	//   - "tls": implicit TLS from the first byte (port 465).
	//   - "none": plain text, for a mail catcher on the same host.
	TLS string
	// InsecureSkipVerify accepts any server certificate: for tests and
	// local catchers only.
	InsecureSkipVerify bool
	// From is the sender, such as "Defender <no-reply@example.com>"; its
	// domain ends every Message-ID.
	From string
	// Timeout bounds a send (default 15s): the dial, and each SMTP
	// exchange after it, as go-mail applies it to the connection.
	Timeout time.Duration
	// TextTemplate and HTMLTemplate are paths of operator templates that
	// replace the embedded defaults; the package doc lists their fields.
	TextTemplate, HTMLTemplate string
	// Site is the site's name in the mail (default "your account").
	Site string
	// Log reports sent mails (default slog.Default()).
	Log *slog.Logger
}

// Message is one block to tell a user about.
type Message struct {
	// To is the user's address, as Lookup.Email found it.
	To string
	// Username is the username as blocked: anything an attacker typed.
	Username string
	// IP is the address of the last failure; "" when unknown.
	IP string
	// Failures is the number of failed sign-ins that led to the block.
	Failures int
	// Time is when the block happened.
	Time time.Time
	// Until is when the block ends; nil for one that lasts until an
	// admin or the unlock link lifts it.
	Until *time.Time
	// UnlockURL is the single-use unlock link; "" when unlocking from
	// the mail is off.
	UnlockURL string
	// UnlockTTL is how long UnlockURL is valid.
	UnlockTTL time.Duration
	// EventID is the block event's id, from which the Message-ID derives.
	EventID string
}

// Sender writes block mails and sends them over SMTP. It is safe for
// concurrent use: each Send opens a connection of its own.
type Sender struct {
	host    string
	port    int
	user    string
	from    *netmail.Address
	rawFrom string
	client  []gomail.Option // all but the timeout, which each Send sets
	timeout time.Duration
	tmpl    templates
	site    string
	log     *slog.Logger
}

// NewSender checks o and parses the templates, so that a mistake in
// either stops the notifier at start rather than at the first block.
func NewSender(o Options) (*Sender, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	from, err := netmail.ParseAddress(o.From)
	if err != nil {
		return nil, fmt.Errorf("mail: Options.From %q: %w", o.From, err)
	}
	tmpl, err := loadTemplates(o.TextTemplate, o.HTMLTemplate)
	if err != nil {
		return nil, err
	}
	s := &Sender{host: o.Host, port: o.Port, user: o.Username, from: from, rawFrom: o.From,
		client: o.clientOptions(), timeout: o.Timeout, tmpl: tmpl, site: o.Site, log: o.Log}
	// go-mail checks its options when a client is made: make one now.
	if _, err := s.newClient(o.Timeout); err != nil {
		return nil, err
	}
	return s, nil
}

func (o *Options) setDefaults() {
	if o.TLS == "" {
		o.TLS = "starttls"
	}
	if o.Port == 0 {
		o.Port = map[string]int{"tls": 465, "none": 25}[o.TLS]
		if o.Port == 0 {
			o.Port = 587
		}
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Site == "" {
		o.Site = "your account"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func (o *Options) validate() error {
	switch {
	case o.Host == "":
		return errors.New("mail: Options.Host is empty")
	case o.Port < 1 || o.Port > 65535:
		return fmt.Errorf("mail: Options.Port %d: want 1 to 65535", o.Port)
	case !slices.Contains([]string{"starttls", "opportunistic", "tls", "none"}, o.TLS):
		return fmt.Errorf("mail: Options.TLS %q: want starttls, opportunistic, tls or none", o.TLS)
	case o.Password != "" && o.Username == "":
		return errors.New("mail: Options.Password is set without a Username")
	case o.Username != "" && o.TLS == "none":
		return errors.New(`mail: Options.Username with TLS "none" would send the SMTP password in clear`)
	case o.Timeout < 0:
		return fmt.Errorf("mail: Options.Timeout %s is negative", o.Timeout)
	case o.From == "":
		return errors.New("mail: Options.From is empty")
	}
	return nil
}

// clientOptions translates o into go-mail's options.
func (o *Options) clientOptions() []gomail.Option {
	opts := []gomail.Option{
		gomail.WithPort(o.Port),
		gomail.WithTLSConfig(&tls.Config{
			ServerName:         o.Host,
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, for tests and local catchers
		}),
		gomail.WithoutNoop(), // a fresh connection needs no check
	}
	switch o.TLS {
	case "tls":
		opts = append(opts, gomail.WithSSL())
	case "opportunistic":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if o.Username != "" {
		// Auto-discovery picks PLAIN or LOGIN only on an encrypted
		// connection: with "opportunistic" and no STARTTLS, the send fails
		// rather than show the password.
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(o.Username), gomail.WithPassword(o.Password))
	}
	return opts
}

func (s *Sender) newClient(timeout time.Duration) (*gomail.Client, error) {
	c, err := gomail.NewClient(s.host, append(slices.Clip(s.client), gomail.WithTimeout(timeout))...)
	if err != nil {
		return nil, fmt.Errorf("mail: SMTP client for %s: %w", s.addr(), err)
	}
	return c, nil
}

func (s *Sender) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// Send writes the mail for m and delivers it to the SMTP server.
// Permanent tells the errors a retry will not fix from the others.
func (s *Sender) Send(ctx context.Context, m Message) error {
	msg, err := s.compose(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// go-mail applies its timeout to the connection, which ctx does not
	// reach once dialled: give it what is left of ctx.
	deadline, _ := ctx.Deadline()
	c, err := s.newClient(max(time.Until(deadline), time.Millisecond))
	if err != nil {
		return err
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return s.sendError(m, err)
	}
	s.log.Info("block mail sent", "event", m.EventID, "server", s.addr())
	return nil
}

// compose builds the mail. Nothing from the username reaches a header.
func (s *Sender) compose(m Message) (*gomail.Msg, error) {
	to, err := parseAddr(m.To)
	if err != nil {
		return nil, fmt.Errorf("mail: recipient of event %q: %w", m.EventID, err)
	}
	if m.EventID == "" {
		return nil, fmt.Errorf("mail: %w message: no event id to derive its Message-ID from", errInvalid)
	}
	text, html, err := s.tmpl.render(newData(s.site, m))
	if err != nil {
		return nil, fmt.Errorf("mail: render the mail for event %q: %w", m.EventID, err)
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(s.from)
	msg.ToMailAddress(to)
	msg.Subject(subject)
	msg.SetGenHeader(gomail.HeaderMessageID, MessageID(m.EventID, s.rawFrom))
	msg.SetDate()
	// RFC 3834: keeps vacation responders from answering.
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, text)
	msg.AddAlternativeString(gomail.TypeTextHTML, html)
	return msg, nil
}

// sendError names what failed. A refused login is its own message, as
// it is the operator's to fix.
func (s *Sender) sendError(m Message, err error) error {
	if authRefused(err) {
		return fmt.Errorf("mail: %s refused the SMTP login as %q, check the SMTP username and password: %w",
			s.addr(), s.user, err)
	}
	return fmt.Errorf("mail: send the mail for event %q via %s: %w", m.EventID, s.addr(), err)
}

// authRefused reports a rejected SMTP AUTH: 534 (mechanism too weak),
// 535 (credentials invalid) or 538 (encryption required), before any
// message was under way.
func authRefused(err error) bool {
	var se *gomail.SendError
	if errors.As(err, &se) {
		return false
	}
	var te *textproto.Error
	return errors.As(err, &te) && (te.Code == 534 || te.Code == 535 || te.Code == 538)
}

// errInvalid marks what no retry fixes: a malformed address or message.
var errInvalid = errors.New("invalid")

// Permanent reports an error that retrying will not fix: a malformed
// address, a recipient the server refuses with a 5xx answer, a message
// it refuses with a 5xx answer after DATA. Everything else may pass
// later: a refused connection, a timeout, a 4xx answer.
//
// A refused SMTP login is not permanent although its answer is a 5xx:
// it is the configuration that is wrong, not this message, and
// reporting it permanent would have the caller drop every mail until
// the operator fixes the password. Its error says so plainly. A 5xx
// for the sender (MAIL FROM) is not permanent for the same reason.
func Permanent(err error) bool {
	if errors.Is(err, errInvalid) {
		return true
	}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	code := se.ErrorCode()
	return (se.Reason == gomail.ErrSMTPRcptTo || se.Reason == gomail.ErrSMTPDataClose) && code >= 500 && code < 600
}

// MessageID is the Message-ID of the mail for the block event eventID
// sent as from: "<" + eventID + "@" + the domain of from + ">". The same
// event always gets the same Message-ID, so a resend is recognisably the
// same mail. An id that is not a valid Message-ID left part (dot-atom
// text, at most 128 characters) is replaced by a hash of itself, and a
// From without an ASCII domain by "defender.invalid", so nothing taken
// from an event can break the header.
func MessageID(eventID, from string) string {
	return "<" + idLeft(eventID) + "@" + idRight(from) + ">"
}

func idLeft(eventID string) string {
	if len(eventID) <= 128 && dotAtom(eventID) {
		return eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "sha256." + hex.EncodeToString(sum[:16])
}

func idRight(from string) string {
	if a, err := netmail.ParseAddress(from); err == nil {
		if d := a.Address[strings.LastIndexByte(a.Address, '@')+1:]; dotAtom(d) {
			return d
		}
	}
	return "defender.invalid"
}

// dotAtom reports whether s is RFC 5322 dot-atom text: runs of atext
// joined by single dots.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0) {
			return false
		}
	}
	return true
}

// BareAddress reports whether s is a single bare address that Send takes
// as To (see parseAddr): for usernames used as addresses.
func BareAddress(s string) bool {
	_, err := parseAddr(s)
	return err == nil
}

// parseAddr accepts a single bare address ("a@example.com"), written as
// net/mail reads it back: no display name that could pose as someone
// else, no comment, no list.
func parseAddr(raw string) (*netmail.Address, error) {
	a, err := netmail.ParseAddress(raw)
	if err != nil {
		return nil, fmt.Errorf("%w address %.100q: %v", errInvalid, raw, err)
	}
	if a.Name != "" || a.Address != raw {
		return nil, fmt.Errorf("%w address %.100q: want a bare address, without name or comment", errInvalid, raw)
	}
	return a, nil
}
