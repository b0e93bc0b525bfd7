package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTimes is the CPU time (user + system) used so far by each process of
// a run, and by the whole machine, read from /proc. The difference of two
// readings around a cell, divided by its requests, says where a login's
// CPU goes, which throughput on shared cores only hints at.
type cpuTimes struct {
	// Server is the login server's process (this one: the four servers,
	// the gate, the event publisher).
	Server time.Duration
	// Redis and ClickHouse are their server processes.
	Redis, ClickHouse time.Duration
	// Client is the second process: the load generator, the embedded NATS
	// server and the recorder.
	Client time.Duration
	// Machine is the busy time of every core, whoever used it: what is
	// left after the processes above is other programs on the machine.
	Machine time.Duration
	// Bcrypt is the part of Server that bcrypt's hashes took (bcryptNanos).
	Bcrypt time.Duration
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func (a cpuTimes) sub(b cpuTimes) cpuTimes {
	return cpuTimes{Server: a.Server - b.Server, Redis: a.Redis - b.Redis, ClickHouse: a.ClickHouse - b.ClickHouse,
		Client: a.Client - b.Client, Machine: a.Machine - b.Machine, Bcrypt: a.Bcrypt - b.Bcrypt}
}

// own is the run's processes' CPU time.
func (a cpuTimes) own() time.Duration { return a.Server + a.Redis + a.ClickHouse + a.Client }

// Others is the machine's busy time not used by the run's processes.
func (a cpuTimes) Others() time.Duration {
	return max(0, a.Machine-a.own())
}

// readCPU reads the processes' and the machine's CPU times; a process that
// cannot be read (pid 0, gone) counts 0.
func readCPU(redisPid, clickhousePid, clientPid int) cpuTimes {
	return cpuTimes{
		Server:     procCPU(os.Getpid()),
		Redis:      procCPU(redisPid),
		ClickHouse: procCPU(clickhousePid),
		Client:     procCPU(clientPid),
		Machine:    machineCPU(),
		Bcrypt:     time.Duration(bcryptNanos.Load()),
	}
}

// procSyscalls is the number of read and write system calls a process
// made so far (/proc/<pid>/io's syscr + syscw; 0 if it cannot be read):
// an event's cost is mostly how many of them it takes, not its bytes.
func procSyscalls(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ": ")
		if ok && (name == "syscr" || name == "syscw") {
			x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// procCPU is utime + stime of a process (its threads included).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// Fields 14 and 15 of the line (utime, stime) are 11 and 12 here.
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * clockTick
}

// machineCPU is the busy time of all cores: /proc/stat's cpu line minus
// idle and iowait.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// pinApart pins redis-server (every thread of redisPid) to the first CPU
// this process may use and this process to the others, for the store
// pass: Redis then has a core of its own, as it would in production, and
// its CPU per login no longer includes being descheduled for the load
// generator's goroutines (on two shared cores, a busier client moved
// redis-server's figures by ±25% between rounds). undo restores both
// processes' CPU sets; with a single CPU nothing is pinned (pinned false).
func pinApart(redisPid int) (undo func(), pinned bool, err error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return func() {}, false, fmt.Errorf("read this process's CPUs: %w", err)
	}
	var cpus []int
	for i := range 1024 {
		if all.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return func() {}, false, nil
	}
	var redisSet, selfSet unix.CPUSet
	redisSet.Set(cpus[0])
	for _, c := range cpus[1:] {
		selfSet.Set(c)
	}
	var redisWas unix.CPUSet
	if err := unix.SchedGetaffinity(redisPid, &redisWas); err != nil {
		return func() {}, false, fmt.Errorf("read redis-server's CPUs: %w", err)
	}
	undo = func() {
		_ = setThreads(redisPid, &redisWas)
		_ = setThreads(os.Getpid(), &all)
	}
	if err := setThreads(redisPid, &redisSet); err != nil {
		undo()
		return func() {}, false, fmt.Errorf("pin redis-server: %w", err)
	}
	if err := setThreads(os.Getpid(), &selfSet); err != nil {
		undo()
		return func() {}, false, fmt.Errorf("pin the bench: %w", err)
	}
	return undo, true, nil
}

// setThreads sets the CPU set of every thread of process pid; threads
// started later inherit it from the one that starts them.
func setThreads(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}
