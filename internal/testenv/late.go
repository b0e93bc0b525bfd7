package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LateProxy is a TCP proxy in front of a server whose answers it can hold
// back: what clients send reaches the server at once, what the server
// answers reaches them after the delay set then. It makes a call that the
// server ran but whose answer came after the client's deadline, the case
// that a paused or killed server cannot make.
type LateProxy struct {
	Addr   string // host:port to dial instead of the server's
	target string
	ln     net.Listener
	delay  atomic.Int64 // ns
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

// Late starts a LateProxy to target (host:port), closed when the test
// ends. Its delay is 0 until SetDelay.
func Late(t testing.TB, target string) *LateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("late proxy: %v", err)
	}
	p := &LateProxy{Addr: ln.Addr().String(), target: target, ln: ln}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// SetDelay holds back every answer the server sends from now on by d.
func (p *LateProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *LateProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(s, c, false) })
		p.wg.Go(func() { p.pipe(c, s, true) })
	}
}

// pipe copies from src to dst; late holds each chunk back by the delay
// (the server's answers).
func (p *LateProxy) pipe(dst, src net.Conn, late bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.delay.Load()); late && d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or a side closed
		}
	}
}

func (p *LateProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
