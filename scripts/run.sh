#!/usr/bin/env bash
# Runs defender on this machine until Ctrl-C.
#   ./scripts/run.sh              the whole pipeline (scripts/stack.sh): Redis, ClickHouse,
#                                 the gate service with embedded NATS, the recorder, the admin,
#                                 the example login site, and the notifier with its mail
#                                 catcher (mailpit), which shows the lockout mails
#   ./scripts/run.sh --site-only  the example login site alone, counting failures in memory
#                                 (or in Redis when DEFENDER_REDIS_URL is set); also
#                                 DEFENDER_SITE_ONLY=1; port STACK_SITE_PORT (8000), binary
#                                 under DEFENDER_DATA (./data)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
--site-only) site_only=1 ;;
"") site_only="${DEFENDER_SITE_ONLY:-}" ;;
-h | --help)
	sed -n '2,10s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "usage: $0 [--site-only]" >&2
	exit 2
	;;
esac
if [ -z "$site_only" ] || [ "$site_only" = 0 ]; then
	exec ./scripts/stack.sh
fi
. scripts/lib.sh
need_go
# Built, then run in place of this script: `go run` does not pass SIGTERM
# on, so the site would outlive a `kill` of this script and hold its port.
DATA="${DEFENDER_DATA:-$PWD/data}"
mkdir -p "$DATA/bin"
go build -o "$DATA/bin/" ./examples/loginapp
if [ -n "${STACK_SITE_PORT:-}" ]; then
	export DEFENDER_HTTP_ADDR="127.0.0.1:$STACK_SITE_PORT"
fi
exec "$DATA/bin/loginapp"
