#!/usr/bin/env bash
# Runs every test of the project against real servers (Redis, ClickHouse,
# embedded NATS and Debian's nats-server, headless Chromium), installing
# what is missing.
#   ./scripts/test.sh            all tests
#   ./scripts/test.sh -short     unit tests only, no servers
# Ends by running each fuzz target FUZZTIME (5000 executions, under a minute in all);
# FUZZTIME=0 skips that. Longer fuzzing: make fuzz FUZZTIME=5m.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_go
if [ "${1:-}" != "-short" ]; then
	need_packages redis-server redis-server clickhouse-server clickhouse-server \
		clickhouse-client clickhouse-client chromium chromium nginx nginx /usr/sbin/nats-server nats-server
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
echo "== go test -race (gate and events)"
go test -count=1 -race -timeout 10m "$@" ./pkg/gate/... ./pkg/events/...
if [ "${FUZZTIME:-5000x}" != "0" ]; then
	./scripts/fuzz.sh "${FUZZTIME:-5000x}"
fi
