package gatesvc_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/gatesvc"
)

// Field names are the API's, exactly: encoding/json alone would take
// "Success" or "ſuccess" (Unicode folding) for "success", and the last of
// two "success" keys, so {"success":false,"success":true}, built by an
// application concatenating strings, would report a success. Each is a
// 400 naming the field (the fuzz target found "suCCess").
func TestDecodeExactKeys(t *testing.T) {
	for _, body := range []string{
		`{"suCCess":true}`, `{"Success":true}`, `{"ſuccess":true}`,
		`{"success":false,"success":true}`,
	} {
		_, err := gatesvc.DecodeOutcome([]byte(body))
		require.Error(t, err, body)
		assert.Contains(t, err.Error(), "field", body)
	}
	for _, body := range []string{
		`{"IP":"192.0.2.1","username":"bob"}`, `{"ip":"192.0.2.1","Username":"bob"}`,
		`{"ip":"192.0.2.1","ip":"192.0.2.2"}`, `{"ip":"192.0.2.1","username":"a","username":"b"}`,
	} {
		_, err := gatesvc.DecodeAttempt([]byte(body))
		assert.Error(t, err, body)
		_, err = gatesvc.DecodeCheck([]byte(body))
		assert.Error(t, err, body)
	}
	out, err := gatesvc.DecodeOutcome([]byte(`{"success":true}`))
	require.NoError(t, err)
	assert.True(t, out.Success)
	req, err := gatesvc.DecodeAttempt([]byte(`{"ip":"192.0.2.1","username":"bob","success":false,"path":"/login","user_agent":"ua"}`))
	require.NoError(t, err)
	assert.Equal(t, "bob", req.Username)
	assert.Equal(t, "ua", req.UserAgent)
}

// The decoder runs on every login through the service.
func BenchmarkDecodeAttempt(b *testing.B) {
	body := []byte(`{"ip":"192.0.2.1","username":"alice@example.com","success":false,"path":"/login","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gatesvc.DecodeAttempt(body); err != nil {
			b.Fatal(err)
		}
	}
}
