#!/usr/bin/env bash
# Runs every fuzz target of the module (func FuzzXxx in a _test.go file)
# one at a time: Go fuzzes one target per invocation.
#   ./scripts/fuzz.sh            5000 executions per target (what CI runs)
#   ./scripts/fuzz.sh 20000x     more executions per target
#   ./scripts/fuzz.sh 5m         for a while each, on demand (make fuzz FUZZTIME=5m)
# New inputs that fail are written to the package's testdata/fuzz/ and
# then run by every plain `go test` as regression cases.
#
# CI counts executions rather than time: Go 1.26's fuzz coordinator can fail
# a duration-bounded run with a bare "context deadline exceeded" when its
# workers are starved at the deadline (golang/go#75804, fixed in Go 1.27),
# and these machines are shared. A count has no deadline to race. A timed run
# that ends with only that message, having written no failing input, is
# replayed from its corpus and passes if the replay does.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_go
fuzztime="${1:-5000x}"
# Targets by package, found by grepping the test files (no build needed).
targets=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sed -E 's|^\./||; s|/[^/]*_test\.go:func | |' | sort -u)
[ -n "$targets" ] || { echo "no fuzz targets" >&2; exit 1; }
n=$(echo "$targets" | wc -l)
echo "== fuzz: $n targets, $fuzztime each"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# only_deadline_race LOG DIR TARGET BEFORE: the run failed with nothing but
# the coordinator's deadline message and wrote no new failing input.
only_deadline_race() {
	local after
	grep -q '^    context deadline exceeded$' "$1" || return 1
	grep -qE '^\s+--- FAIL|panic:|Failing input written|_test\.go:[0-9]+:' "$1" && return 1
	after=$(ls "$2/testdata/fuzz/$3" 2>/dev/null | sort || true)
	[ "$after" = "$4" ]
}
while read -r dir target; do
	before=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | sort || true)
	if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir" >"$log" 2>&1; then
		echo "ok  $target (./$dir) $(grep '^fuzz: elapsed' "$log" | tail -1 | sed 's/^fuzz: //')"
		continue
	fi
	if only_deadline_race "$log" "$dir" "$target" "$before" &&
		go test -count=1 -run "^${target}\$" "./$dir" >/dev/null 2>&1; then
		echo "ok  $target (./$dir) stopped by Go's fuzz deadline race (golang/go#75804); corpus replay passed"
		continue
	fi
	grep -v '^fuzz: elapsed' "$log" >&2
	echo "fuzz target $target in ./$dir failed" >&2
	exit 1
done <<<"$targets"
