package reliability_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestBurstWhileALastChanceIsHeld: an attacker holds a username's last
// chance open (its outcome never reported) while the user's own login
// clears the username's failures, then sends one more guess through a
// Redis that answers, and a burst of 5,000 guesses at once while Redis is
// hung (CLIENT PAUSE), at one cmd/gate process with the default settings.
// The last chance keeps its slot in the store and in the gate's local
// limiter: since the user's login, the held last chance, the guess and the
// burst's admitted guesses stay within limit+1. (A store answer that said
// no charge was pending made the limiter forget the last chance, and the
// burst got one guess more.)
func TestBurstWhileALastChanceIsHeld(t *testing.T) {
	needServers(t, "redis-server")
	rs := testenv.Redis(t)
	ns := testenv.NATS(t)
	g := burstGate(t, "held-gate", rs.URL, ns.URL)
	client := loadClient(10 * time.Second)
	user := uniqueName("held-victim")
	begin := func(ip string) answer {
		a := post(client, g.URL+"/v1/attempts", map[string]any{"ip": ip, "username": user, "path": "/login"})
		require.NoError(t, a.Err)
		return a
	}
	outcome := func(a answer, success bool) answer {
		o := post(client, g.URL+"/v1/attempts/"+a.Body.Token, map[string]any{"success": success})
		require.NoError(t, o.Err)
		require.Equal(t, http.StatusOK, o.Status)
		return o
	}

	own := begin("192.0.2.1") // the user's own login, its password still being checked
	require.Equal(t, http.StatusOK, own.Status)
	for _, ip := range []string{"192.0.2.2", "192.0.2.3"} {
		outcome(begin(ip), false)
	}
	held := begin("192.0.2.4")
	require.Equal(t, http.StatusOK, held.Status)
	require.True(t, held.Body.LastChance, "the username's last chance, held open")
	o := outcome(own, true)
	assert.Zero(t, o.Body.UsernameFailures, "the user's login clears the username's failures")

	guess := begin("192.0.2.5")
	require.Equal(t, http.StatusOK, guess.Status, "one more guess fits beside the last chance")
	require.False(t, guess.Body.Degraded, "decided by Redis")

	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer admin.Close()
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", 6000, "ALL").Err())
	defer admin.Do(ctx, "CLIENT", "UNPAUSE")
	r := burst(t, []*gateProc{g}, burstSize, func(i int) string { return clientAddr(100 + i) }, func(int) string { return user })
	t.Logf("%d guesses at once, Redis paused, a last chance held: %s", burstSize, r)
	require.Empty(t, r.errs, "every guess is answered")
	assert.Empty(t, r.gates[0].other, "no answer but 200 and 429")
	assert.Positive(t, r.gates[0].degraded, "the local limiter decided")
	assert.LessOrEqual(t, 2+r.admitted(), burstLimit+1,
		"since the user's login: the held last chance, the guess and %d from the burst", r.admitted())
}
