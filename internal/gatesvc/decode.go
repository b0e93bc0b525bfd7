package gatesvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/defender-go/defender/internal/truncate"
	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// Limits on what a request may carry.
const (
	// MaxBodyBytes bounds a request body; a larger one is answered 413.
	MaxBodyBytes = 64 << 10
	// MaxUsernameBytes bounds the username as sent, less the spaces and
	// invisible characters at its ends; a longer one is answered 400 (the
	// gate then normalises and caps it further, see
	// DEFENDER_MAX_USERNAME_LENGTH).
	MaxUsernameBytes = 1024
	// MaxInfoBytes bounds path and user_agent, which only go into events:
	// longer values are truncated (at a character boundary), not refused,
	// as the events themselves do.
	MaxInfoBytes = events.MaxInfoBytes
)

// requestError is a client error: its status and the message of the JSON
// error body.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// AttemptRequest is the body of POST /v1/check and POST /v1/attempts.
type AttemptRequest struct {
	IP       string `json:"ip"`
	Username string `json:"username"`
	// Success is the outcome of the password check; nil (field absent)
	// starts the two-phase flow.
	Success   *bool  `json:"success"`
	Path      string `json:"path"`
	UserAgent string `json:"user_agent"`
	// Device is the client's device token (smart lockout), as a success's
	// answer gave it.
	Device string `json:"device"`

	// Addr is IP parsed by gate.ParseIP.
	Addr netip.Addr `json:"-"`
}

// Attempt returns the request as the gate's Attempt.
func (r *AttemptRequest) Attempt() gate.Attempt {
	return gate.Attempt{IP: r.Addr, Username: r.Username, Path: r.Path, UserAgent: r.UserAgent, Device: r.Device}
}

// rawAttempt is the wire form: success stays raw so that null and wrong
// types get their own message.
type rawAttempt struct {
	IP        string          `json:"ip"`
	Username  string          `json:"username"`
	Success   json.RawMessage `json:"success"`
	Path      string          `json:"path"`
	UserAgent string          `json:"user_agent"`
	Device    string          `json:"device"`
}

func (r *rawAttempt) field(name string) any {
	switch name {
	case "ip":
		return &r.IP
	case "username":
		return &r.Username
	case "success":
		return &r.Success
	case "path":
		return &r.Path
	case "user_agent":
		return &r.UserAgent
	case "device":
		return &r.Device
	}
	return nil
}

// OutcomeRequest is the body of POST /v1/attempts/{token}.
type OutcomeRequest struct {
	Success bool
}

type rawOutcome struct {
	Success json.RawMessage `json:"success"`
}

func (r *rawOutcome) field(name string) any {
	if name == "success" {
		return &r.Success
	}
	return nil
}

// acceptsJSON says whether a body sent with media type mt may hold JSON.
// Besides application/json it takes what curl -d and simple HTTP clients
// send by default (form-urlencoded, text/plain): the body must still be
// one strict JSON object, so nothing else slips through.
func acceptsJSON(mt string) bool {
	switch mt {
	case "application/json", "application/x-www-form-urlencoded", "text/plain":
		return true
	}
	return strings.HasSuffix(mt, "+json")
}

// readBody checks the content type and reads at most MaxBodyBytes of a
// request body that must be valid UTF-8.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !acceptsJSON(mt) {
			return nil, &requestError{status: http.StatusUnsupportedMediaType,
				msg: fmt.Sprintf("content type %q is not application/json", ct)}
		}
	}
	if r.ContentLength > MaxBodyBytes {
		// Refused at once: reading would wait for a body that may
		// never come, holding the connection until the read timeout.
		return nil, &requestError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &requestError{status: http.StatusRequestEntityTooLarge,
				msg: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
		}
		return nil, badRequest("reading body: %v", err)
	}
	return body, nil
}

// fields is a request's wire form: field gives where the value of the key
// name goes, or nil when the API has no such field.
type fields interface {
	field(name string) any
}

// maxFields bounds the fields of a request type (for decodeStrict's
// record of the keys seen).
const maxFields = 8

