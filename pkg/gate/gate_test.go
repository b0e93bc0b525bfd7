package gate_test

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/pkg/gate"
)

var ctx = context.Background()

func attempt(ip, user string) gate.Attempt {
	return gate.Attempt{IP: netip.MustParseAddr(ip), Username: user, Path: "/login", UserAgent: "test"}
}

// login runs one attempt through the two-phase API: Begin, then the
// outcome, and returns the decision the caller would act on.
func login(g *gate.Gate, a gate.Attempt, success bool) gate.Decision {
	t, d := g.Begin(ctx, a)
	if !d.Allowed {
		return d
	}
	return t.Finish(ctx, success)
}

// flows are the two ways an application reports attempts.
var flows = []struct {
	name string
	do   func(g *gate.Gate, a gate.Attempt, success bool) gate.Decision
}{
	{"record", func(g *gate.Gate, a gate.Attempt, success bool) gate.Decision { return g.Record(ctx, a, success) }},
	{"two-phase", login},
}

func TestDefenderSemantics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, flow := range flows {
			t.Run(flow.name, func(t *testing.T) {
				do := flow.do

				t.Run("limit+1 failure blocks and is answered locked", func(t *testing.T) {
					g, ev := newGate(t, b, gate.DefaultConfig())
					user, ip := fresh()
					for i := 1; i <= 3; i++ {
						d := do(g, attempt(ip, user), false)
						require.True(t, d.Allowed, "failure %d", i)
						assert.Equal(t, i, d.IPFailures)
						assert.Equal(t, i, d.UsernameFailures)
					}
					d := do(g, attempt(ip, user), false)
					require.False(t, d.Allowed, "the 4th failure blocks")
					assert.ElementsMatch(t, []gate.Kind{gate.KindIP, gate.KindUsername}, d.BlockedBy)
					assert.InDelta(t, 300, d.RetryAfter.Seconds(), 2)
					assert.False(t, d.Permanent)
					// While blocked: refused without reaching the check, counting nothing.
					d = do(g, attempt(ip, user), true)
					require.False(t, d.Allowed)
					assert.Len(t, ev.blocks(true), 2, "one block event per subject")
					outcomes := map[gate.Outcome]int{}
					for _, a := range ev.Attempts() {
						outcomes[a.Outcome]++
					}
					assert.Equal(t, map[gate.Outcome]int{gate.OutcomeFailure: 4, gate.OutcomeBlocked: 1}, outcomes)
				})

				t.Run("blocked IP refuses every username, blocked username every IP", func(t *testing.T) {
					g, _ := newGate(t, b, gate.DefaultConfig())
					user, ip := fresh()
					for i := 0; i < 4; i++ {
						do(g, attempt(ip, user), false)
					}
					other, otherIP := fresh()
					assert.False(t, g.Check(ctx, attempt(ip, other)).Allowed, "same IP, other user")
					assert.False(t, g.Check(ctx, attempt(otherIP, user)).Allowed, "same user, other IP")
					assert.True(t, g.Check(ctx, attempt(otherIP, other)).Allowed)
				})

				t.Run("success clears counters", func(t *testing.T) {
					g, ev := newGate(t, b, gate.DefaultConfig())
					user, ip := fresh()
					for i := 0; i < 3; i++ {
						require.True(t, do(g, attempt(ip, user), false).Allowed)
					}
					d := do(g, attempt(ip, user), true)
					require.True(t, d.Allowed)
					assert.Zero(t, d.IPFailures)
					assert.Zero(t, d.UsernameFailures)
					for i := 0; i < 3; i++ {
						require.True(t, do(g, attempt(ip, user), false).Allowed, "counting starts again")
					}
					assert.Empty(t, ev.Transitions(), "nothing was blocked, so nothing is unblocked")
				})

				t.Run("separate IP and username limits", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.IPFailureLimit, cfg.UsernameFailureLimit = 5, 1
					g, _ := newGate(t, b, cfg)
					user, ip := fresh()
					require.True(t, do(g, attempt(ip, user), false).Allowed)
					d := do(g, attempt(ip, user), false)
					require.False(t, d.Allowed)
					assert.Equal(t, []gate.Kind{gate.KindUsername}, d.BlockedBy)
					other, _ := fresh()
					assert.True(t, g.Check(ctx, attempt(ip, other)).Allowed, "the IP is not blocked yet")
				})

				t.Run("combo mode counts the pair", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.LockOutByIPAndUsername = true
					g, ev := newGate(t, b, cfg)
					user, ip := fresh()
					for i := 0; i < 3; i++ {
						require.True(t, do(g, attempt(ip, user), false).Allowed)
					}
					d := do(g, attempt(ip, user), false)
					require.False(t, d.Allowed)
					assert.Equal(t, []gate.Kind{gate.KindPair}, d.BlockedBy)
					assert.Equal(t, 4, d.PairFailures)
					other, otherIP := fresh()
					assert.True(t, g.Check(ctx, attempt(ip, other)).Allowed, "another user behind the same IP")
					assert.True(t, g.Check(ctx, attempt(otherIP, user)).Allowed, "the same user elsewhere")
					require.Len(t, ev.blocks(true), 1)
					assert.Equal(t, gate.PairSubject(ip, user), ev.blocks(true)[0].Subject)
				})

				t.Run("combo mode counting the IP alone: a success never clears it", func(t *testing.T) {
					// django-defender's reset_failed_attempts never clears the
					// IP in combo mode (jazzband/django-defender#188): else a
					// guesser resets its address's count by logging into an
					// account of its own between guesses.
					cfg := gate.DefaultConfig()
					cfg.LockOutByIPAndUsername, cfg.DisableUsernameLockout = true, true
					g, ev := newGate(t, b, cfg)
					_, ip := fresh()
					for i := 1; i <= 3; i++ {
						victim, _ := fresh()
						d := do(g, attempt(ip, victim), false)
						require.True(t, d.Allowed, "failure %d", i)
						assert.Equal(t, i, d.IPFailures)
					}
					own, _ := fresh()
					d := do(g, attempt(ip, own), true)
					require.True(t, d.Allowed, "the guesser's own account")
					assert.Equal(t, 3, d.IPFailures, "the success did not clear the IP")
					victim, _ := fresh()
					d = do(g, attempt(ip, victim), false)
					require.False(t, d.Allowed, "the 4th failure of the IP blocks")
					assert.Equal(t, []gate.Kind{gate.KindIP}, d.BlockedBy)
					assert.Equal(t, 4, d.IPFailures)
					assert.False(t, do(g, attempt(ip, own), true).Allowed, "a success does not lift the block")
					assert.Len(t, ev.blocks(true), 1)
					assert.Empty(t, ev.blocks(false))
				})

				t.Run("combo mode counting the username alone: a success clears it", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.LockOutByIPAndUsername, cfg.DisableIPLockout = true, true
					g, _ := newGate(t, b, cfg)
					user, _ := fresh()
					for i := 1; i <= 3; i++ {
						_, ip := fresh()
						require.True(t, do(g, attempt(ip, user), false).Allowed)
					}
					_, ip := fresh()
					d := do(g, attempt(ip, user), true)
					require.True(t, d.Allowed)
					assert.Zero(t, d.UsernameFailures, "a success clears the username, as in django-defender")
				})

				t.Run("disabled IP lockout", func(t *testing.T) {
					// The failure counters keep the original's meaning;
					// spraying, its own setting, is counted still.
					cfg := gate.DefaultConfig()
					cfg.DisableIPLockout = true
					g, _ := newGate(t, b, cfg)
					_, ip := fresh()
					for i := 0; i < 10; i++ {
						u, _ := fresh()
						require.True(t, do(g, attempt(ip, u), false).Allowed, "many users from one IP")
					}
					u, _ := fresh()
					d := do(g, attempt(ip, u), false)
					require.False(t, d.Allowed, "the 11th name sprays")
					assert.Equal(t, []gate.Kind{gate.KindSpray}, d.BlockedBy)

					cfg.SprayLimit = 0
					g, _ = newGate(t, b, cfg)
					_, ip = fresh()
					for i := 0; i < 20; i++ {
						u, _ := fresh()
						require.True(t, do(g, attempt(ip, u), false).Allowed, "many users from one IP, spraying off")
					}
					user, _ := fresh()
					for i := 0; i < 3; i++ {
						do(g, attempt(ip, user), false)
					}
					d = do(g, attempt(ip, user), false)
					require.False(t, d.Allowed)
					assert.Equal(t, []gate.Kind{gate.KindUsername}, d.BlockedBy)
				})

				t.Run("disabled username lockout", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.DisableUsernameLockout = true
					g, _ := newGate(t, b, cfg)
					user, _ := fresh()
					for i := 0; i < 20; i++ {
						_, ip := fresh()
						require.True(t, do(g, attempt(ip, user), false).Allowed, "one user from many IPs")
					}
					_, ip := fresh()
					for i := 0; i < 3; i++ {
						do(g, attempt(ip, user), false)
					}
					d := do(g, attempt(ip, user), false)
					require.False(t, d.Allowed)
					assert.Equal(t, []gate.Kind{gate.KindIP}, d.BlockedBy)
				})

				t.Run("empty username is never counted", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.DisableIPLockout = true
					g, _ := newGate(t, b, cfg)
					_, ip := fresh()
					for _, u := range []string{"", "   ", "\u200b"} {
						for i := 0; i < 5; i++ {
							d := do(g, attempt(ip, u), false)
							require.True(t, d.Allowed)
							assert.Zero(t, d.UsernameFailures)
						}
					}
				})

				t.Run("username identity is normalised", func(t *testing.T) {
					g, _ := newGate(t, b, gate.DefaultConfig())
					suffix := randHex(4)
					for i, u := range []string{"Alice" + suffix, " alice" + suffix + " ", "ＡＬＩＣＥ" + suffix} {
						_, ip := fresh()
						d := do(g, attempt(ip, u), false)
						require.True(t, d.Allowed)
						assert.Equal(t, i+1, d.UsernameFailures, u)
					}
				})

				t.Run("IPv6 clients counted by /64", func(t *testing.T) {
					g, ev := newGate(t, b, gate.DefaultConfig())
					base := "2001:db8:" + randHex(2) + ":" + randHex(2) + "::"
					for i := 1; i <= 4; i++ {
						u, _ := fresh()
						ip := base + itoa(i*1000)
						d := do(g, attempt(ip, u), false)
						assert.Equal(t, i <= 3, d.Allowed, "attempt %d from %s", i, ip)
					}
					u, _ := fresh()
					assert.False(t, g.Check(ctx, attempt(base+"ffff:1", u)).Allowed, "another address of the /64")
					require.Len(t, ev.blocks(true), 1)
					assert.Equal(t, netip.MustParsePrefix(base+"/64").String(), ev.blocks(true)[0].Subject)
				})

				t.Run("permanent block", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.LockoutCooloffs = []time.Duration{0}
					cfg.AttemptCooloff = 0
					g, ev := newGate(t, b, cfg)
					user, ip := fresh()
					for i := 0; i < 4; i++ {
						do(g, attempt(ip, user), false)
					}
					d := g.Check(ctx, attempt(ip, user))
					require.False(t, d.Allowed)
					assert.True(t, d.Permanent)
					assert.Zero(t, d.RetryAfter)
					assert.Zero(t, d.RetryAfterSeconds())
					for _, tr := range ev.blocks(true) {
						assert.True(t, tr.Permanent)
						assert.True(t, tr.Until.IsZero())
					}
				})

				t.Run("whitelists and blacklist", func(t *testing.T) {
					cfg := gate.DefaultConfig()
					cfg.IPWhitelist = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
					cfg.UsernameWhitelist = []string{"Admin"}
					cfg.IPBlacklist = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}
					g, _ := newGate(t, b, cfg)
					user, ip := fresh()
					for i := 0; i < 10; i++ {
						d := do(g, attempt("192.0.2.10", user+"-wl"), false)
						if i < 3 {
							require.True(t, d.Allowed)
						}
					}
					// The whitelisted IP never blocks, but the username it tried does.
					assert.False(t, g.Check(ctx, attempt(ip, user+"-wl")).Allowed)
					assert.True(t, g.Check(ctx, attempt("192.0.2.10", "someone-else")).Allowed)
					for i := 0; i < 10; i++ {
						_, ip := fresh()
						require.True(t, do(g, attempt(ip, " ADMIN "), false).Allowed, "whitelisted username")
					}
					d := do(g, attempt("198.51.100.77", user), true)
					require.False(t, d.Allowed, "blacklisted")
					assert.Equal(t, gate.ReasonBlacklist, d.Reason)
					assert.True(t, d.Permanent)
					assert.False(t, g.Check(ctx, attempt("2001:db8:bad:1::5", user)).Allowed)
				})
			})
		}
	})
}

