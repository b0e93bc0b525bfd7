package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// TestBrowserBlockedPageAfterNATSRestart: the events published while the
// admin's NATS connection was down never reach its subscriptions, so an
// open Blocked page must reload its list once NATS is back; it showed
// "Live" and stayed without the blocks made meanwhile until a reload.
func TestBrowserBlockedPageAfterNATSRestart(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t, e)
	b.open("/blocked")
	b.waitFor(`document.getElementById('live').getAttribute('data-state') === 'open'`)

	e.nats.Shutdown()
	require.Eventually(t, func() bool { return e.deps.nc.Status() != nats.CONNECTED }, time.Minute, 50*time.Millisecond)
	// A block whose event this admin never receives (e.gate publishes
	// nothing): what a login service's block looks like to it meanwhile.
	e.block(gate.KindIP, "198.51.100.99", time.Hour)
	e.nats.Start()
	require.Eventually(t, func() bool { return e.deps.nc.Status() == nats.CONNECTED }, time.Minute, 50*time.Millisecond)

	b.waitFor(rowPresent("ip", "198.51.100.99"))
	b.waitFor(`document.getElementById('live').getAttribute('data-state') === 'open'`)
	// And live events flow again.
	require.NoError(t, e.deps.gate.Block(context.Background(), gate.KindIP, "198.51.100.100", time.Hour))
	b.waitFor(rowPresent("ip", "198.51.100.100"))
}
