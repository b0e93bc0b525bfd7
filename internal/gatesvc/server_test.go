package gatesvc_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/gatesvc"
	"github.com/defender-go/defender/pkg/gate"
)

// A panic in a handler is answered 500 with a JSON error, and the server
// goes on.
func TestPanicRecovered(t *testing.T) {
	store := gate.NewMemoryStore(gate.MemoryOptions{SweepInterval: -1})
	g, err := gate.New(gate.DefaultConfig(), store)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	srv, err := gatesvc.New(gatesvc.Options{Gate: g, Tokens: gatesvc.NewTokens(gatesvc.RandomKey(), nil),
		Health: func(context.Context) error { panic("boom") }, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	var body map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "internal error", body["error"])

	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/check", nil)
	req.Body = http.NoBody
	srv.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusBadRequest, rec.Code)
}
