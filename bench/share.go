package main

import (
	"context"
	"fmt"
	"time"
)

// The share pass measures the events pipeline's share of a bcrypt login's
// CPU: the same bcrypt logins through gate + Redis with and without
// events, the CPU time of all the run's processes per login (the login
// server with the publisher, redis-server, clickhouse-server, and the
// client process with the load generator, NATS and the recorder), and per
// round the difference over the CPU without events. A throughput ratio
// cannot show 1%: a bcrypt cell of a few hundred logins moves by a login
// more or less, and on shared cores by what other programs do. So the
// cells are long (-d-share, 15 s: about 450 logins), only the two
// configurations run, alternating, for -share-rounds rounds (5), and the
// figure is the median of the rounds' own shares with their spread.
const passShare = "share"

// shareConfigs are the share pass's configurations: without, then with
// events.
var shareConfigs = []string{cfgRedis, cfgEvents}

// shareWorkload is the share pass's workload: failures, the brute force
// the gate is there for; every login is an event in every workload.
const shareWorkload = wlFailure

// sharePass is the share pass's sweep. Each cell waits, inside its CPU
// reading, the recorder's longest hold (a few events wait up to
// record.MaxDelayFlushes flushes) and a half second after the load, so
// that the last batch of the cell's events is written in the cell that
// made it; the configuration without events waits as long.
func sharePass(o options) pass {
	settle := recordMaxDelay(o.RecordFlush) + 500*time.Millisecond
	if o.Quick {
		settle = 0
	}
	return pass{ID: passShare, Title: fmt.Sprintf("bcrypt (cost %d), %d clients, with and without events", bcryptCost, o.Concurrency),
		Check: checkBcrypt, Concurrency: o.Concurrency, Duration: o.ShareDuration, Settle: settle}
}

// runShare runs the share pass: o.ShareRounds rounds of the two
// configurations, which of them goes first alternating.
func (e *env) runShare(ctx context.Context) ([]cell, error) {
	var ts []*target
	for _, name := range shareConfigs {
		for _, t := range e.targets {
			if t.name == name {
				ts = append(ts, t)
			}
		}
	}
	p := sharePass(e.o)
	var cells []cell
	for round := range e.o.ShareRounds {
		for _, t := range rotate(ts, round) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			c, err := e.measure(round, p, shareWorkload, t)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s, %s: %w", round+1, passShare, t.name, err)
			}
			pl := perLogin(&c)
			e.logf("round %d  %-7s %-8s %-20s %6.0f µs of CPU per login (login server %.0f, redis-server %.0f, client %.0f, clickhouse-server %.0f; %d logins)",
				round+1, passShare, shareWorkload, t.name, pl.Own, pl.Server, pl.Redis, pl.Client, pl.ClickHouse, c.Load.Requests)
			cells = append(cells, c)
		}
	}
	return cells, nil
}

// cpuPerLogin is a cell's CPU time per login in µs, by process (see
// cpuTimes), Own their sum, Bcrypt the hashes' part of Server, and Rest
// Own without the hashes: what a configuration can change.
type cpuPerLogin struct {
	Server, Redis, Client, ClickHouse, Own, Bcrypt, Rest float64
}

func perLogin(c *cell) cpuPerLogin {
	n := float64(c.Load.Requests)
	own, bc := usPer(c.CPU.own(), n), usPer(c.CPU.Bcrypt, n)
	return cpuPerLogin{Server: usPer(c.CPU.Server, n), Redis: usPer(c.CPU.Redis, n), Client: usPer(c.CPU.Client, n),
		ClickHouse: usPer(c.CPU.ClickHouse, n), Own: own, Bcrypt: bc, Rest: own - bc}
}

func (a cpuPerLogin) sub(b cpuPerLogin) cpuPerLogin {
	return cpuPerLogin{a.Server - b.Server, a.Redis - b.Redis, a.Client - b.Client, a.ClickHouse - b.ClickHouse,
		a.Own - b.Own, a.Bcrypt - b.Bcrypt, a.Rest - b.Rest}
}

// shareRound is one round of the share pass.
type shareRound struct {
	Round                     int
	LoginsWithout, LoginsWith int
	Without, With             cpuPerLogin
	// Share is the pipeline's CPU per login over the login's without it:
	// (With.Rest − Without.Rest) / Without.Own. The hashes are left out
	// of the difference: the pipeline does not run them, and what they
	// cost moves by more than 1% with what shares the cores (results saved
	// before Bcrypt was measured have it 0, Rest = Own).
	Share float64
	// Others is the cores other programs kept busy over the round's two
	// cells: a busy machine slows bcrypt itself (the cores' shared caches
	// and hyperthreads), which no configuration is the cause of.
	Others float64
}

// shareFigures are the share pass's figures.
type shareFigures struct {
	// Rounds are the rounds in which both configurations ran, in order.
	Rounds []shareRound
	// Share is the rounds' shares' median and spread.
	Share spread
	// Without and With are the medians of each configuration's CPU per
	// login, Delta the median of the rounds' differences, by process.
	Without, With, Delta cpuPerLogin
}

// shareFiguresOf reduces the share pass's cells to its figures: a share
// per round, taken within the round, then their median and spread.
func shareFiguresOf(cells []cell) shareFigures {
	byRound := map[int]*[2]*cell{}
	var order []int
	for i := range cells {
		c := &cells[i]
		k := -1
		for j, name := range shareConfigs {
			if c.Config == name {
				k = j
			}
		}
		if k < 0 || c.Load.Requests == 0 {
			continue
		}
		pair := byRound[c.Round]
		if pair == nil {
			pair = &[2]*cell{}
			byRound[c.Round] = pair
			order = append(order, c.Round)
		}
		pair[k] = c
	}
	var f shareFigures
	var shares []float64
	var without, with, delta []cpuPerLogin
	for _, round := range order {
		pair := byRound[round]
		if pair[0] == nil || pair[1] == nil {
			continue
		}
		wo, wi := perLogin(pair[0]), perLogin(pair[1])
		sr := shareRound{Round: round, LoginsWithout: pair[0].Load.Requests, LoginsWith: pair[1].Load.Requests,
			Without: wo, With: wi, Share: (wi.Rest - wo.Rest) / wo.Own,
			Others: float64(pair[0].CPU.Others()+pair[1].CPU.Others()) / float64(pair[0].Load.Elapsed+pair[1].Load.Elapsed)}
		f.Rounds = append(f.Rounds, sr)
		shares = append(shares, sr.Share)
		without, with, delta = append(without, wo), append(with, wi), append(delta, wi.sub(wo))
	}
	f.Share = spreadOf(shares)
	f.Without, f.With, f.Delta = medianPerLogin(without), medianPerLogin(with), medianPerLogin(delta)
	return f
}

// medianPerLogin is the median of each process's figure.
func medianPerLogin(xs []cpuPerLogin) cpuPerLogin {
	m := func(field func(cpuPerLogin) float64) float64 { return medianBy(xs, field) }
	return cpuPerLogin{
		Server:     m(func(x cpuPerLogin) float64 { return x.Server }),
		Redis:      m(func(x cpuPerLogin) float64 { return x.Redis }),
		Client:     m(func(x cpuPerLogin) float64 { return x.Client }),
		ClickHouse: m(func(x cpuPerLogin) float64 { return x.ClickHouse }),
		Own:        m(func(x cpuPerLogin) float64 { return x.Own }),
		Bcrypt:     m(func(x cpuPerLogin) float64 { return x.Bcrypt }),
		Rest:       m(func(x cpuPerLogin) float64 { return x.Rest }),
	}
}
