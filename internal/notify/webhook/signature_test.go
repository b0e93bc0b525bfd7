package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/notify/webhook"
)

// signed is the v1 signature of body at ts, computed as the package doc
// describes it, independently of the package's code.
func signed(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10) + "." + string(body)))
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// The receiver's side: a call from a real sender verifies with Verify,
// under either secret of a rotation, and nothing altered does.
func TestSignatureVerifiesOnReceiver(t *testing.T) {
	oldSecret := []byte("the-old-secret-16+bytes")
	newSecret := []byte("the-new-secret-16+bytes")
	rc := newReceiver(t, nil)
	o := options(prometheus.NewRegistry(), webhook.Endpoint{URL: rc.srv.URL + "/hook"})
	o.Secrets = [][]byte{newSecret, oldSecret}
	o.Now = func() time.Time { return epoch }
	s, _ := start(t, o)

	require.NoError(t, s.Deliver(context.Background(), block(1)))
	calls := rc.accepted()
	require.Len(t, calls, 1)
	c := calls[0]
	assert.Equal(t, "application/json", c.header.Get("Content-Type"))
	assert.Equal(t, "1", c.header.Get("Defender-Batch"))
	assert.Equal(t, strconv.FormatInt(epoch.Unix(), 10), c.header.Get("Defender-Timestamp"))
	assert.Equal(t, signed(newSecret, epoch.Unix(), c.body)+","+signed(oldSecret, epoch.Unix(), c.body),
		c.header.Get("Defender-Signature"))
	body := decode(t, c.body)
	assert.Equal(t, epoch.Format(time.RFC3339), body.SentAt)
	require.Len(t, body.Blocks, 1)
	assert.Equal(t, block(1).ID, body.Blocks[0].ID)

	now := epoch.Add(30 * time.Second)
	assert.NoError(t, webhook.Verify([][]byte{newSecret}, c.header, c.body, time.Minute, now), "new secret")
	assert.NoError(t, webhook.Verify([][]byte{oldSecret}, c.header, c.body, time.Minute, now), "only the old secret")
	assert.NoError(t, webhook.Verify([][]byte{[]byte("unrelated-secret-0000"), oldSecret}, c.header, c.body, time.Minute, now))

	tampered := append([]byte{}, c.body...)
	tampered[len(tampered)-3] ^= 1
	assert.ErrorContains(t, webhook.Verify([][]byte{newSecret}, c.header, tampered, time.Minute, now), "no signature matches")
	assert.ErrorContains(t, webhook.Verify([][]byte{newSecret}, c.header, c.body, time.Minute, epoch.Add(10*time.Minute)),
		"more than 1m0s", "an old timestamp")
	assert.Error(t, webhook.Verify([][]byte{[]byte("unrelated-secret-0000")}, c.header, c.body, time.Minute, now))
}

func TestVerify(t *testing.T) {
	body := []byte(`{"blocks":[],"sent_at":"2026-03-14T15:04:00Z"}`)
	other := []byte("another-secret-of-16-bytes")
	ts := epoch.Unix()
	header := func(ts string, sig string) http.Header {
		h := http.Header{}
		h.Set("Defender-Timestamp", ts)
		h.Set("Defender-Signature", sig)
		return h
	}
	now := strconv.FormatInt(ts, 10)
	tests := []struct {
		name      string
		secrets   [][]byte
		header    http.Header
		body      []byte
		tolerance time.Duration
		at        time.Time
		err       string // a part of the error; "" when it verifies
	}{
		{name: "valid", header: header(now, signed(secret, ts, body))},
		{name: "second entry", header: header(now, signed(other, ts, body)+", "+signed(secret, ts, body))},
		{name: "unknown scheme skipped", header: header(now, "v2=abc,"+signed(secret, ts, body))},
		{name: "split over header lines", header: func() http.Header {
			h := header(now, "v1=00")
			h.Add("Defender-Signature", signed(secret, ts, body))
			return h
		}()},
		{name: "second secret", secrets: [][]byte{other, secret}, header: header(now, signed(secret, ts, body))},
		{name: "future within tolerance", header: header(now, signed(secret, ts, body)), at: epoch.Add(-4 * time.Minute)},
		{name: "tampered body", header: header(now, signed(secret, ts, body)), body: []byte(`{"blocks":[{}]}`), err: "no signature matches"},
		{name: "wrong secret", secrets: [][]byte{other}, header: header(now, signed(secret, ts, body)), err: "no signature matches"},
		{name: "old", header: header(now, signed(secret, ts, body)), at: epoch.Add(6 * time.Minute), err: "6m0s away"},
		{name: "future", header: header(now, signed(secret, ts, body)), at: epoch.Add(-6 * time.Minute), err: "6m0s away"},
		{name: "timestamp moved", header: header(strconv.FormatInt(ts+1, 10), signed(secret, ts, body)), err: "no signature matches"},
		{name: "no timestamp", header: header("", signed(secret, ts, body)), err: "is not unix seconds"},
		{name: "bad timestamp", header: header("soon", signed(secret, ts, body)), err: `"soon" is not unix seconds`},
		{name: "no signature", header: header(now, ""), err: "no v1 signature"},
		{name: "not hex", header: header(now, "v1="+string(make([]byte, 64))), err: "no v1 signature"},
		{name: "short signature", header: header(now, signed(secret, ts, body)[:20]), err: "no v1 signature"},
		{name: "no secret", secrets: [][]byte{}, header: header(now, signed(secret, ts, body)), err: "no secret"},
		{name: "no tolerance", header: header(now, signed(secret, ts, body)), tolerance: -1, err: "tolerance must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.secrets == nil {
				tc.secrets = [][]byte{secret}
			}
			if tc.body == nil {
				tc.body = body
			}
			if tc.tolerance == 0 {
				tc.tolerance = 5 * time.Minute
			}
			if tc.at.IsZero() {
				tc.at = epoch
			}
			err := webhook.Verify(tc.secrets, tc.header, tc.body, tc.tolerance, tc.at)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.err)
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("1773500640", "v1=00", []byte("{}"))
	f.Add("-9223372036854775808", "v1=,v1=zz,,", []byte{})
	f.Add("9223372036854775807", "v2=1", []byte("x"))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("Defender-Timestamp", ts)
		h.Set("Defender-Signature", sig)
		// Nothing forged verifies; nothing panics.
		if webhook.Verify([][]byte{secret}, h, body, time.Hour, epoch) == nil {
			sec, err := strconv.ParseInt(ts, 10, 64)
			require.NoError(t, err)
			require.Contains(t, sig, signed(secret, sec, body))
		}
		// What the scheme signs always verifies.
		h.Set("Defender-Timestamp", strconv.FormatInt(epoch.Unix(), 10))
		h.Set("Defender-Signature", sig+","+signed(secret, epoch.Unix(), body))
		require.NoError(t, webhook.Verify([][]byte{secret}, h, body, time.Hour, epoch))
	})
}