// decodeStrict decodes exactly one JSON object of body into v, in one
// pass, refusing invalid UTF-8, unknown fields and anything after the
// object. Keys are the API's exactly: encoding/json alone would take a key
// in another case or Unicode folding ("Success", "ſuccess") for a field,
// and keep the last of a key given twice ({"success":false,"success":true},
// from a body built by concatenation).
func decodeStrict(body []byte, v fields) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("empty body: a JSON object is required")
	}
	if !utf8.Valid(body) {
		return badRequest("body is not valid UTF-8")
	}
	if b := bytes.TrimSpace(body); b[0] != '{' {
		return badRequest("body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return jsonError(err, "")
	}
	var seen [maxFields]string
	n := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return jsonError(err, "")
		}
		key, _ := t.(string)
		dst := v.field(key)
		if dst == nil {
			return badRequest("unknown field %q (fields are spelt in lower case)", truncate.UTF8(key, 64))
		}
		for _, k := range seen[:n] {
			if k == key {
				return badRequest("field %q given twice", key)
			}
		}
		seen[n], n = key, n+1
		if err := dec.Decode(dst); err != nil {
			return jsonError(err, key)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return jsonError(err, "")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("unexpected data after the JSON object")
	}
	return nil
}

// jsonError is the client's message for a decoding error, in the field
// key when there is one.
func jsonError(err error, key string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return badRequest("field %q must be a %s, not %s", key, typeErr.Type, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return badRequest("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("malformed JSON: unexpected end of body")
	}
	return badRequest("malformed JSON: %v", err)
}

// parseSuccess reads the raw success field: absent gives nil.
func parseSuccess(raw json.RawMessage) (*bool, error) {
	if raw == nil {
		return nil, nil
	}
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		b := true
		return &b, nil
	case "false":
		b := false
		return &b, nil
	}
	return nil, badRequest("field \"success\" must be true or false, not %s (leave it out to start a two-phase attempt)", truncate.UTF8(string(raw), 32))
}

// DecodeAttempt parses and validates the body of POST /v1/check and POST
// /v1/attempts. Any error it returns is the client's (a 4xx).
func DecodeAttempt(body []byte) (AttemptRequest, error) {
	var raw rawAttempt
	if err := decodeStrict(body, &raw); err != nil {
		return AttemptRequest{}, err
	}
	req := AttemptRequest{IP: raw.IP, Username: raw.Username,
		Path: truncate.UTF8(raw.Path, MaxInfoBytes), UserAgent: truncate.UTF8(raw.UserAgent, MaxInfoBytes),
		Device: truncate.UTF8(raw.Device, 64)}
	var err error
	if req.Success, err = parseSuccess(raw.Success); err != nil {
		return AttemptRequest{}, err
	}
	if err := req.validate(); err != nil {
		return AttemptRequest{}, err
	}
	return req, nil
}

// validate checks ip and username and sets Addr.
func (req *AttemptRequest) validate() error {
	if strings.TrimSpace(req.IP) == "" {
		return badRequest("field \"ip\" is required: the client's address")
	}
	var err error
	if req.Addr, err = gate.ParseIP(req.IP); err != nil {
		return badRequest("field \"ip\": %q is not an IP address", truncate.UTF8(req.IP, 64))
	}
	// Padding at either end is dropped by the gate's normalisation: it
	// must not push a name over the bound, or "<2000 spaces>alice", which
	// an application that trims logs in as alice, would be refused and
	// counted nowhere.
	req.Username = strings.TrimFunc(req.Username, droppedAtEnds)
	if len(req.Username) > MaxUsernameBytes {
		return badRequest("field \"username\" is longer than %d bytes", MaxUsernameBytes)
	}
	return nil
}

// droppedAtEnds reports whether gate.NormalizeUsername drops r at either
// end of a username: spaces, control and format (invisible) characters.
func droppedAtEnds(r rune) bool {
	return unicode.IsSpace(r) || unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r)
}

// DecodeOutcome parses the body of POST /v1/attempts/{token}.
func DecodeOutcome(body []byte) (OutcomeRequest, error) {
	var raw rawOutcome
	if err := decodeStrict(body, &raw); err != nil {
		return OutcomeRequest{}, err
	}
	s, err := parseSuccess(raw.Success)
	if err != nil {
		return OutcomeRequest{}, err
	}
	if s == nil {
		return OutcomeRequest{}, badRequest("field \"success\" is required: true or false")
	}
	return OutcomeRequest{Success: *s}, nil
}

// CheckRequest is the body of POST /v1/check.
type CheckRequest struct {
	IP       string `json:"ip"`
	Username string `json:"username"`
}

func (r *CheckRequest) field(name string) any {
	switch name {
	case "ip":
		return &r.IP
	case "username":
		return &r.Username
	}
	return nil
}

// DecodeCheck parses and validates the body of POST /v1/check, which
// takes only ip and username.
func DecodeCheck(body []byte) (AttemptRequest, error) {
	var raw CheckRequest
	if err := decodeStrict(body, &raw); err != nil {
		return AttemptRequest{}, err
	}
	req := AttemptRequest{IP: raw.IP, Username: raw.Username}
	if err := req.validate(); err != nil {
		return AttemptRequest{}, err
	}
	return req, nil
}
