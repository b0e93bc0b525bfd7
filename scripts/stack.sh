#!/usr/bin/env bash
# Brings the whole defender pipeline up on this machine and keeps it in the
# foreground until Ctrl-C (or SIGTERM, SIGHUP), then stops everything in
# reverse order and exits 0 if every service stopped cleanly:
#
#   Redis, ClickHouse       OS packages, installed when missing, data under $DEFENDER_DATA
#   cmd/gate                the gate service, with an embedded NATS JetStream server
#   cmd/recorder            events -> ClickHouse
#   cmd/admin               web UI + JSON API (basic auth: admin / $DEFENDER_ADMIN_PASSWORD)
#   examples/loginapp       a login site protected by the gate (alice/wonderland, bob/builder)
#   mailpit                 a local mail catcher with a web UI (go install'ed once when missing)
#   cmd/notifier            mails a locked-out user (to mailpit) with a link that unlocks
#
# Settings (environment):
#   DEFENDER_DATA            data, logs and binaries (default ./data)
#   DEFENDER_ADMIN_PASSWORD  admin password (default: random, kept in $DEFENDER_DATA/admin-password)
#   STACK_SITE_PORT 8000, STACK_GATE_PORT 8080, STACK_ADMIN_PORT 8081,
#   STACK_RECORDER_PORT 9102, STACK_NATS_PORT 14222, STACK_REDIS_PORT 16379,
#   STACK_CLICKHOUSE_PORT 19000, STACK_CLICKHOUSE_HTTP_PORT 18123,
#   STACK_MAIL_PORT 8025 (mailpit's web UI), STACK_SMTP_PORT 1025,
#   STACK_NOTIFIER_PORT 9103, STACK_UNLOCK_PORT 8082 (the unlock page)
#   STACK_MAILPIT            a mailpit binary to use (default: mailpit on PATH, installed when missing)
#   STACK_DEMO=0             do not replay a small demo attack through the gate service at start
#   STACK_WAIT               seconds each service may take to start (default 60)
# Every DEFENDER_* decision setting (DEFENDER_LOGIN_FAILURE_LIMIT, ...) is
# passed on to the gate service and the login site.
#
# When every service answers, "ready" is written to $DEFENDER_DATA/ready.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DATA="${DEFENDER_DATA:-$PWD/data}"
SITE_PORT="${STACK_SITE_PORT:-8000}"
GATE_PORT="${STACK_GATE_PORT:-8080}"
ADMIN_PORT="${STACK_ADMIN_PORT:-8081}"
RECORDER_PORT="${STACK_RECORDER_PORT:-9102}"
NATS_PORT="${STACK_NATS_PORT:-14222}"
REDIS_PORT="${STACK_REDIS_PORT:-16379}"
CH_PORT="${STACK_CLICKHOUSE_PORT:-19000}"
CH_HTTP_PORT="${STACK_CLICKHOUSE_HTTP_PORT:-18123}"
MAIL_PORT="${STACK_MAIL_PORT:-8025}"
SMTP_PORT="${STACK_SMTP_PORT:-1025}"
NOTIFIER_PORT="${STACK_NOTIFIER_PORT:-9103}"
UNLOCK_PORT="${STACK_UNLOCK_PORT:-8082}"
WAIT="${STACK_WAIT:-60}"

need_go
need_packages redis-server redis-server redis-cli redis-tools \
	clickhouse-server clickhouse-server curl curl setsid util-linux

mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"

