package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/defender-go/defender/pkg/events"
)

// LiveEvent is what the Blocked page receives when a block starts or ends.
type LiveEvent struct {
	Type       string     `json:"type"` // block | unblock
	Kind       string     `json:"kind"`
	Value      string     `json:"value"`
	Until      *time.Time `json:"until"`
	Permanent  bool       `json:"permanent"`
	RetryAfter int        `json:"retry_after"`
	Reason     string     `json:"reason"`
	Time       time.Time  `json:"time"`
	// Observe marks observe mode's would-be block or unblock (see NewLive).
	Observe bool `json:"observe"`
}

// Live follows block and unblock events on NATS (core subscriptions on
// <prefix>.block.> and <prefix>.unblock.>, and in observe mode on
// <prefix>.observe.block.> and <prefix>.observe.unblock.> too) and fans
// them out to the open Blocked pages through server-sent events.
type Live struct {
	nc   *nats.Conn
	subs []*nats.Subscription
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	clients map[chan []byte]struct{}
	closed  bool
}

// NewLive subscribes to the block and unblock subjects. With observe (the
// admin configured as its gates, DEFENDER_MODE=observe) it follows observe
// mode's would-be blocks and unblocks too: they are what the gates' store
// holds, so what the Blocked page lists. Without it they never reach the
// page, which would show them as blocks.
func NewLive(nc *nats.Conn, subjects events.Subjects, observe bool, log *slog.Logger) (*Live, error) {
	l := &Live{nc: nc, log: log, now: time.Now, clients: map[chan []byte]struct{}{}}
	subjs := []string{subjects.Blocks(), subjects.Unblocks()}
	if observe {
		subjs = append(subjs, subjects.ObserveBlocks(), subjects.ObserveUnblocks())
	}
	for _, subj := range subjs {
		sub, err := nc.Subscribe(subj, l.receive)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		l.subs = append(l.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		l.Close()
		return nil, fmt.Errorf("nats flush: %w", err)
	}
	// The subscriptions resume when NATS comes back, but what was
	// published meanwhile never reaches them: end every stream, so that
	// each page reconnects and reloads its list (blocked.js does on open).
	prev := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		l.dropClients()
	})
	return l, nil
}

// receive turns one NATS message into a live event for every client.
func (l *Live) receive(m *nats.Msg) {
	b, err := events.DecodeBlock(m.Data)
	if err != nil {
		l.log.Warn("live: skipping a malformed block event", "subject", m.Subject, "err", err)
		return
	}
	ev := LiveEvent{Type: string(b.Type), Kind: b.Kind, Value: b.Subject, Until: b.Until,
		Permanent: b.Permanent, Reason: b.Reason, Time: b.Time, Observe: b.Observe}
	if b.Type == events.TypeBlock && b.Until != nil {
		ev.RetryAfter = max(0, int(math.Ceil(b.Until.Sub(l.now()).Seconds())))
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return
	}
	l.broadcast([]byte("event: " + ev.Type + "\ndata: " + string(data) + "\n\n"))
}

// broadcast hands a frame to every client; a client too slow to keep up
// is dropped (its page reconnects and reloads the list).
func (l *Live) broadcast(frame []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.clients {
		select {
		case ch <- frame:
		default:
			delete(l.clients, ch)
			close(ch)
		}
	}
}

// subscribe registers a client. The channel is closed when the client is
// dropped or the Live closed; cancel unregisters it.
func (l *Live) subscribe() (<-chan []byte, func()) {
	ch := make(chan []byte, 64)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(ch)
		return ch, func() {}
	}
	l.clients[ch] = struct{}{}
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.clients[ch]; ok {
			delete(l.clients, ch)
			close(ch)
		}
	}
}

// dropClients ends every client's stream; their pages reconnect.
func (l *Live) dropClients() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.clients {
		delete(l.clients, ch)
		close(ch)
	}
}

// Status is the NATS connection's state, for /healthz.
func (l *Live) Status() string { return l.nc.Status().String() }

// Close unsubscribes and ends every client's stream.
func (l *Live) Close() {
	for _, s := range l.subs {
		_ = s.Unsubscribe()
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.dropClients()
}

// events is GET /api/v1/events: a text/event-stream of LiveEvent frames
// ("event: block" / "event: unblock"). Without NATS it answers 204, which
// tells EventSource not to reconnect.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.live == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ch, cancel := s.live.subscribe()
	defer cancel()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n: live\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	ping := time.NewTicker(20 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case frame, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(frame); err != nil {
				return
			}
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
