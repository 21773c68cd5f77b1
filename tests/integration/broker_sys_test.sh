#!/usr/bin/env bash
# tern-broker's $SYS topics seen by mosquitto_sub: with `sys_interval 1` the
# $SYS/broker/... topics arrive retained (version, uptime, clients, messages, load), the
# uptime and the connected count move on, `#` does not match them; with `sys_interval 0`
# nothing is published. Every wait is bounded.
#
# usage: broker_sys_test.sh path/to/tern-broker
# exit:  0 all passed, 1 a check failed, 77 mosquitto clients missing (skipped)

set -u
broker_bin=${1:?usage: $0 path/to/tern-broker}
for tool in mosquitto_sub mosquitto_pub; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

work=$(mktemp -d)
broker_pid=
failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

wait_for() {  # wait_for FILE REGEX [TENTHS]
    for _ in $(seq "${3:-100}"); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

stop_broker() {
    [[ -n $broker_pid ]] || return 0
    kill -TERM "$broker_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
    broker_pid=
}
cleanup() {
    stop_broker
    rm -rf "$work"
}
trap cleanup EXIT

start_broker() {  # start_broker CONF LOG: sets port
    "$broker_bin" -c "$1" 2>"$2" &
    broker_pid=$!
    port=
    if ! wait_for "$2" 'listening on' 100; then
        fail "broker did not start"; sed 's/^/    /' "$2"; stop_broker; return 1
    fi
    port=$(head -n1 "$2" | sed -nE 's/.*127\.0\.0\.1:([0-9]+).*/\1/p')
}

# ---- sys_interval 1
cat >"$work/sys.conf" <<'EOF'
allow_anonymous true
listener 0 127.0.0.1
sys_interval 1
EOF
if start_broker "$work/sys.conf" "$work/sys.log"; then
    if grep -q "sys_interval" "$work/sys.log"; then
        fail "a warning about sys_interval"; sed 's/^/    /' "$work/sys.log"
    else
        pass "sys_interval 1: no warning"
    fi
    # 31 topics at once, then at least the uptime, the byte counters and the subscriber itself.
    timeout 20 mosquitto_sub -p "$port" -t '$SYS/broker/#' -v -C 41 -W 10 -i sys-watch \
        >"$work/sys.out" 2>&1
    status=$?
    [[ $status -eq 0 ]] && pass "41 \$SYS messages within 10 s" ||
        { fail "mosquitto_sub exit $status"; sed 's/^/    /' "$work/sys.out"; }
    check() {  # check REGEX WHAT
        grep -qE -- "$1" "$work/sys.out" && pass "$2" ||
            { fail "$2: no line matching $1"; sed 's/^/    /' "$work/sys.out"; }
    }
    check '^\$SYS/broker/version tern-broker [0-9]+\.[0-9]+\.[0-9]+$' "version"
    check '^\$SYS/broker/uptime [0-9]+ seconds$' "uptime"
    check '^\$SYS/broker/clients/connected 1$' "clients/connected counts the subscriber"
    check '^\$SYS/broker/clients/total [0-9]+$' "clients/total"
    check '^\$SYS/broker/clients/maximum [0-9]+$' "clients/maximum"
    check '^\$SYS/broker/clients/disconnected 0$' "clients/disconnected"
    check '^\$SYS/broker/messages/received [0-9]+$' "messages/received"
    check '^\$SYS/broker/messages/sent [0-9]+$' "messages/sent"
    check '^\$SYS/broker/publish/messages/dropped [0-9]+$' "publish/messages/dropped"
    check '^\$SYS/broker/bytes/received [1-9][0-9]*$' "bytes/received counts the clients' packets"
    check '^\$SYS/broker/bytes/sent [1-9][0-9]*$' "bytes/sent counts what went to clients"
    check '^\$SYS/broker/load/bytes/received/1min [0-9]+\.[0-9]{2}$' "load/bytes/received/1min"
    check '^\$SYS/broker/subscriptions/count [0-9]+$' "subscriptions/count"
    check '^\$SYS/broker/limits/memory/bytes [1-9][0-9]*$' "limits/memory/bytes counts the retained \$SYS messages"
    check '^\$SYS/broker/limits/memory/refused 0$' "limits/memory/refused"
    check '^\$SYS/broker/limits/rate/paused 0$' "limits/rate/paused"
    check '^\$SYS/broker/retained messages/count [0-9]+$' "retained messages/count"
    check '^\$SYS/broker/load/messages/received/1min [0-9]+\.[0-9]{2}$' "load/messages/received/1min"
    check '^\$SYS/broker/load/messages/sent/15min [0-9]+\.[0-9]{2}$' "load/messages/sent/15min"
    uptimes=$(grep -cE '^\$SYS/broker/uptime ' "$work/sys.out")
    [[ $uptimes -ge 2 ]] && pass "uptime published again after sys_interval" ||
        fail "uptime seen $uptimes time(s)"
    # Retained: a new subscriber gets the version at once with --retained-only.
    out=$(timeout 10 mosquitto_sub -p "$port" -t '$SYS/broker/version' --retained-only -C 1 -W 5)
    [[ $out == tern-broker* ]] && pass "retained: $out" || fail "not retained: '$out'"
    # A persistent session that went away is counted as disconnected.
    timeout 10 mosquitto_sub -p "$port" -t 'x' -c -i sys-persistent -q 1 -W 1 >/dev/null 2>&1
    timeout 10 mosquitto_sub -p "$port" -t '$SYS/broker/clients/disconnected' -C 2 -W 3 \
        >"$work/disc.out" 2>&1
    grep -qx 1 "$work/disc.out" && pass "clients/disconnected 1 after a persistent client left" ||
        { fail "clients/disconnected"; sed 's/^/    /' "$work/disc.out"; }
    # `#` does not match $SYS (only the client's own message comes back).
    timeout 10 mosquitto_sub -p "$port" -t '#' -v -W 3 >"$work/hash.out" 2>&1 &
    hash_pid=$!
    sleep 1
    timeout 10 mosquitto_pub -p "$port" -t 'plain' -m 'p'
    wait "$hash_pid"
    if grep -q '^\$SYS' "$work/hash.out"; then
        fail "# matched \$SYS"; sed 's/^/    /' "$work/hash.out"
    elif grep -qx 'plain p' "$work/hash.out"; then
        pass "# does not match \$SYS"
    else
        fail "# subscriber got nothing"; sed 's/^/    /' "$work/hash.out"
    fi
    stop_broker
fi

# ---- sys_interval 0: nothing under $SYS
cat >"$work/off.conf" <<'EOF'
allow_anonymous true
listener 0 127.0.0.1
sys_interval 0
EOF
if start_broker "$work/off.conf" "$work/off.log"; then
    timeout 10 mosquitto_sub -p "$port" -t '$SYS/#' -v -W 2 >"$work/off.out" 2>&1
    if [[ -s $work/off.out ]] && grep -q '^\$SYS' "$work/off.out"; then
        fail "sys_interval 0 published"; sed 's/^/    /' "$work/off.out"
    else
        pass "sys_interval 0: no \$SYS topics"
    fi
    stop_broker
fi

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
