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
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/defender-go/defender/internal/textutil"
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

// OutcomeRequest is the body of POST /v1/attempts/{token}.
type OutcomeRequest struct {
	Success bool
}

type rawOutcome struct {
	Success json.RawMessage `json:"success"`
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

// decodeStrict decodes exactly one JSON object of body into v, refusing
// invalid UTF-8, unknown fields and anything after the object.
func decodeStrict(body []byte, v any) error {
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
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return badRequest("field %q must be a %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
		case errors.As(err, &syntaxErr):
			return badRequest("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("malformed JSON: unexpected end of body")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return badRequest("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("unexpected data after the JSON object")
	}
	return exactKeys(body, v)
}

// exactKeys refuses what encoding/json takes for a field although the API
// does not name it: a key in another case or Unicode folding ("Success",
// "ſuccess"), and a key given twice, where json keeps the last value
// ({"success":false,"success":true} from a body built by concatenation).
// body is one valid object (decodeStrict checked it).
func exactKeys(body []byte, v any) error {
	names := jsonNames(reflect.TypeOf(v).Elem())
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return badRequest("malformed JSON: %v", err)
	}
	seen := make(map[string]bool, len(names))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return badRequest("malformed JSON: %v", err)
		}
		key, _ := t.(string)
		if !names[key] {
			return badRequest("unknown field %q (fields are spelt in lower case)", textutil.Truncate(key, 64))
		}
		if seen[key] {
			return badRequest("field %q given twice", key)
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return badRequest("malformed JSON: %v", err)
		}
	}
	return nil
}

// jsonNamesCache holds jsonNames by type: the request types are few, and
// their names are read on every request, a login's hot path.
var jsonNamesCache sync.Map // reflect.Type -> map[string]bool

// jsonNames are the JSON names of a struct's fields, worked out once per
// type.
func jsonNames(t reflect.Type) map[string]bool {
	if names, ok := jsonNamesCache.Load(t); ok {
		return names.(map[string]bool)
	}
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		if name != "-" {
			names[name] = true
		}
	}
	jsonNamesCache.Store(t, names)
	return names
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
	return nil, badRequest("field \"success\" must be true or false, not %s (leave it out to start a two-phase attempt)", textutil.Truncate(string(raw), 32))
}

// DecodeAttempt parses and validates the body of POST /v1/check and POST
// /v1/attempts. Any error it returns is the client's (a 4xx).
func DecodeAttempt(body []byte) (AttemptRequest, error) {
	var raw rawAttempt
	if err := decodeStrict(body, &raw); err != nil {
		return AttemptRequest{}, err
	}
	req := AttemptRequest{IP: raw.IP, Username: raw.Username,
		Path: textutil.Truncate(raw.Path, MaxInfoBytes), UserAgent: textutil.Truncate(raw.UserAgent, MaxInfoBytes),
		Device: textutil.Truncate(raw.Device, 64)}
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
		return badRequest("field \"ip\": %q is not an IP address", textutil.Truncate(req.IP, 64))
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
