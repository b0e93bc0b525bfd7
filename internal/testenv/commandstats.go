package testenv

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// CommandStat is one command's line of INFO commandstats.
type CommandStat struct {
	Calls int64 // times run
	Usec  int64 // µs spent running it
}

// ParseCommandStatLines reads the output of INFO commandstats
// ("cmdstat_get:calls=2,usec=...") into calls and time per command name
// (lower-case, without "cmdstat_").
func ParseCommandStatLines(info string) (map[string]CommandStat, error) {
	stats := map[string]CommandStat{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st CommandStat
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			var dst *int64
			switch k {
			case "calls":
				dst = &st.Calls
			case "usec":
				dst = &st.Usec
			default:
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("commandstats %q: %w", line, err)
			}
			*dst = n
		}
		stats[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return stats, sc.Err()
}

// ParseCommandStats reads the output of INFO commandstats into calls per
// command name.
func ParseCommandStats(info string) (map[string]int, error) {
	stats, err := ParseCommandStatLines(info)
	if err != nil {
		return nil, err
	}
	calls := make(map[string]int, len(stats))
	for name, st := range stats {
		calls[name] = int(st.Calls)
	}
	return calls, nil
}

// ScriptStats sums the script lines of INFO commandstats (EVAL, EVALSHA
// and their read-only forms): how many scripts ran and the µs Redis spent
// in them. The commands run inside scripts have lines of their own and
// are left out.
func ScriptStats(info string) (calls, usec int64, err error) {
	stats, err := ParseCommandStatLines(info)
	if err != nil {
		return 0, 0, err
	}
	for _, name := range []string{"eval", "evalsha", "eval_ro", "evalsha_ro"} {
		calls += stats[name].Calls
		usec += stats[name].Usec
	}
	return calls, usec, nil
}