func TestCooloffs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for real expiry")
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		t.Run("lockout expires", func(t *testing.T) {
			cfg := gate.DefaultConfig()
			cfg.LockoutCooloffs = []time.Duration{time.Second}
			g, _ := newGate(t, b, cfg)
			user, ip := fresh()
			for i := 0; i < 4; i++ {
				g.Record(ctx, attempt(ip, user), false)
			}
			require.False(t, g.Check(ctx, attempt(ip, user)).Allowed)
			require.Eventually(t, func() bool { return g.Check(ctx, attempt(ip, user)).Allowed },
				5*time.Second, 50*time.Millisecond)
			// Failures are still above the limit: the next failure blocks again,
			// as in django-defender.
			d := g.Record(ctx, attempt(ip, user), false)
			assert.False(t, d.Allowed)
		})
		t.Run("attempt cool-off forgets failures", func(t *testing.T) {
			cfg := gate.DefaultConfig()
			cfg.AttemptCooloff = time.Second
			g, _ := newGate(t, b, cfg)
			user, ip := fresh()
			for i := 0; i < 3; i++ {
				g.Record(ctx, attempt(ip, user), false)
			}
			require.Eventually(t, func() bool { return g.Check(ctx, attempt(ip, user)).UsernameFailures == 0 },
				5*time.Second, 50*time.Millisecond)
			assert.True(t, g.Record(ctx, attempt(ip, user), false).Allowed, "counting starts again")
		})
	})
}

