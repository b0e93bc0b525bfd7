package events_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"time"

	"github.com/defender-go/defender/pkg/events"
	"github.com/defender-go/defender/pkg/gate"
)

// The subjects events are published on, under DEFENDER_SUBJECT_PREFIX.
func ExampleSubjects() {
	s := events.Subjects{} // Prefix "" means "defender"
	fmt.Println(s.Attempt("failure"))
	fmt.Println(s.Block("ip"))
	fmt.Println(s.Blocks())
	fmt.Println(s.All())
	fmt.Println(events.Subjects{Prefix: "acme.auth"}.Unblock("username"))
	// Output:
	// defender.attempt.failure
	// defender.block.ip
	// defender.block.>
	// defender.>
	// acme.auth.unblock.username
}

// Decoding an event received from NATS (e.g. in a service of your own).
func ExampleDecodeBlock() {
	data := []byte(`{"v":1,"type":"block","id":"01960c5e-8e2a-7c3d-9a4b-1e2f3a4b5c6d",
		"time":"2025-03-01T12:00:00Z","kind":"ip","subject":"203.0.113.7",
		"until":"2025-03-01T12:05:00Z","permanent":false,"failures":4,"reason":"auto"}`)
	b, err := events.DecodeBlock(data)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.Type, b.Kind, b.Subject, "until", b.Until.Format(time.Kitchen))

	_, err = events.DecodeBlock([]byte(`{"v":1,"type":"block"}`))
	fmt.Println(err)
	// Output:
	// block ip 203.0.113.7 until 12:05PM
	// events: malformed event: missing id
}

// Reading this package's settings in a main; a bad value names its variable.
func ExampleFromEnv() {
	env := map[string]string{"DEFENDER_SUBJECT_PREFIX": "acme", "DEFENDER_EVENT_BUFFER": "abc"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	_, err := events.FromEnv(lookup)
	fmt.Println(err)

	env["DEFENDER_EVENT_BUFFER"] = "100000"
	cfg, err := events.FromEnv(lookup)
	fmt.Println(cfg.EventBuffer, cfg.Subjects().Block("ip"), cfg.StreamMaxAge, err)
	// Output:
	// DEFENDER_EVENT_BUFFER: "abc" is not a whole number: invalid syntax
	// 100000 acme.block.ip 168h0m0s <nil>
}

// The whole pipeline in one process: an embedded NATS server, the
// DEFENDER stream, a publisher handed to the gate as its emitter, and a
// live subscriber to block events. A real main would run the publisher
// next to its HTTP server and Close it at shutdown.
func ExampleNewPublisher() {
	dir, err := os.MkdirTemp("", "defender-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := events.StartEmbedded(events.EmbeddedOptions{Port: -1, StoreDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.WaitForShutdown()
	defer srv.Shutdown()

	ctx := context.Background()
	nc, js, err := events.Connect(ctx, srv.ClientURL(), "example-gate")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{}); err != nil {
		log.Fatal(err)
	}

	// Someone listening for blocks, e.g. to alert or to sync a firewall.
	blocks := make(chan events.Block, 2)
	if _, err := events.SubscribeBlocks(ctx, nc, events.Subjects{}, func(b events.Block) { blocks <- b }); err != nil {
		log.Fatal(err)
	}

	pub, err := events.NewPublisher(js, events.PublisherOptions{Gate: "gate-1"})
	if err != nil {
		log.Fatal(err)
	}

	g, err := gate.New(gate.DefaultConfig(), gate.NewMemoryStore(gate.MemoryOptions{}), gate.WithEmitter(pub))
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close(ctx)

	// Four failures: the fourth blocks the IP and the username (limit 3).
	a := gate.Attempt{IP: netip.MustParseAddr("203.0.113.7"), Username: "alice"}
	for range 4 {
		g.Record(ctx, a, false)
	}
	seen := map[string]string{}
	for range 2 {
		b := <-blocks
		seen[b.Kind] = b.Subject
	}
	fmt.Println("blocked ip:", seen["ip"])
	fmt.Println("blocked username:", seen["username"])

	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pub.Close(closeCtx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("published:", pub.Stats().Published)
	// Output:
	// blocked ip: 203.0.113.7
	// blocked username: alice
	// published: 6
}

// Reading block events that happened while the reader was away: a durable
// JetStream consumer resumes where it stopped. (Needs a NATS server.)
func ExampleConsumeBlocks() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, js, err := events.Connect(ctx, os.Getenv("DEFENDER_NATS_URL"), "firewall-sync")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Drain()
	_, err = events.ConsumeBlocks(ctx, js, events.Subjects{}, "firewall-sync", func(ctx context.Context, b events.Block) error {
		if b.Kind != events.KindIP {
			return nil
		}
		fmt.Println("deny", b.Subject) // an error here has the event delivered again
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
}
