package testenv

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// ParseCommandStats reads the output of INFO commandstats
// ("cmdstat_get:calls=2,usec=...") into calls per command name.
func ParseCommandStats(info string) (map[string]int, error) {
	calls := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			if k != "calls" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("commandstats %q: %w", line, err)
			}
			calls[strings.TrimPrefix(name, "cmdstat_")] = n
		}
	}
	return calls, sc.Err()
}
