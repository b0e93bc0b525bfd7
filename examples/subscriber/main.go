// Command subscriber prints every block and unblock the gates publish:
// a starting point for a program that acts on them (a firewall, a chat
// alert). With -durable NAME it reads through a durable JetStream consumer
// and so also gets the events published while it was not running.
//
//	DEFENDER_NATS_URL=nats://127.0.0.1:14222 go run ./examples/subscriber
//	DEFENDER_NATS_URL=nats://127.0.0.1:14222 go run ./examples/subscriber -durable firewall
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/defender-go/defender/pkg/events"
)

func main() {
	durable := flag.String("durable", "", "durable consumer name: also get what was published while away")
	flag.Parse()
	url := os.Getenv("DEFENDER_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, url, *durable, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run prints blocks and unblocks until ctx ends.
func run(ctx context.Context, url, durable string, out io.Writer) error {
	nc, js, err := events.Connect(ctx, url, "subscriber")
	if err != nil {
		return err
	}
	defer nc.Drain()
	s := events.Subjects{Prefix: os.Getenv("DEFENDER_SUBJECT_PREFIX")} // "" is "defender"

	var mu sync.Mutex // the subscriptions deliver on goroutines of their own
	show := func(b events.Block) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case b.Type == events.TypeUnblock:
			fmt.Fprintf(out, "unblock %s %s (%s)\n", b.Kind, b.Subject, b.Reason)
		case b.Permanent:
			fmt.Fprintf(out, "block %s %s permanently (%s)\n", b.Kind, b.Subject, b.Reason)
		default:
			fmt.Fprintf(out, "block %s %s until %s (%s, %d failures)\n",
				b.Kind, b.Subject, b.Until.Format("15:04:05"), b.Reason, b.Failures)
		}
	}

	if durable == "" {
		// Live only: what is published from now on, over core NATS.
		if _, err := events.SubscribeBlocks(ctx, nc, s, show); err != nil {
			return err
		}
		if _, err := events.SubscribeUnblocks(ctx, nc, s, show); err != nil {
			return err
		}
	} else {
		// From the DEFENDER stream: each event until acknowledged (a nil
		// return), resuming where this consumer stopped.
		handle := func(_ context.Context, b events.Block) error { show(b); return nil }
		if _, err := events.ConsumeBlocks(ctx, js, s, durable+"-blocks", handle); err != nil {
			return err
		}
		if _, err := events.ConsumeUnblocks(ctx, js, s, durable+"-unblocks", handle); err != nil {
			return err
		}
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "listening on", url)
	<-ctx.Done()
	return nil
}
