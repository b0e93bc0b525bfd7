#!/usr/bin/env bash
# Brings the whole defender pipeline up on this machine and keeps it in the
# foreground until Ctrl-C (or SIGTERM), then stops everything cleanly:
#
#   Redis, ClickHouse       OS packages, installed when missing, data under $DEFENDER_DATA
#   cmd/gate                the gate service, with an embedded NATS JetStream server
#   cmd/recorder            events -> ClickHouse
#   cmd/admin               web UI + JSON API (basic auth: admin / $DEFENDER_ADMIN_PASSWORD)
#   examples/loginapp       a login site protected by the gate (alice/wonderland, bob/builder)
#
# Ports and the data directory can be changed through the environment below.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DATA="${DEFENDER_DATA:-$PWD/data}"
REDIS_PORT="${REDIS_PORT:-16379}"
CH_PORT="${CLICKHOUSE_PORT:-19000}"
CH_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-18123}"
NATS_PORT="${NATS_PORT:-14222}"
GATE_PORT="${GATE_PORT:-8080}"
ADMIN_PORT="${ADMIN_PORT:-8081}"
RECORDER_PORT="${RECORDER_PORT:-9102}"
SITE_PORT="${SITE_PORT:-8000}"

need_go
need_packages redis-server redis-server clickhouse-server clickhouse-server curl curl

mkdir -p "$DATA"/{bin,redis,clickhouse/log,nats,logs}
DATA="$(cd "$DATA" && pwd)"
rm -f "$DATA/ready"
if [ -z "${DEFENDER_ADMIN_PASSWORD:-}" ]; then
	if [ ! -s "$DATA/admin-password" ]; then
		head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DATA/admin-password"
	fi
	DEFENDER_ADMIN_PASSWORD="$(cat "$DATA/admin-password")"
fi
export DEFENDER_ADMIN_PASSWORD

echo "building ..."
go build -o "$DATA/bin/" ./cmd/gate ./cmd/recorder ./cmd/admin ./examples/loginapp

pids=()
names=()
stop_all() {
	local code="${1:-0}"
	trap - INT TERM EXIT
	echo
	echo "stopping ..."
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
		wait "${pids[$i]}" 2>/dev/null || true
		echo "  ${names[$i]} stopped"
	done
	exit "$code"
}
trap stop_all INT TERM EXIT

start() { # name, command... (logs under $DATA/logs)
	local name="$1"
	shift
	"$@" >"$DATA/logs/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

wait_for() { # name, command that succeeds when ready
	local name="$1"
	shift
	for _ in $(seq 1 150); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	echo "$name did not start; its log, $DATA/logs/$name.log:" >&2
	tail -n 30 "$DATA/logs/$name.log" >&2 || true
	stop_all 1
}

start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
	--save 60 1000 --appendonly no --protected-mode no
wait_for redis redis-cli -p "$REDIS_PORT" ping

cat >"$DATA/clickhouse/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$DATA/clickhouse/log/server.log</log><errorlog>$DATA/clickhouse/log/error.log</errorlog><size>50M</size><count>2</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$CH_PORT</tcp_port>
    <http_port>$CH_HTTP_PORT</http_port>
    <path>$DATA/clickhouse/data/</path>
    <tmp_path>$DATA/clickhouse/tmp/</tmp_path>
    <user_files_path>$DATA/clickhouse/user_files/</user_files_path>
    <format_schema_path>$DATA/clickhouse/format_schemas/</format_schema_path>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <users_config>$DATA/clickhouse/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
</yandex>
XML
cat >"$DATA/clickhouse/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
start clickhouse clickhouse-server --config-file="$DATA/clickhouse/config.xml"
wait_for clickhouse curl -sf "http://127.0.0.1:$CH_HTTP_PORT/ping"

export DEFENDER_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DEFENDER_NATS_URL_LOCAL="nats://127.0.0.1:$NATS_PORT"
export DEFENDER_CLICKHOUSE_URL="clickhouse://127.0.0.1:$CH_PORT/defender"

# The gate starts the embedded NATS server the others connect to.
start gate env DEFENDER_HTTP_ADDR="127.0.0.1:$GATE_PORT" DEFENDER_NATS_LISTEN="127.0.0.1:$NATS_PORT" \
	DEFENDER_NATS_STORE_DIR="$DATA/nats" "$DATA/bin/gate"
wait_for gate curl -sf "http://127.0.0.1:$GATE_PORT/healthz"

export DEFENDER_NATS_URL="$DEFENDER_NATS_URL_LOCAL"
start recorder env DEFENDER_HTTP_ADDR="127.0.0.1:$RECORDER_PORT" "$DATA/bin/recorder"
wait_for recorder curl -sf "http://127.0.0.1:$RECORDER_PORT/healthz"
start admin env DEFENDER_HTTP_ADDR="127.0.0.1:$ADMIN_PORT" "$DATA/bin/admin" serve
wait_for admin curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz"
start loginapp env DEFENDER_HTTP_ADDR="127.0.0.1:$SITE_PORT" "$DATA/bin/loginapp"
wait_for loginapp curl -sf -o /dev/null "http://127.0.0.1:$SITE_PORT/login"

cat <<TXT

defender is running (logs in $DATA/logs):
  login site    http://127.0.0.1:$SITE_PORT/login        alice / wonderland, bob / builder
  admin         http://127.0.0.1:$ADMIN_PORT/            admin / $DEFENDER_ADMIN_PASSWORD
  gate service  http://127.0.0.1:$GATE_PORT/v1/check     (POST JSON, see README)
  metrics       http://127.0.0.1:$GATE_PORT/metrics, :$RECORDER_PORT/metrics, :$ADMIN_PORT/metrics
  NATS          nats://127.0.0.1:$NATS_PORT     ClickHouse 127.0.0.1:$CH_PORT     Redis 127.0.0.1:$REDIS_PORT
Ctrl-C stops everything.
TXT
echo "ready" >"$DATA/ready"

# Stay up until a signal, or until a service dies.
while true; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "${names[$i]} exited; its log, $DATA/logs/${names[$i]}.log:" >&2
			tail -n 30 "$DATA/logs/${names[$i]}.log" >&2 || true
			unset 'pids[i]'
			rm -f "$DATA/ready"
			stop_all 1
		fi
	done
	sleep 1
done
