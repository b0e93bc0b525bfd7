#!/usr/bin/env bash
# Refreshes the admin's screenshots the README shows (docs/img/admin-*.png):
# TestScreenshots seeds an admin over real Redis, ClickHouse and NATS,
# opens its pages in headless Chromium and saves them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_go
need_packages redis-server redis-server clickhouse-server clickhouse-server chromium chromium
DEFENDER_SCREENSHOTS="$PWD/docs/img" go test -count=1 -run '^TestScreenshots$' ./cmd/admin/
ls -l docs/img/admin-*.png