// TestRecordRefusedByAnAbandonedCharge: a charge never finished becomes a
// failure when its pending timeout passes, and blocks if it takes a count
// above the limit; the Record call that finds it so is refused, counts
// nothing, and its attempt is published as blocked, not as the outcome
// the caller reported.
func TestRecordRefusedByAnAbandonedCharge(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a pending timeout")
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		cfg := gate.DefaultConfig()
		cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = 0, 0, 0
		cfg.PendingTimeout = 200 * time.Millisecond
		g, ev := newGate(t, b, cfg)
		for _, success := range []bool{true, false} {
			user, ip := fresh()
			_, d := g.Begin(ctx, attempt(ip, user)) // abandoned: never finished
			require.True(t, d.Allowed)
			time.Sleep(300 * time.Millisecond)
			d = g.Record(ctx, attempt(ip, user), success)
			require.False(t, d.Allowed, "success=%v: the abandoned charge blocked first", success)
			assert.Equal(t, 1, d.IPFailures, "success=%v: the refused attempt counted nothing", success)
			assert.Equal(t, 1, d.UsernameFailures, "success=%v", success)
			as := ev.Attempts()
			require.NotEmpty(t, as)
			last := as[len(as)-1]
			assert.Equal(t, gate.OutcomeBlocked, last.Outcome, "success=%v: published as refused", success)
			assert.ElementsMatch(t, []gate.Kind{gate.KindIP, gate.KindUsername}, last.BlockedBy, "success=%v", success)
		}
		assert.Len(t, ev.blocks(true), 4, "the blocks the expired charges made are announced")
	})
}

