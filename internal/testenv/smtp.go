package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPMessage is one message an SMTPServer received.
type SMTPMessage struct {
	From string
	To   []string
	Data []byte // as sent: headers and body
}

// Header is the message's header name ("" when it has none or does not
// parse).
func (m SMTPMessage) Header(name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	return msg.Header.Get(name)
}

// SMTPMail is a received message taken apart as a mail client would.
type SMTPMail struct {
	Header    mail.Header
	RawHeader string // the header block as it came over the wire
	Type      string // the top-level media type
	// Text and HTML are the bodies of the text/plain and text/html parts,
	// quoted-printable decoded, with the mail's CRLF line ends made LF:
	// a CR or LF left is one the message's content carried.
	Text, HTML string
}

// Parse takes the message apart, failing the test if it does not parse.
func (m SMTPMessage) Parse(t testing.TB) SMTPMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("mail: %v", err)
	}
	head, _, ok := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatal("mail: no end of headers")
	}
	p := SMTPMail{Header: msg.Header, RawHeader: string(head)}
	if p.Type, _, err = mime.ParseMediaType(msg.Header.Get("Content-Type")); err != nil {
		t.Fatalf("mail: Content-Type: %v", err)
	}
	if err := p.walk(msg.Header.Get("Content-Type"), msg.Body); err != nil {
		t.Fatalf("mail: %v", err)
	}
	return p
}

// walk reads the text and HTML parts; multipart's NextPart decodes
// quoted-printable.
func (p *SMTPMail) walk(contentType string, body io.Reader) error {
	media, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return err
	}
	if strings.HasPrefix(media, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := p.walk(part.Header.Get("Content-Type"), part); err != nil {
				return err
			}
		}
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch media {
	case "text/plain":
		p.Text = s
	case "text/html":
		p.HTML = s
	}
	return nil
}

// SMTPTLS is how an SMTPServer protects connections.
type SMTPTLS int

const (
	SMTPPlain       SMTPTLS = iota // no STARTTLS offered
	SMTPStartTLS                   // STARTTLS offered, self-signed
	SMTPImplicitTLS                // TLS from the first byte, self-signed
)

// SMTPOptions shape an SMTPServer.
type SMTPOptions struct {
	// User and Pass, when set, make the server offer AUTH PLAIN (over TLS
	// only) and refuse MAIL before a login.
	User, Pass string
	TLS        SMTPTLS
	// RcptErr, when set, is the answer to every RCPT.
	RcptErr *smtp.SMTPError
	// DataDelay holds each message this long after its DATA, before the
	// server keeps it and answers: a client that dies meanwhile has sent
	// a message it never learns was received (a message in flight).
	DataDelay time.Duration
}

// SMTPServer is a real SMTP server (github.com/emersion/go-smtp) in the
// test's process on 127.0.0.1, keeping what it receives so that tests read
// it back. Stop and Start make an outage on the same port.
type SMTPServer struct {
	Host string
	Port int

	t    testing.TB
	o    SMTPOptions
	tls  *tls.Config
	mu   sync.Mutex
	msgs []SMTPMessage
	mail int // MAIL commands seen, delivered or not
	srv  *smtp.Server
	ln   net.Listener
	done chan error
}

// SMTP starts an SMTPServer until the test ends.
func SMTP(t testing.TB, o SMTPOptions) *SMTPServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTPServer{Host: "127.0.0.1", Port: port, t: t, o: o}
	if o.TLS != SMTPPlain {
		s.tls = selfSignedTLS(t)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *SMTPServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Start serves on the server's port (again, after Stop).
func (s *SMTPServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	var l net.Listener
	var err error
	for range 50 { // the port may linger a moment after Stop
		if l, err = net.Listen("tcp", s.Addr()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("smtp: listen on %s: %v", s.Addr(), err)
	}
	switch s.o.TLS {
	case SMTPStartTLS:
		srv.TLSConfig = s.tls
	case SMTPImplicitTLS:
		l = tls.NewListener(l, s.tls)
	}
	s.srv, s.ln, s.done = srv, l, make(chan error, 1)
	go func() { s.done <- srv.Serve(l) }()
}

// Stop closes the listener and every connection: an outage until Start.
func (s *SMTPServer) Stop() {
	s.mu.Lock()
	srv, ln, done := s.srv, s.ln, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		// Closing the listener too: a Close right after Start may come
		// before Serve has registered it with the server.
		_ = ln.Close()
		_ = srv.Close()
		<-done
	}
}

// Messages are the messages received so far.
func (s *SMTPServer) Messages() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMTPMessage(nil), s.msgs...)
}

// MailCommands is how many MAIL commands the server saw, delivered or not.
func (s *SMTPServer) MailCommands() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mail
}

// NewSession implements smtp.Backend.
func (s *SMTPServer) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &smtpSession{srv: s}, nil
}

type smtpSession struct {
	srv    *SMTPServer
	authed bool
	cur    SMTPMessage
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (s *smtpSession) AuthMechanisms() []string {
	if s.srv.o.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.srv.o.User || pass != s.srv.o.Pass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	s.srv.mail++
	s.srv.mu.Unlock()
	if s.srv.o.User != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.cur = SMTPMessage{From: from}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.srv.o.RcptErr != nil {
		return s.srv.o.RcptErr
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = data
	time.Sleep(s.srv.o.DataDelay)
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, s.cur)
	s.srv.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.cur = SMTPMessage{} }
func (s *smtpSession) Logout() error { return nil }

// selfSignedTLS is a TLS config with a certificate for 127.0.0.1 and
// localhost that no one trusts.
func selfSignedTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}
