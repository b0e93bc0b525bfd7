package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// NATSProcess is a nats-server running as a process of its own, unlike
// NATS's embedded server: for a program (the bench) that reads the
// server's CPU time apart from its clients'.
type NATSProcess struct {
	URL string // nats://127.0.0.1:port
	cmd *exec.Cmd
}

// StartNATSProcess runs the nats-server binary bin with JetStream, its
// file store in dir (which must exist), on a free loopback port, and waits
// until it listens. The caller stops it with Kill. The log goes to
// dir/nats-server.log.
func StartNATSProcess(bin, dir string) (*NATSProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	log := filepath.Join(dir, "nats-server.log")
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"-js", "-sd", filepath.Join(dir, "jetstream"), "-l", log)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	p := &NATSProcess{URL: "nats://" + addr, cmd: cmd}
	if err := waitTCP(addr, 20*time.Second); err != nil {
		p.Kill()
		b, _ := os.ReadFile(log)
		return nil, fmt.Errorf("nats-server: %w\n%s", err, tail(b, 2000))
	}
	return p, nil
}

// Pid is the server's process id (0 when it is not running), for reading
// its CPU time.
func (p *NATSProcess) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill stops the server at once (SIGKILL). Safe to call twice.
func (p *NATSProcess) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}
