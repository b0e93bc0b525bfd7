package reliability_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/defender-go/defender/internal/testenv"
)

// TestParallelGuessesAcrossGateProcesses fires hundreds of guesses at
// once, over HTTP, at four cmd/gate processes sharing one Redis: through
// the two-phase API (POST /v1/attempts, then the outcome) at most limit+1
// reach the password check, and the block is announced exactly once on
// NATS. pkg/gate's TestParallelGuessesAreBounded proves the same of the
// library in one process; this is the deployed form, with HTTP, separate
// processes and their own Redis connections.
func TestParallelGuessesAcrossGateProcesses(t *testing.T) {
	needServers(t, "redis-server")
	const (
		gates   = 4
		guesses = 400
		limit   = 3
	)
	rs := testenv.Redis(t)
	ns := testenv.NATS(t)
	var gs []*gateProc
	for i := range gates {
		gs = append(gs, startGate(t, fmt.Sprintf("guess-gate-%d", i),
			"DEFENDER_REDIS_URL="+rs.URL, "DEFENDER_NATS_URL="+ns.URL,
			"DEFENDER_LOGIN_FAILURE_LIMIT="+strconv.Itoa(limit),
			// Hundreds of requests queue on two cores: give Redis time to
			// answer, and refuse rather than admit on a timeout, so that
			// the bound measured is the store's, not a fail-open one.
			"DEFENDER_REDIS_TIMEOUT=5s", "DEFENDER_FAIL_MODE=closed"))
	}
	client := loadClient(30 * time.Second)
	defer client.CloseIdleConnections()

	for _, tc := range []struct {
		name             string
		sameIP, sameUser bool
		wantBlocks       []string // kinds announced, once each
	}{
		{"one username from many IPs", false, true, []string{"username"}},
		{"one IP with many usernames", true, false, []string{"ip"}},
		{"one username from one IP", true, true, []string{"ip", "username"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "victim-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			ip := fmt.Sprintf("198.51.100.%d", len(tc.wantBlocks)*10+btoi(tc.sameUser))
			var (
				checked  atomic.Int32 // admitted: the password check ran
				statuses sync.Map     // status -> *atomic.Int32
				errs     atomic.Int32
				wg       sync.WaitGroup
			)
			count := func(status int) {
				v, _ := statuses.LoadOrStore(status, new(atomic.Int32))
				v.(*atomic.Int32).Add(1)
			}
			start := make(chan struct{})
			for i := range guesses {
				wg.Go(func() {
					u, addr := fmt.Sprintf("%s-%d", user, i), fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256)
					if tc.sameUser {
						u = user
					}
					if tc.sameIP {
						addr = ip
					}
					g := gs[i%gates]
					<-start
					begin := post(client, g.URL+"/v1/attempts", map[string]any{"ip": addr, "username": u, "path": "/login"})
					if begin.Err != nil {
						errs.Add(1)
						return
					}
					count(begin.Status)
					if begin.Status != http.StatusOK || !begin.Body.Allowed || begin.Body.Token == "" {
						return
					}
					checked.Add(1) // the app checks the password here: a wrong guess
					// The outcome goes to another gate: the shared secret
					// makes the token valid on any of them.
					out := post(client, gs[(i+1)%gates].URL+"/v1/attempts/"+begin.Body.Token, map[string]any{"success": false})
					if out.Err != nil {
						errs.Add(1)
						return
					}
					count(out.Status)
				})
			}
			close(start)
			wg.Wait()
			got := map[int]int32{}
			statuses.Range(func(k, v any) bool { got[k.(int)] = v.(*atomic.Int32).Load(); return true })
			t.Logf("%d guesses over %d gates: %d reached the password check (limit %d); answers by status %v",
				guesses, gates, checked.Load(), limit, got)
			require.Zero(t, errs.Load(), "every guess is answered")
			assert.LessOrEqual(t, int(checked.Load()), limit+1, "at most limit+1 guesses reach the password check")
			assert.GreaterOrEqual(t, int(checked.Load()), 1)
			for status := range got {
				assert.Contains(t, []int{http.StatusOK, http.StatusTooManyRequests}, status, "no other answer")
			}

			waitPublished(t, gs...)
			var kinds []string
			for _, b := range streamBlocks(t, ns.URL) {
				if b.Subject == user || b.Subject == ip {
					kinds = append(kinds, b.Kind)
				}
			}
			assert.ElementsMatch(t, tc.wantBlocks, kinds, "exactly one block event per kind blocked")
		})
	}

	// The read-only check does not bound anything: hundreds of checks
	// answered before the first failure is reported all say "allowed".
	// Measured, not asserted: it is why the two-phase API exists.
	t.Run("check then report (unbounded, measured)", func(t *testing.T) {
		user := "victim-check-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		var checked, errs atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range guesses {
			wg.Go(func() {
				g := gs[i%gates]
				addr := fmt.Sprintf("10.200.%d.%d", i/256%256, i%256)
				<-start
				c := post(client, g.URL+"/v1/check", map[string]any{"ip": addr, "username": user})
				if c.Err != nil {
					errs.Add(1)
					return
				}
				if c.Status != http.StatusOK || !c.Body.Allowed {
					return
				}
				checked.Add(1)
				if r := post(client, g.URL+"/v1/attempts", map[string]any{"ip": addr, "username": user, "success": false}); r.Err != nil {
					errs.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Zero(t, errs.Load())
		t.Logf("check then report: %d of %d guesses were allowed by /v1/check (limit %d)", checked.Load(), guesses, limit)
		waitPublished(t, gs...)
		n := 0
		for _, b := range streamBlocks(t, ns.URL) {
			if b.Subject == user {
				n++
				assert.Equal(t, "username", b.Kind)
			}
		}
		assert.Equal(t, 1, n, "still exactly one block event")
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