func TestHooksFireOncePerTransition(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		var blocks, unblocks atomic.Int32
		g, ev := newGate(t, b, gate.DefaultConfig(), gate.WithHooks(gate.Hooks{
			OnBlock:   func(gate.TransitionRecord) { blocks.Add(1) },
			OnUnblock: func(gate.TransitionRecord) { unblocks.Add(1) },
		}))
		user, ip := fresh()
		for i := 0; i < 6; i++ {
			g.Record(ctx, attempt(ip, user), false)
		}
		assert.EqualValues(t, 2, blocks.Load(), "ip and username, once each")
		ok, err := g.Unblock(ctx, gate.KindUsername, " "+user+" ")
		require.NoError(t, err)
		assert.True(t, ok)
		ok, err = g.Unblock(ctx, gate.KindUsername, user)
		require.NoError(t, err)
		assert.False(t, ok, "already unblocked")
		assert.EqualValues(t, 1, unblocks.Load())
		un := ev.blocks(false)
		require.Len(t, un, 1)
		assert.Equal(t, gate.ReasonAdmin, un[0].Reason)
		for _, b := range ev.blocks(true) {
			assert.Equal(t, ip, b.IP, "a block names the address whose failure made it")
		}
	})
}

// TestUnblockByUser: the user's own unlock lifts the username's block
// only, with reason user; the address stays blocked.
func TestUnblockByUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		g, ev := newGate(t, b, gate.DefaultConfig())
		user, ip := fresh()
		for i := 0; i < 6; i++ {
			g.Record(ctx, attempt(ip, user), false)
		}
		ok, err := g.UnblockByUser(ctx, user, "")
		require.NoError(t, err)
		assert.True(t, ok)
		un := ev.blocks(false)
		require.Len(t, un, 1)
		assert.Equal(t, gate.ReasonUser, un[0].Reason)
		assert.Equal(t, gate.KindUsername, un[0].Kind)
		d := g.Check(ctx, attempt(ip, user))
		assert.False(t, d.Allowed, "the address's block stays")
		assert.Equal(t, []gate.Kind{gate.KindIP}, d.BlockedBy)
		_, other := fresh()
		assert.True(t, g.Check(ctx, attempt(other, user)).Allowed, "the user from elsewhere gets in")
	})
}

