#!/usr/bin/env bash
# Runs defender on this machine until Ctrl-C.
#   ./scripts/run.sh              the whole pipeline (scripts/stack.sh): Redis, ClickHouse,
#                                 the gate service with embedded NATS, the recorder, the admin
#                                 and the example login site
#   ./scripts/run.sh --site-only  the example login site alone, counting failures in memory
#                                 (or in Redis when DEFENDER_REDIS_URL is set); also
#                                 DEFENDER_SITE_ONLY=1
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
--site-only) site_only=1 ;;
"") site_only="${DEFENDER_SITE_ONLY:-}" ;;
-h | --help)
	sed -n '2,8s/^# \{0,1\}//p' "$0"
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
exec go run ./examples/loginapp
