package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/defender-go/defender/pkg/gate"
)

// cliDeps opens what a CLI command needs, with warnings on stderr.
func cliDeps(ctx context.Context, cfg *Config, need needs, stderr io.Writer) (*deps, *slog.Logger, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := openDeps(ctx, cfg, need, log, nil)
	return d, log, err
}

// closeCLI flushes events for up to 10 s.
func closeCLI(ctx context.Context, d *deps, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	d.Close(cctx, log)
}

// redisOnlyDeps parses the flags of a command that takes no arguments
// and needs only Redis, and opens it.
func redisOnlyDeps(ctx context.Context, name string, fs *flag.FlagSet, cfg *Config, args []string, stderr io.Writer) (*deps, *slog.Logger, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) > 0 {
		return nil, nil, fmt.Errorf("%w: %s takes no arguments", errUsage, name)
	}
	if err := cfg.finish(needs{redis: true}); err != nil {
		return nil, nil, err
	}
	return cliDeps(ctx, cfg, needs{redis: true}, stderr)
}

// cmdBlocked prints the blocked subjects as a table.
func cmdBlocked(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs, cfg := newFlagSet("blocked", stderr, lookup)
	asJSON := fs.Bool("json", false, "print JSON as GET /api/v1/blocked does")
	d, log, err := redisOnlyDeps(ctx, "blocked", fs, cfg, args, stderr)
	if err != nil {
		return err
	}
	defer closeCLI(ctx, d, log)
	list, err := listBlocked(ctx, d.gate, 0, time.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONTo(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tVALUE\tUNTIL\tLEFT\tNOTE")
	n, reports := 0, 0
	for _, ki := range kindInfos {
		for _, e := range *list.of(ki.Kind) {
			until, left, note := "permanent", "-", "-"
			if e.Until != nil {
				until, left = e.Until.Format(time.RFC3339), humanDuration(e.RetryAfter)
			}
			if e.Report {
				note = "report: refuses nobody"
				reports++
			} else {
				n++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ki.Kind, printable(e.Value), until, left, note)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d blocked", n)
	if reports > 0 {
		fmt.Fprintf(stdout, ", %d reported", reports)
	}
	fmt.Fprintln(stdout)
	if cfg.Gate.Mode == gate.ModeObserve {
		fmt.Fprintln(stdout, "observe mode (DEFENDER_MODE=observe): the gates refuse nobody; these are the blocks enforce mode would apply")
	}
	return nil
}

// cmdReindex adds the blocks set by hand in Redis (redis-cli SET
// <prefix>:blocked:ip:<ip>, as with django-defender) to the blocked index,
// so that the admin lists them.
func cmdReindex(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs, cfg := newFlagSet("reindex", stderr, lookup)
	d, log, err := redisOnlyDeps(ctx, "reindex", fs, cfg, args, stderr)
	if err != nil {
		return err
	}
	defer closeCLI(ctx, d, log)
	n, err := d.gate.Reindex(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d blocks added to the index\n", n)
	return nil
}

// cmdUnblock lifts a block (or clears a report): admin unblock KIND VALUE.
func cmdUnblock(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs, cfg := newFlagSet("unblock", stderr, lookup)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: unblock KIND VALUE (KIND: %s)", errUsage, kindList())
	}
	if err := cfg.finish(needs{redis: true}); err != nil {
		return err
	}
	d, log, err := cliDeps(ctx, cfg, needs{redis: true}, stderr)
	if err != nil {
		return err
	}
	defer closeCLI(ctx, d, log)
	res, err := unblockSubject(ctx, d.gate, pos[0], pos[1])
	if err != nil {
		return err
	}
	switch {
	case res.Unblocked && kindInfoOf(res.Kind).Report:
		fmt.Fprintf(stdout, "cleared the report of %s %s\n", res.Kind, res.Value)
	case res.Unblocked:
		fmt.Fprintf(stdout, "unblocked %s %s\n", res.Kind, res.Value)
	default:
		fmt.Fprintf(stdout, "%s %s was not blocked (failures cleared)\n", res.Kind, res.Value)
	}
	warnNoEvents(cfg, stderr)
	return nil
}

// cmdBlock blocks by hand: admin block KIND VALUE [--for 1h | --permanent].
func cmdBlock(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs, cfg := newFlagSet("block", stderr, lookup)
	forS := fs.String("for", "", "block duration: 90s, 1h30m, 7d or seconds (default: the first lockout cool-off)")
	permanent := fs.Bool("permanent", false, "block until unblocked")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: block KIND VALUE [--for 1h | --permanent] (KIND: %s, as the gates check it)", errUsage, kindList())
	}
	if *permanent && *forS != "" {
		return fmt.Errorf("%w: --for and --permanent exclude each other", errUsage)
	}
	if err := cfg.finish(needs{redis: true}); err != nil {
		return err
	}
	dur := cfg.Gate.LockoutCooloffs[0]
	if *forS != "" {
		if dur, err = parseDuration(*forS); err != nil {
			return fmt.Errorf("%w: --for: %v", errUsage, err)
		}
	}
	perm := *permanent || dur == 0
	d, log, err := cliDeps(ctx, cfg, needs{redis: true}, stderr)
	if err != nil {
		return err
	}
	defer closeCLI(ctx, d, log)
	res, err := blockSubject(ctx, d.gate, pos[0], pos[1], dur, perm, time.Now())
	if err != nil {
		return err
	}
	if res.Permanent {
		fmt.Fprintf(stdout, "blocked %s %s permanently\n", res.Kind, res.Value)
	} else {
		fmt.Fprintf(stdout, "blocked %s %s until %s\n", res.Kind, res.Value, res.Until.Format(time.RFC3339))
	}
	warnNoEvents(cfg, stderr)
	return nil
}

func warnNoEvents(cfg *Config, stderr io.Writer) {
	if cfg.NATSURL == "" {
		fmt.Fprintln(stderr, "warning: DEFENDER_NATS_URL is not set: no event was published")
	}
}

// cmdAttempts prints attempts newest first as a table.
func cmdAttempts(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs, cfg := newFlagSet("attempts", stderr, lookup)
	q := url.Values{}
	for _, f := range []struct{ name, usage string }{
		{"username", "only this username"},
		{"ip", "only this address or network (2001:db8::/64)"},
		{"result", "success, failure or blocked"},
		{"observe", "true: only what observe mode let through; false: only enforce mode's attempts"},
		{"since", "from: RFC 3339, unix seconds or a duration ago (1h, 7d)"},
		{"until", "to (exclusive), same forms as --since"},
		{"limit", "rows, 1..1000 (default 50)"},
		{"cursor", "continue after a previous page (printed as next)"},
	} {
		fs.Func(f.name, f.usage, func(v string) error { q.Set(f.name, v); return nil })
	}
	asJSON := fs.Bool("json", false, "print JSON as GET /api/v1/attempts does")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: attempts takes flags only, got %q", errUsage, pos)
	}
	if err := cfg.finish(needs{clickhouse: true}); err != nil {
		return err
	}
	f, err := parseFilter(q, &cfg.Gate, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	d, log, err := cliDeps(ctx, cfg, needs{clickhouse: true}, stderr)
	if err != nil {
		return err
	}
	defer closeCLI(ctx, d, log)
	rows, next, err := d.hist.Attempts(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		page := AttemptPage{Attempts: rows}
		if next != nil {
			c := next.String()
			page.Next = &c
		}
		return writeJSONTo(stdout, page)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tRESULT\tIP\tUSERNAME\tPATH\tMARKS")
	for _, a := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Time.Format(time.RFC3339), a.Result, a.IP, printable(a.Username), printable(a.Path), marks(a))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != nil {
		fmt.Fprintf(stdout, "next: --cursor %s\n", next)
	}
	return nil
}

// marks are an attempt's marks for the CLI: "observe" (let through in
// observe mode: a blocked result would have been refused),
// "shared=<list>", "familiar", "blocked_by=<kinds>" (the counters that
// refused it, joined by "+"); "-" for none.
func marks(a AttemptRow) string {
	var ms []string
	if a.Observe {
		ms = append(ms, "observe")
	}
	if a.Shared != "" {
		ms = append(ms, "shared="+printable(a.Shared))
	}
	if a.Familiar {
		ms = append(ms, "familiar")
	}
	if len(a.BlockedBy) > 0 {
		ms = append(ms, "blocked_by="+printable(strings.Join(a.BlockedBy, "+")))
	}
	if len(ms) == 0 {
		return "-"
	}
	return strings.Join(ms, ",")
}

// printable escapes control characters so that data cannot drive the terminal.
func printable(s string) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	return strings.ReplaceAll(q, `\"`, `"`)
}