// TestUnblockByUserMakesTheDeviceFamiliar: with smart lockout, the
// browser that unlocked keeps access when the attacker blocks the user
// again from elsewhere.
func TestUnblockByUserMakesTheDeviceFamiliar(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		cfg := gate.DefaultConfig()
		cfg.SmartLockout = true
		g, _ := newGate(t, b, cfg)
		user, attacker := fresh()
		block := func() {
			for i := 0; i < 4; i++ {
				g.Record(ctx, attempt(attacker, user), false)
			}
		}
		block()
		device := g.NewDevice()
		_, home := fresh()
		owner := gate.Attempt{IP: netip.MustParseAddr(home), Username: user, Device: device}
		require.False(t, g.Check(ctx, owner).Allowed, "blocked before the unlock")
		ok, err := g.UnblockByUser(ctx, user, device)
		require.NoError(t, err)
		assert.True(t, ok)
		_, err = g.Unblock(ctx, gate.KindIP, attacker) // as if the attacker moved on to a new address
		require.NoError(t, err)
		block()
		stranger := gate.Attempt{IP: netip.MustParseAddr(home), Username: user}
		assert.False(t, g.Check(ctx, stranger).Allowed, "the attacker blocked the user again")
		d := g.Check(ctx, owner)
		assert.True(t, d.Allowed, "the device that unlocked is familiar: %+v", d)
		assert.True(t, d.Familiar)
	})
}

func TestAdminBlockAndList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		g, ev := newGate(t, b, gate.DefaultConfig())
		user, ip := fresh()
		v6 := "2001:db8:" + randHex(2) + "::1"
		require.NoError(t, g.Block(ctx, gate.KindIP, ip, time.Hour))
		require.NoError(t, g.Block(ctx, gate.KindIP, v6, 0))
		require.NoError(t, g.Block(ctx, gate.KindUsername, "Weird/User+<b>%", time.Hour))
		require.NoError(t, g.Block(ctx, gate.KindUsername, user, time.Hour))
		assert.False(t, g.Check(ctx, attempt(ip, "x")).Allowed)
		ips, err := g.Blocked(ctx, gate.KindIP, 0)
		require.NoError(t, err)
		subjects := map[string]gate.BlockState{}
		for _, s := range ips {
			subjects[s.Subject] = s
		}
		require.Contains(t, subjects, ip)
		v6subject, err := g.IPSubject(v6)
		require.NoError(t, err)
		require.Contains(t, subjects, v6subject)
		assert.True(t, subjects[v6subject].Permanent)
		users, err := g.Blocked(ctx, gate.KindUsername, 0)
		require.NoError(t, err)
		var names []string
		for _, s := range users {
			names = append(names, s.Subject)
		}
		assert.Contains(t, names, "weird/user+<b>%")
		ok, err := g.Unblock(ctx, gate.KindIP, v6)
		require.NoError(t, err)
		assert.True(t, ok, "IPv6 can be unblocked")
		assert.Len(t, ev.blocks(true), 4)
		for _, tr := range ev.Transitions() {
			assert.Equal(t, gate.ReasonAdmin, tr.Reason)
		}
		_, err = g.Unblock(ctx, gate.KindIP, "not-an-ip")
		assert.ErrorIs(t, err, gate.ErrBadIP)
	})
}

