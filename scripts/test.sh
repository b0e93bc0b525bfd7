#!/usr/bin/env bash
# Runs every test of the project against real servers (Redis, ClickHouse,
# embedded NATS and Debian's nats-server, headless Chromium; valgrind for
# the bench's instruction counts), installing what is missing.
#   ./scripts/test.sh            all tests, then the race detector on pkg/gate and
#                                pkg/events, then each fuzz target FUZZTIME
#                                (5000 executions; FUZZTIME=0 skips that; longer
#                                fuzzing: make fuzz FUZZTIME=5m)
#   ./scripts/test.sh -short     the quick loop: vet, gofmt and the unit tests only,
#                                no servers, no race run, no fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_go
if [ "${1:-}" != "-short" ]; then
	need_packages redis-server redis-server clickhouse-server clickhouse-server \
		clickhouse-client clickhouse-client chromium chromium nginx nginx /usr/sbin/nats-server nats-server \
		valgrind valgrind
	need_mailpit
fi
echo "== go vet"
go vet ./...
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
echo "== go test"
go test -count=1 -timeout 20m "$@" ./...
if [ "${1:-}" = "-short" ]; then
	exit 0 # the race build and the fuzz targets' builds alone take minutes on 2 cores
fi
echo "== go test -race (gate and events)"
go test -count=1 -race -timeout 10m "$@" ./pkg/gate/... ./pkg/events/...
if [ "${FUZZTIME:-5000x}" != "0" ]; then
	./scripts/fuzz.sh "${FUZZTIME:-5000x}"
fi
