package main

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/defender-go/defender/internal/legacyredis"
)

// ctGateBefore is the gate's first store protocol, the "before" of the
// change to one script per login, measured in the same run as the rest.
const ctGateBefore = "gate, first protocol"

// prefixGateBefore keys the first protocol's contender.
const prefixGateBefore = "store-gate-v1"

// gateBeforeContender replays the first store protocol
// (internal/legacyredis) as its gate ran it: the Begin script on the
// login's path, every attempt charged as pending; the outcome's Finish
// script written in the background by four workers, each sending what is
// waiting, up to 64, in one pipeline (the gate's settle loop then). The
// scripts take the keys and arguments the gate gave them, with the
// bench's policy (failure limits of 1,000,000, the default timings).
type gateBeforeContender struct {
	rdb     *redis.Client
	seed    maphash.Seed
	queues  [settleWorkersBefore]chan beforeOutcome
	workers sync.WaitGroup
	queued  atomic.Int64
	seq     atomic.Uint64
	errs    atomic.Int64
}

const (
	settleWorkersBefore = 4
	settleBatchBefore   = 64
)

// beforeOutcome is one login's outcome waiting to be written.
type beforeOutcome struct {
	a       *storeAttempt
	token   string
	success bool
}

func newGateBeforeContender(rdb *redis.Client) *gateBeforeContender {
	c := &gateBeforeContender{rdb: rdb, seed: maphash.MakeSeed()}
	for i := range c.queues {
		c.queues[i] = make(chan beforeOutcome, 2048)
		c.workers.Add(1)
		go c.settleLoop(c.queues[i])
	}
	return c
}

// The first protocol's arguments for the bench's policy: attempt
// cool-off, pending timeout, lockout memory (ms), then per counter
// subject, limit and keep, then the lockout cool-offs (see
// internal/legacyredis/v1/common.lua).
const (
	beforeCooloff = "300000"
	beforePending = "30000"
	beforeMemory  = "86400000"
	beforeLimit   = 1_000_000
)

func (c *gateBeforeContender) keys(a *storeAttempt) []string {
	p := prefixGateBefore
	ip, user := ":ip:"+a.ipS, ":username:"+a.user
	return []string{p + ":failed" + ip, p + ":blocked" + ip, p + ":pending" + ip, p + ":lockouts" + ip,
		p + ":failed" + user, p + ":blocked" + user, p + ":pending" + user, p + ":lockouts" + user,
		p + ":index:blocked:ip", p + ":index:blocked:username"}
}

func (c *gateBeforeContender) args(a *storeAttempt, token string, success bool) []any {
	flag := "0"
	if success {
		flag = "1"
	}
	return []any{beforeCooloff, beforePending, beforeMemory, token, flag, 2,
		a.ipS, beforeLimit, "0", a.user, beforeLimit, "0", beforeCooloff}
}

func (c *gateBeforeContender) login(ctx context.Context, a *storeAttempt, success bool) (bool, error) {
	token := "v1-" + strconv.FormatUint(c.seq.Add(1), 36)
	reply, err := legacyredis.Begin.Run(ctx, c.rdb, c.keys(a), c.args(a, token, false)...).Slice()
	if err != nil {
		return false, fmt.Errorf("first protocol begin: %w", err)
	}
	if len(reply) == 0 || reply[0] != int64(1) {
		return false, nil
	}
	c.queued.Add(1)
	c.queues[maphash.String(c.seed, a.user)%settleWorkersBefore] <- beforeOutcome{a: a, token: token, success: success}
	return true, nil
}

// settleLoop writes the outcomes of one queue in batches, as the gate's
// settle workers did.
func (c *gateBeforeContender) settleLoop(ch chan beforeOutcome) {
	defer c.workers.Done()
	batch := make([]beforeOutcome, 0, settleBatchBefore)
	for o := range ch {
		batch = append(batch[:0], o)
	more:
		for len(batch) < settleBatchBefore {
			select {
			case o, ok := <-ch:
				if !ok {
					break more
				}
				batch = append(batch, o)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pipe := c.rdb.Pipeline()
		for _, o := range batch {
			legacyredis.Finish.EvalSha(ctx, pipe, c.keys(o.a), c.args(o.a, o.token, o.success)...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			// The first batch after a flush: load the script, then again.
			for _, o := range batch {
				if err := legacyredis.Finish.Run(ctx, c.rdb, c.keys(o.a), c.args(o.a, o.token, o.success)...).Err(); err != nil {
					c.errs.Add(1)
				}
			}
		}
		cancel()
		c.queued.Add(-int64(len(batch)))
	}
}

func (c *gateBeforeContender) settle(ctx context.Context) error {
	for c.queued.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("first protocol: outcomes not written: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	if n := c.errs.Load(); n > 0 {
		return fmt.Errorf("first protocol: %d outcomes failed", n)
	}
	return nil
}

func (c *gateBeforeContender) failures(ctx context.Context, a *storeAttempt) (int, int, error) {
	return keyScheme{prefixGateBefore}.failures(ctx, c.rdb, a)
}

func (c *gateBeforeContender) degraded() int64 { return 0 }

func (c *gateBeforeContender) close() error {
	for _, q := range c.queues {
		close(q)
	}
	c.workers.Wait()
	return nil
}
