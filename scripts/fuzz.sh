#!/usr/bin/env bash
# Runs every fuzz target of the module (func FuzzXxx in a _test.go file)
# for a while each, one at a time: Go fuzzes one target per invocation.
#   ./scripts/fuzz.sh            3s per target (what CI runs)
#   ./scripts/fuzz.sh 5m         longer, on demand (make fuzz FUZZTIME=5m)
# New inputs that fail are written to the package's testdata/fuzz/ and
# then run by every plain `go test` as regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_go
fuzztime="${1:-3s}"
# Targets by package, found by grepping the test files (no build needed).
targets=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sed -E 's|^\./||; s|/[^/]*_test\.go:func | |' | sort -u)
[ -n "$targets" ] || { echo "no fuzz targets" >&2; exit 1; }
n=$(echo "$targets" | wc -l)
echo "== fuzz: $n targets, $fuzztime each"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r dir target; do
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir" >"$log" 2>&1; then
		grep -v '^fuzz: elapsed' "$log" >&2
		echo "fuzz target $target in ./$dir failed" >&2
		exit 1
	fi
	echo "ok  $target (./$dir) $(grep '^fuzz: elapsed' "$log" | tail -1 | sed 's/^fuzz: //')"
done <<<"$targets"