// TestParallelGuessesAreBounded is the property the original lacks: however
// many guesses for one username arrive at once, across gate processes
// sharing the store, at most limit+1 reach the password check, and the
// block is announced once.
func TestParallelGuessesAreBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tc := range []struct {
			name      string
			sameIP    bool
			sameUser  bool
			wantKinds int
		}{
			{"one username from many IPs", false, true, 1},
			{"one IP with many usernames", true, false, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				const gates, guesses, limit = 4, 400, 3
				cfg := gate.DefaultConfig()
				cfg.FailureLimit, cfg.IPFailureLimit, cfg.UsernameFailureLimit = limit, limit, limit
				// Hundreds of goroutines (slower still under -race) queue for
				// the pool: give the store time to answer, and let a timeout
				// refuse rather than admit, so the bound is the store's.
				cfg.StoreTimeout, cfg.FailMode = 10*time.Second, gate.FailClosed
				var all []*events
				var gs []*gate.Gate
				for i := 0; i < gates; i++ {
					g, ev := newGate(t, b, cfg)
					gs, all = append(gs, g), append(all, ev)
				}
				user, ip := fresh()
				var checked atomic.Int32
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := 0; i < guesses; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						u, addr := fresh()
						if tc.sameUser {
							u = user
						}
						if tc.sameIP {
							addr = ip
						}
						<-start
						tk, d := gs[i%gates].Begin(ctx, attempt(addr, u))
						if !d.Allowed {
							return
						}
						checked.Add(1) // the password check runs, and fails
						time.Sleep(time.Millisecond)
						tk.Finish(ctx, false)
					}()
				}
				close(start)
				wg.Wait()
				assert.LessOrEqual(t, int(checked.Load()), limit+1)
				assert.GreaterOrEqual(t, int(checked.Load()), 1)
				blocks := 0
				for _, ev := range all {
					blocks += len(ev.blocks(true))
				}
				assert.Equal(t, tc.wantKinds, blocks, "exactly one block event")
			})
		}
	})
}

func TestMemoryGateNeedsNoServer(t *testing.T) {
	cfg := gate.DefaultConfig()
	store := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy()})
	defer store.Close()
	g, err := gate.New(cfg, store)
	require.NoError(t, err)
	defer g.Close(ctx)
	tk, d := g.Begin(ctx, attempt("192.0.2.1", "bob"))
	require.True(t, d.Allowed)
	assert.True(t, tk.Finish(ctx, true).Allowed)
	assert.ErrorIs(t, tk.Finish(ctx, true).Err, gate.ErrSettled)
}

// TestNewRefusesAStoreOfAnotherPolicy: the gate's local limiter and its
// replays apply the configuration's timings, so a store applying others
// (here, the default policy under a configuration with other cool-offs)
// is refused at New, not found out from blocks of the wrong length.
func TestNewRefusesAStoreOfAnotherPolicy(t *testing.T) {
	cfg := gate.DefaultConfig()
	cfg.LockoutCooloffs = []time.Duration{time.Minute, time.Hour}
	other := gate.NewMemoryStore(gate.MemoryOptions{SweepInterval: -1})
	defer other.Close()
	_, err := gate.New(cfg, other)
	assert.ErrorContains(t, err, "build the store with cfg.Policy()")

	same := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfg.Policy(), SweepInterval: -1})
	defer same.Close()
	g, err := gate.New(cfg, same)
	require.NoError(t, err)
	require.NoError(t, g.Close(context.Background()))
	assert.Equal(t, cfg.Policy(), same.Policy())
}
