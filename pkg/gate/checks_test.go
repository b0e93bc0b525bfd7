package gate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

// TestBlockOnlyWhatIsChecked: under every combination of combo mode and
// disabled sides, a block by hand is accepted exactly for the kinds that
// then refuse a login (Checks), and refused with ErrNotChecked for the
// others, which would be listed yet refuse nobody: an admin blocking an
// attacker's address in combo mode believed it stopped, while its guesses
// went on.
func TestBlockOnlyWhatIsChecked(t *testing.T) {
	for _, combo := range []bool{false, true} {
		for _, off := range []string{"", "ip", "username"} {
			t.Run(fmt.Sprintf("combo=%v,disabled=%q", combo, off), func(t *testing.T) {
				cfg := gate.DefaultConfig()
				cfg.LockOutByIPAndUsername = combo
				cfg.DisableIPLockout = off == "ip"
				cfg.DisableUsernameLockout = off == "username"
				g, _ := memGate(t, cfg)
				checked := 0
				for _, k := range []gate.Kind{gate.KindIP, gate.KindUsername, gate.KindPair} {
					user, ip := fresh()
					subject := map[gate.Kind]string{gate.KindIP: ip, gate.KindUsername: user,
						gate.KindPair: gate.PairSubject(ip, user)}[k]
					err := g.Block(ctx, k, subject, time.Hour)
					if !g.Checks(k) {
						require.ErrorIs(t, err, gate.ErrNotChecked, k)
						assert.True(t, g.Check(ctx, attempt(ip, user)).Allowed, "%s: nothing was blocked", k)
						bs, err := g.Blocked(ctx, k, 0)
						require.NoError(t, err)
						assert.Empty(t, bs, "%s: nothing listed", k)
						continue
					}
					checked++
					require.NoError(t, err, k)
					d := g.Check(ctx, attempt(ip, user))
					assert.False(t, d.Allowed, "%s: the block refuses the login", k)
					assert.Contains(t, d.BlockedBy, k)
				}
				assert.NotZero(t, checked, "some kind is always checked")
			})
		}
	}
}
