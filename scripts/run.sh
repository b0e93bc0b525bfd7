#!/usr/bin/env bash
# Runs the example login site protected by the gate (in-memory store, or
# Redis when DEFENDER_REDIS_URL is set). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_go
exec go run ./examples/loginapp