# Services of an earlier run that was killed (SIGKILL leaves no chance to
# stop them) would hold the ports: stop them first. Each carries
# STACK_OWNER=$DATA in its environment, but for Redis, whose process title
# overwrites it: that one runs in $DATA/redis.
stale_services() {
	grep -lsxzF "STACK_OWNER=$DATA" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
	local p
	for p in /proc/[0-9]*; do
		if [ "$(cat "$p/comm" 2>/dev/null)" = redis-server ] &&
			[ "$(readlink "$p/cwd" 2>/dev/null)" = "$DATA/redis" ]; then
			echo "${p#/proc/}"
		fi
	done
}
mapfile -t stale < <(stale_services)
if [ ${#stale[@]} -gt 0 ]; then
	echo "stopping services left running by an earlier run on $DATA: ${stale[*]}" >&2
	kill -TERM "${stale[@]}" 2>/dev/null || true
	for _ in $(seq 1 300); do
		mapfile -t stale < <(stale_services)
		[ ${#stale[@]} -eq 0 ] && break
		sleep 0.1
	done
	[ ${#stale[@]} -gt 0 ] && { kill -KILL "${stale[@]}" 2>/dev/null || true; }
fi

# Say which port is taken before starting anything: a readiness check
# could otherwise be answered by whatever holds it.
for port in "$SITE_PORT" "$GATE_PORT" "$ADMIN_PORT" "$RECORDER_PORT" "$NATS_PORT" \
	"$REDIS_PORT" "$CH_PORT" "$CH_HTTP_PORT" "$MAIL_PORT" "$SMTP_PORT" "$NOTIFIER_PORT" "$UNLOCK_PORT"; do
	if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "port $port is taken; stop what listens there, or move the stack (STACK_*_PORT, see $0)" >&2
		exit 1
	fi
done

mkdir -p "$DATA"/{bin,redis,clickhouse/log,nats,logs}
rm -f "$DATA/ready"
if [ -z "${DEFENDER_ADMIN_PASSWORD:-}" ]; then
	if [ ! -s "$DATA/admin-password" ]; then
		(umask 077 && head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DATA/admin-password")
	fi
	DEFENDER_ADMIN_PASSWORD="$(cat "$DATA/admin-password")"
fi
export DEFENDER_ADMIN_PASSWORD
ADMIN_USER="${DEFENDER_ADMIN_USER:-admin}"
# The key that signs the mails' unlock links, kept so that links survive
# a restart.
if [ ! -s "$DATA/unlock-key" ]; then
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DATA/unlock-key")
fi

echo "building ..."
go build -o "$DATA/bin/" ./cmd/gate ./cmd/recorder ./cmd/admin ./cmd/notifier ./examples/loginapp
MAILPIT="${STACK_MAILPIT:-}"
if [ -z "$MAILPIT" ]; then
	need_mailpit
	MAILPIT="$(command -v mailpit)"
fi

pids=()
names=()
stopping=""
# stop_all stops the services in reverse order of start, each with
# SIGTERM and up to 30 s before SIGKILL, and exits: with $1 if given and
# non-zero, else 1 if a service did not stop cleanly, else 0.
stop_all() {
	local code="${1:-0}"
	[ -n "$stopping" ] && return
	stopping=1
	trap '' INT TERM HUP
	trap - EXIT
	rm -f "$DATA/ready"
	[ ${#pids[@]} -gt 0 ] && echo && echo "stopping ..."
	local i pid status deadline
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid="${pids[$i]}"
		[ -z "$pid" ] && continue
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.1
		done
		if kill -KILL "$pid" 2>/dev/null; then
			echo "  ${names[$i]} did not stop within 30 s: killed" >&2
		fi
		status=0
		wait "$pid" 2>/dev/null || status=$?
		if [ "$status" -eq 0 ]; then
			echo "  ${names[$i]} stopped"
		else
			echo "  ${names[$i]} stopped with status $status (log: $DATA/logs/${names[$i]}.log)" >&2
			[ "$code" -eq 0 ] && code=1
		fi
	done
	exit "$code"
}
trap 'stop_all 0' INT TERM HUP
trap 'stop_all $?' EXIT

# start runs a service in its own session, so that Ctrl-C reaches this
# script only and the services stop in order; logs under $DATA/logs.
start() { # name, command...
	local name="$1"
	shift
	setsid env STACK_OWNER="$DATA" "$@" >"$DATA/logs/$name.log" 2>&1 </dev/null &
	pids+=($!)
	names+=("$name")
}

# wait_for waits until a command succeeds, or stops everything when the
# service exits or takes longer than $WAIT seconds.
wait_for() { # name, command that succeeds when ready
	local name="$1" pid="${pids[-1]}"
	shift
	local deadline=$((SECONDS + WAIT))
	until "$@" >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name exited at start; its log, $DATA/logs/$name.log:" >&2
			tail -n 30 "$DATA/logs/$name.log" >&2 || true
			stop_all 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$name did not answer within $WAIT s; its log, $DATA/logs/$name.log:" >&2
			tail -n 30 "$DATA/logs/$name.log" >&2 || true
			stop_all 1
		fi
		sleep 0.2
	done
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
export DEFENDER_CLICKHOUSE_URL="clickhouse://127.0.0.1:$CH_PORT/defender"
unset DEFENDER_NATS_URL

# The gate starts the embedded NATS server the others connect to.
start gate env DEFENDER_HTTP_ADDR="127.0.0.1:$GATE_PORT" DEFENDER_NATS_LISTEN="127.0.0.1:$NATS_PORT" \
	DEFENDER_NATS_STORE_DIR="$DATA/nats" "$DATA/bin/gate"
wait_for gate curl -sf "http://127.0.0.1:$GATE_PORT/healthz"

export DEFENDER_NATS_URL="nats://127.0.0.1:$NATS_PORT"
start recorder env DEFENDER_HTTP_ADDR="127.0.0.1:$RECORDER_PORT" "$DATA/bin/recorder"
wait_for recorder curl -sf "http://127.0.0.1:$RECORDER_PORT/healthz"
start admin env DEFENDER_HTTP_ADDR="127.0.0.1:$ADMIN_PORT" "$DATA/bin/admin" serve
wait_for admin curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz"
start loginapp env DEFENDER_HTTP_ADDR="127.0.0.1:$SITE_PORT" "$DATA/bin/loginapp"
# Liveness, not the login: a block an earlier run left in Redis answers
# the login page with 429, which a locked-out newcomer restarts with.
wait_for loginapp curl -s -o /dev/null "http://127.0.0.1:$SITE_PORT/login"
start mailpit "$MAILPIT" --listen "127.0.0.1:$MAIL_PORT" --smtp "127.0.0.1:$SMTP_PORT" --database "$DATA/mailpit.db"
wait_for mailpit curl -sf "http://127.0.0.1:$MAIL_PORT/livez"
start notifier env DEFENDER_HTTP_ADDR="127.0.0.1:$NOTIFIER_PORT" \
	DEFENDER_SMTP_HOST=127.0.0.1 DEFENDER_SMTP_PORT="$SMTP_PORT" DEFENDER_SMTP_TLS=none \
	DEFENDER_MAIL_FROM="defender <defender@localhost>" DEFENDER_MAIL_SITE="the example login site" \
	DEFENDER_MAIL_LOOKUP_URL="http://127.0.0.1:$SITE_PORT/defender/email?username={username}" \
	DEFENDER_UNLOCK_ADDR="127.0.0.1:$UNLOCK_PORT" DEFENDER_UNLOCK_URL="http://127.0.0.1:$UNLOCK_PORT/unlock" \
	DEFENDER_UNLOCK_KEYS="$(cat "$DATA/unlock-key")" "$DATA/bin/notifier"
wait_for notifier curl -sf "http://127.0.0.1:$NOTIFIER_PORT/healthz"

# A small attack through the gate service, from documentation addresses,
# so the admin has history and a blocked IP and username to show. It never
# touches the site's users.
if [ "${STACK_DEMO:-1}" != 0 ]; then
	attempt() { # ip, username, success
		curl -s -o /dev/null -X POST "http://127.0.0.1:$GATE_PORT/v1/attempts" \
			-H 'Content-Type: application/json' \
			-d "{\"ip\":\"$1\",\"username\":\"$2\",\"success\":$3,\"path\":\"/demo/login\",\"user_agent\":\"stack.sh demo\"}" || true
	}
	attempt 198.51.100.20 carol true
	for _ in 1 2 3 4 5; do
		attempt 203.0.113.66 root false
	done
	attempt 198.51.100.21 dave false
	attempt 198.51.100.21 dave true
fi

cat <<TXT

defender is running (logs in $DATA/logs):
  login site    http://127.0.0.1:$SITE_PORT/login        alice / wonderland, bob / builder
  admin         http://127.0.0.1:$ADMIN_PORT/            $ADMIN_USER / $DEFENDER_ADMIN_PASSWORD
  admin API     curl -u $ADMIN_USER:$DEFENDER_ADMIN_PASSWORD http://127.0.0.1:$ADMIN_PORT/api/v1/blocked   (every call: README)
  admin CLI     DEFENDER_REDIS_URL=$DEFENDER_REDIS_URL DEFENDER_NATS_URL=$DEFENDER_NATS_URL DEFENDER_CLICKHOUSE_URL=$DEFENDER_CLICKHOUSE_URL $DATA/bin/admin blocked
  gate service  http://127.0.0.1:$GATE_PORT/v1/check     (POST JSON, see README)
  mail catcher  http://127.0.0.1:$MAIL_PORT/             the notifier's mails, with their unlock links
  metrics       http://127.0.0.1:$GATE_PORT/metrics, :$RECORDER_PORT/metrics, :$ADMIN_PORT/metrics, :$NOTIFIER_PORT/metrics
  NATS          nats://127.0.0.1:$NATS_PORT     ClickHouse 127.0.0.1:$CH_PORT     Redis 127.0.0.1:$REDIS_PORT
Fail to sign in 4 times on the login site to be locked out, then see it in the admin,
and alice's or bob's mail in the mail catcher: its link unlocks the account.
Ctrl-C stops everything.
TXT
echo "ready" >"$DATA/ready"

# Stay up until a signal (the traps above), or until a service dies.
while true; do
	wait -n || true
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "${names[$i]} exited; its log, $DATA/logs/${names[$i]}.log:" >&2
			tail -n 30 "$DATA/logs/${names[$i]}.log" >&2 || true
			pids[i]=""
			stop_all 1
		fi
	done
done
