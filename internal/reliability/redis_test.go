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

// Settings of the Redis fault test.
const (
	// redisTimeout is DEFENDER_REDIS_TIMEOUT: the bound of every store call.
	redisTimeout = 250 * time.Millisecond
	// answerDeadline is how long a client waits for any answer. Every
	// answer by design comes within redisTimeout (the fail mode decides
	// when the store does not answer; an outcome the store did not take
	// waits in the gate's backlog); the rest is room for a CI machine busy
	// with other packages. An answer later than this fails the test; the
	// measured times are logged.
	answerDeadline = redisTimeout + 4*time.Second
	// redisDown is how long Redis stays dead.
	redisDown = 3 * time.Second
	// failureLimit is DEFENDER_LOGIN_FAILURE_LIMIT.
	failureLimit = 3
)

// TestRedisKilledDuringLogins kills Redis (SIGKILL) under a stream of
// two-phase logins through two cmd/gate processes, for each fail mode,
// and restarts it on the same port. Every request is answered within
// answerDeadline; the answers follow DEFENDER_FAIL_MODE (local: decided
// by each gate's local limiter, marked degraded; closed: 503
// unavailable); the attacker blocked before the outage is never let
// through; nothing is a 500; the gates' goroutines come back to where
// they were; and once Redis listens again an attacker is counted and
// blocked again. pkg/gate's TestRedisDown proves the library's side of
// this in-process; this is the service.
func TestRedisKilledDuringLogins(t *testing.T) {
	needServers(t, "redis-server")
	for _, mode := range []string{"local", "closed"} {
		t.Run(mode, func(t *testing.T) { redisKilled(t, mode) })
	}
}

// phase of a request, by when it started.
type phase int

const (
	before phase = iota // Redis up
	during              // Redis dead
	after               // Redis back
)

func (p phase) String() string { return [...]string{"before", "during", "after"}[p] }

// tally counts a phase's answers.
type tally struct {
	logins                int // logins started (a begin sent)
	requests              int
	ok, blocked, degraded int // 200, 429, 200 with degraded:true
	unavailable           int // 503 with unavailable:true
	other                 map[int]int
	errs                  []error
	latency               latencies
}

func (tl *tally) add(a answer) {
	tl.requests++
	tl.latency = append(tl.latency, a.Latency)
	switch {
	case a.Err != nil:
		tl.errs = append(tl.errs, a.Err)
	case a.Status == http.StatusOK && a.Body.Degraded:
		tl.degraded++
	case a.Status == http.StatusOK:
		tl.ok++
	case a.Status == http.StatusTooManyRequests:
		tl.blocked++
	case a.Status == http.StatusServiceUnavailable && a.Body.Unavailable:
		tl.unavailable++
	default:
		if tl.other == nil {
			tl.other = map[int]int{}
		}
		tl.other[a.Status]++
	}
}

func (tl *tally) String() string {
	return fmt.Sprintf("%d logins, %d requests: %d ok, %d blocked (429), %d degraded (200), %d unavailable (503), other %v, %d errors; latency %s",
		tl.logins, tl.requests, tl.ok, tl.blocked, tl.degraded, tl.unavailable, tl.other, len(tl.errs), tl.latency)
}

