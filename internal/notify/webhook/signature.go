package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/defender-go/defender/internal/truncate"
)

// The headers of a call.
const (
	headerTimestamp = "Defender-Timestamp" // unix seconds of the call
	headerSignature = "Defender-Signature" // "v1=<hex>" per secret, comma separated
	headerBatch     = "Defender-Batch"     // blocks in the body
)

// minSecret is the shortest signing secret New accepts, in bytes.
const minSecret = 16

// sign sets the timestamp and signature headers of a call carrying body:
// one v1 signature per secret, so that a receiver that knows any of them
// verifies the call while secrets rotate.
func sign(h http.Header, secrets [][]byte, now time.Time, body []byte) {
	ts := strconv.FormatInt(now.Unix(), 10)
	sigs := make([]string, len(secrets))
	for i, k := range secrets {
		sigs[i] = "v1=" + hex.EncodeToString(mac(k, ts, body))
	}
	h.Set(headerTimestamp, ts)
	h.Set(headerSignature, strings.Join(sigs, ","))
}

// mac is HMAC-SHA256(secret, "<ts>.<body>"). The timestamp is signed with
// the body so that a captured call cannot be replayed under a new date.
func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a call as its receiver gets it: the Defender-Timestamp
// header within tolerance of now (either way), and one of the v1 entries
// of Defender-Signature matching one of secrets over "<timestamp>.<body>",
// compared in constant time. body must be the bytes received, before any
// decoding. A receiver should also drop blocks whose id it has seen: a
// call may be repeated within the tolerance (a retry, or a replay).
// tolerance must be positive; a few minutes allows for clock skew.
func Verify(secrets [][]byte, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		return errors.New("webhook verify: tolerance must be positive")
	}
	if len(secrets) == 0 {
		return errors.New("webhook verify: no secret to verify with")
	}
	ts := header.Get(headerTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook verify: %s %q is not unix seconds", headerTimestamp, truncate.UTF8(ts, 32))
	}
	if skew := now.Sub(time.Unix(sec, 0)).Abs(); skew > tolerance {
		return fmt.Errorf("webhook verify: %s is %s away from now, more than %s", headerTimestamp, skew.Round(time.Second), tolerance)
	}
	// A proxy may have split the list over several header lines.
	sigs := signatures(strings.Join(header.Values(headerSignature), ","))
	if len(sigs) == 0 {
		return fmt.Errorf("webhook verify: no v1 signature in %s", headerSignature)
	}
	for _, k := range secrets {
		want := mac(k, ts, body)
		for _, got := range sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.New("webhook verify: no signature matches the secrets")
}

// signatures decodes the v1 entries of a Defender-Signature header,
// skipping any other (a later scheme) and any that is not a SHA-256 in hex.
func signatures(h string) [][]byte {
	var out [][]byte
	for entry := range strings.SplitSeq(h, ",") {
		v, ok := strings.CutPrefix(strings.TrimSpace(entry), "v1=")
		if !ok || len(v) != 2*sha256.Size {
			continue
		}
		if sig, err := hex.DecodeString(v); err == nil {
			out = append(out, sig)
		}
	}
	return out
}
