package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/testenv"
)

// The instructions pass counts what a login costs redis-server in
// instructions, with valgrind's callgrind: the store pass's contenders
// and logins, against a redis-server of its own run under callgrind.
// Unlike CPU time, the count does not move with what else the shared
// cores run: two runs with the same scripts gave counts within 2.5% and
// ratios to the floor within 1% (the store pass's ratios move by 10%), so
// a change to a script shows in one run. It counts redis-server's user-space instructions only: the
// kernel's work per round trip (reading and writing the sockets), which
// the store pass's CPU time holds, is left out, so its ratios are wider
// than the store pass's. Callgrind runs the server some fifty times
// slower, so the gate's outcomes batch differently than at full speed;
// the store pass measured that batching does not change its CPU per
// login. It runs only when named (-only instructions): it needs valgrind.
const passInstructions = "instructions"

// instrCell is one contender in one workload of the instructions pass.
type instrCell struct {
	Workload  string
	Contender string
	Logins    int
	// Instructions is redis-server's main thread's over the logins,
	// outcomes written (callgrind's Ir).
	Instructions int64
	// Degraded is the gate's Begins decided without the store: none,
	// with the pass's deadline, or the cell's count would miss them.
	Degraded int64
}

// instrStoreTimeout is the gate's store deadline in the instructions
// pass: far above a call's time under callgrind, so that every login is
// Redis's work.
const instrStoreTimeout = 30 * time.Second

// runInstructions runs the instructions pass: both workloads, every
// store contender once (the count needs no second round).
func (e *env) runInstructions(ctx context.Context) ([]instrCell, error) {
	for _, tool := range []string{"valgrind", "callgrind_control"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("instructions pass: %s not found: install Debian's valgrind package", tool)
		}
	}
	dir := filepath.Join(e.dir, "redis-callgrind")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e.logf("starting redis-server under callgrind in %s", dir)
	srv, err := testenv.StartRedisUnder(dir, "valgrind", "--tool=callgrind", "--callgrind-out-file="+filepath.Join(dir, "callgrind.out.%p"))
	if err != nil {
		return nil, fmt.Errorf("instructions pass: %w", err)
	}
	defer srv.Kill()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64, DB: storeDB,
		DialTimeout: time.Minute, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rdb.Close()
	var cells []instrCell
	for _, wl := range storeWorkloads {
		for _, name := range storeContenders(wl) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			c, err := e.measureInstructions(ctx, wl, name, rdb, srv.Pid())
			if err != nil {
				return nil, fmt.Errorf("%s, %s, %s: %w", passInstructions, wl, name, err)
			}
			e.logf("%-12s %-8s %-20s %7.1fk instructions/login (%d logins)",
				passInstructions, wl, name, float64(c.Instructions)/1e3/float64(c.Logins), c.Logins)
			cells = append(cells, c)
		}
	}
	return cells, nil
}

// measureInstructions measures one contender in one workload: a warm-up
// of a tenth of the logins (scripts loaded, connections dialled), the
// database emptied, then the logins with the server's instruction count
// read around them, outcomes settled before the second reading.
func (e *env) measureInstructions(ctx context.Context, wl, name string, rdb *redis.Client, pid int) (instrCell, error) {
	c := instrCell{Workload: wl, Contender: name, Logins: e.o.InstrLogins}
	ct, err := newContender(name, rdb, instrStoreTimeout)
	if err != nil {
		return c, err
	}
	defer ct.close()
	success := wl == wlSuccess
	sd := seed(0, passInstructions, wl)
	if err := drive(ctx, ct, storeAttempts(max(1, c.Logins/10), sd+1), success, e.o.Concurrency, time.Time{}); err != nil {
		return c, fmt.Errorf("warm-up: %w", err)
	}
	if err := ct.settle(ctx); err != nil {
		return c, err
	}
	var i0, d0 int64
	err = measureLogins(ctx, ct, rdb, storeAttempts(c.Logins, sd), success, e.o.Concurrency, func() (err error) {
		d0 = ct.degraded()
		i0, err = callgrindInstructions(ctx, pid)
		return err
	}, func() error {
		i1, err := callgrindInstructions(ctx, pid)
		if err != nil {
			return err
		}
		c.Instructions, c.Degraded = i1-i0, ct.degraded()-d0
		if c.Degraded > 0 {
			return fmt.Errorf("the gate decided %d logins without Redis", c.Degraded)
		}
		return nil
	})
	return c, err
}

// callgrindInstructions reads the instructions the main thread of the
// callgrind run pid has executed so far (callgrind_control -e Ir).
func callgrindInstructions(ctx context.Context, pid int) (int64, error) {
	out, err := exec.CommandContext(ctx, "callgrind_control", "-e", "Ir", strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("callgrind_control: %w: %s", err, out)
	}
	return parseCallgrindIr(string(out))
}

// parseCallgrindIr reads the main thread's Ir from callgrind_control's
// totals, a line "Th 1  27,027,576".
func parseCallgrindIr(out string) (int64, error) {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "Th" && f[1] == "1" {
			n, err := strconv.ParseInt(strings.ReplaceAll(f[2], ",", ""), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("callgrind_control: %q: %w", line, err)
			}
			return n, nil
		}
	}
	return 0, errors.New("callgrind_control: no totals for thread 1 in its output:\n" + out)
}

// instructionsSection writes the instructions pass's figures, when it ran.
func (r *report) instructionsSection(p func(string, ...any)) {
	if len(r.instr) == 0 {
		return
	}
	per := map[storeKey]float64{}
	for _, c := range r.instr {
		per[storeKey{c.Workload, c.Contender}] = float64(c.Instructions) / float64(c.Logins)
	}
	p("## Redis instructions per login")
	p("")
	p("The store pass's contenders and logins again (%d per cell, %d goroutines, after a tenth as many of unmeasured warm-up), against a redis-server of their own run under valgrind's callgrind (`-only instructions`): the instructions its main thread executed per login, outcomes written (callgrind's *Ir*, read with `callgrind_control` around the logins). The count repeats whatever else the machine does (two runs with the same scripts gave counts within 2.5%% and ratios to the floor within 1%%), so a change to a script shows in one run; it leaves out the kernel's work per round trip (the sockets), which the store pass's CPU time holds, so its ratios are wider than the CPU's. Under callgrind the server runs many times slower and the gate's outcomes batch differently (the gate's store deadline is %s here, so that Redis decides every login).",
		r.instr[0].Logins, r.o.Concurrency, instrStoreTimeout)
	p("")
	for _, wl := range storeWorkloads {
		p("### %s workload", capitalize(wl))
		p("")
		p("| contender | k instructions / login | / %s | / %s |", ctFloor, ctFloorSpray)
		p("|---|--:|--:|--:|")
		for _, ct := range storeContenders(wl) {
			v, ok := per[storeKey{wl, ct}]
			if !ok {
				continue
			}
			p("| %s | %s | %s | %s |", ct, num1(v/1e3), ratio(v/per[storeKey{wl, ctFloor}]), ratio(v/per[storeKey{wl, ctFloorSpray}]))
		}
		p("")
	}
}