// logins runs workers that log in through gates (two phases: begin, then
// the outcome; one login in four asks /v1/check first) until stop is
// closed, sorting the answers by phase.
type logins struct {
	mu     sync.Mutex
	phases [3]tally
	phase  atomic.Int32
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLogins(gs []*gateProc, client *http.Client, workers int) *logins {
	l := &logins{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				g := gs[(w+i)%len(gs)]
				// 40 users per worker, from 8 addresses; one login in ten
				// fails, so some users get blocked: 429 is a normal answer.
				who := map[string]any{"ip": fmt.Sprintf("203.0.113.%d", w*8+i%8), "username": fmt.Sprintf("user-%d-%d", w, i%40), "path": "/login"}
				p := phase(l.phase.Load())
				var check *answer
				if i%4 == 0 { // the login form asks first, now and then
					c := post(client, g.URL+"/v1/check", map[string]any{"ip": who["ip"], "username": who["username"]})
					check = &c
				}
				begin := post(client, g.URL+"/v1/attempts", who)
				var outcome *answer
				if begin.Err == nil && begin.Status == http.StatusOK && begin.Body.Token != "" {
					o := post(client, gs[(w+i+1)%len(gs)].URL+"/v1/attempts/"+begin.Body.Token, map[string]any{"success": i%10 != 0})
					outcome = &o
				}
				l.mu.Lock()
				tl := &l.phases[p]
				tl.logins++
				if check != nil {
					tl.add(*check)
				}
				tl.add(begin)
				if outcome != nil {
					tl.add(*outcome)
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return l
}

// halt stops the workers and returns the tallies.
func (l *logins) halt() [3]tally {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.phases
}

func redisKilled(t *testing.T, mode string) {
	rs := testenv.Redis(t)
	ns := testenv.NATS(t)
	var gs []*gateProc
	for i := range 2 {
		gs = append(gs, startGate(t, fmt.Sprintf("gate-%s-%d", mode, i),
			"DEFENDER_REDIS_URL="+rs.URL, "DEFENDER_NATS_URL="+ns.URL,
			"DEFENDER_FAIL_MODE="+mode,
			"DEFENDER_REDIS_TIMEOUT="+redisTimeout.String(),
			"DEFENDER_LOGIN_FAILURE_LIMIT="+strconv.Itoa(failureLimit)))
	}
	client := loadClient(answerDeadline)
	defer client.CloseIdleConnections()

	// Goroutines of each gate at rest, after some traffic.
	warm := startLogins(gs, client, 4)
	time.Sleep(500 * time.Millisecond)
	warm.halt()
	// restingGoroutines closes the client's idle connections, gives the
	// gates a moment to end their goroutines, and reads go_goroutines.
	restingGoroutines := func() ([]float64, error) {
		client.CloseIdleConnections()
		time.Sleep(200 * time.Millisecond)
		var out []float64
		for _, g := range gs {
			m, err := testenv.Scrape(g.URL + "/metrics")
			if err != nil {
				return nil, err
			}
			out = append(out, m["go_goroutines"])
		}
		return out, nil
	}
	baseline, err := restingGoroutines()
	require.NoError(t, err)

	// An attacker blocked before the outage.
	attacker := map[string]any{"ip": "192.0.2.66", "username": "attacked-" + mode, "success": false}
	for range failureLimit + 1 {
		post(client, gs[0].URL+"/v1/attempts", attacker)
	}
	a := post(client, gs[1].URL+"/v1/check", map[string]any{"ip": attacker["ip"], "username": attacker["username"]})
	require.NoError(t, a.Err)
	require.Equal(t, http.StatusTooManyRequests, a.Status, "the attacker is blocked before the outage")

	l := startLogins(gs, client, 6)
	time.Sleep(time.Second)

	l.phase.Store(int32(during))
	rs.Kill()
	killed := time.Now()
	// The blocked attacker keeps trying while Redis is dead.
	var duringAttacker tally
	for time.Since(killed) < redisDown {
		duringAttacker.add(post(client, gs[0].URL+"/v1/attempts", attacker))
		time.Sleep(50 * time.Millisecond)
	}
	rs.Start() // returns once it listens: the clock of "back" starts here
	back := time.Now()
	l.phase.Store(int32(after))

	// A new attacker, as soon as Redis is back: when are their failures
	// counted again, and when are they blocked? (This Redis has no
	// persistence: it comes back empty, and so would the first attacker.)
	fresh := map[string]any{"ip": "192.0.2.77", "username": "fresh-" + mode, "success": false}
	var counted, blocked time.Duration
	var probes int
	require.Eventually(t, func() bool {
		r := post(client, gs[probes%2].URL+"/v1/attempts", fresh)
		probes++
		if r.Err != nil || r.Body.Degraded || r.Body.Unavailable {
			return false
		}
		if counted == 0 && (r.Body.IPFailures > 0 || r.Status == http.StatusTooManyRequests) {
			counted = time.Since(back)
		}
		if r.Status == http.StatusTooManyRequests && len(r.Body.BlockedBy) > 0 {
			blocked = time.Since(back)
			return true
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "protection never resumed after Redis came back")
	// The attacker blocked before the kill, asked at both gates once each
	// answers from Redis again: this Redis kept nothing.
	var forgotten []answer
	for _, g := range gs {
		var a answer
		require.Eventually(t, func() bool {
			a = post(client, g.URL+"/v1/check", map[string]any{"ip": attacker["ip"], "username": attacker["username"]})
			return a.Err == nil && !a.Body.Degraded && !a.Body.Unavailable
		}, 30*time.Second, 10*time.Millisecond, "%s answers from Redis again", g.name)
		forgotten = append(forgotten, a)
	}
	time.Sleep(time.Second)
	tallies := l.halt()

	t.Logf("fail mode %s; Redis dead for %s; store timeout %s; answer deadline %s", mode, redisDown, redisTimeout, answerDeadline)
	for p, tl := range tallies {
		t.Logf("  %-6s %s", phase(p), &tl)
	}
	t.Logf("  blocked attacker while Redis was dead: %s", &duringAttacker)
	t.Logf("  after Redis was back: first failure counted after %s, attacker blocked again after %s (%d probes)",
		counted.Round(time.Millisecond), blocked.Round(time.Millisecond), probes)
	for i, a := range forgotten {
		t.Logf("  attacker blocked before the kill, asked at %s after Redis was back (no persistence): %d allowed=%t",
			gs[i].name, a.Status, a.Body.Allowed)
	}

	all := append(tallies[:], duringAttacker)
	for _, tl := range all {
		assert.Empty(t, tl.errs, "every request answered within %s", answerDeadline)
		assert.Empty(t, tl.other, "no answer other than 200, 429 and the fail mode's")
	}
	assert.Positive(t, tallies[during].logins, "logins ran during the outage")
	assert.Zero(t, duringAttacker.ok+duringAttacker.degraded, "the blocked attacker is never let through")
	switch mode {
	case "local":
		for _, tl := range all {
			assert.Zero(t, tl.unavailable, "the local mode never answers 503")
		}
		assert.Positive(t, tallies[during].degraded, "logins during the outage go on, decided by the local limiter")
		assert.Positive(t, duringAttacker.blocked, "the local limiter refuses the attacker by the block Redis reported")
	case "closed":
		for _, tl := range all {
			assert.Zero(t, tl.degraded, "fail closed never decides without the store")
		}
		assert.Positive(t, tallies[during].unavailable, "logins during the outage are refused with 503")
	}

	for _, g := range gs {
		require.False(t, g.exited(), "%s is still running", g.name)
		assert.Zero(t, metric(t, g.URL, "defender_gate_http_panics_total"), "%s: no handler panicked", g.name)
		assert.Eventually(t, func() bool {
			resp, err := http.Get(g.URL + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 10*time.Second, 50*time.Millisecond, "%s reports healthy again", g.name)
	}

	// No goroutine growth: at rest again, each gate is back to its count.
	var now []float64
	assert.Eventually(t, func() bool {
		if now, err = restingGoroutines(); err != nil {
			return false
		}
		for i := range now {
			if now[i] > baseline[i]+3 {
				return false
			}
		}
		return true
	}, 15*time.Second, 200*time.Millisecond, "gate goroutines grew")
	t.Logf("  gate goroutines at rest: before %v, after %v", baseline, now)
}
