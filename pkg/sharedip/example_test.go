package sharedip_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defender-go/defender/pkg/gate"
	"github.com/defender-go/defender/pkg/sharedip"
)

// The lists a gate is given: read from the environment, loaded at start,
// refreshed by Run until the context ends.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "sharedip")
	defer os.RemoveAll(dir)
	proxies := filepath.Join(dir, "office-proxies.txt")
	_ = os.WriteFile(proxies, []byte("# the office's egress\n192.0.2.0/28\n"), 0o600)
	env := map[string]string{"DEFENDER_SHARED_CIDR_FILES": proxies} // os.LookupEnv in a main

	cfg, err := sharedip.ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		fmt.Println(err)
		return
	}
	lists, err := sharedip.New(cfg, quiet)
	if err != nil {
		fmt.Println(err) // e.g. DEFENDER_SHARED_CIDR_FILES: /etc/...: list refused: ...
		return
	}
	prometheus.NewRegistry().MustRegister(lists.Collectors()...)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = lists.Run(ctx) }() // fetches the URLs, if any are set

	cfgGate := gate.DefaultConfig()
	store := gate.NewMemoryStore(gate.MemoryOptions{Policy: cfgGate.Policy()})
	defer store.Close()
	g, _ := gate.New(cfgGate, store, gate.WithSharedLists(lists), gate.WithLogger(quietLog))
	defer g.Close(context.Background())

	for _, a := range []string{"192.0.2.5", "100.64.1.1", "203.0.113.1"} {
		list, ok := lists.Lookup(netip.MustParseAddr(a))
		fmt.Println(a, list, ok)
	}
	for _, l := range lists.Lists() {
		fmt.Println(l.Name, l.Prefixes)
	}
	// Output:
	// 192.0.2.5 office-proxies true
	// 100.64.1.1 cgnat true
	// 203.0.113.1  false
	// cgnat 1
	// office-proxies 1
}
