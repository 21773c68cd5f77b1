#!/usr/bin/env bash
# Interop: Eclipse Mosquitto's own clients (mosquitto_sub / mosquitto_pub) against
# tern-broker on a free port, for QoS 0/1/2 and retained messages, in MQTT 3.1.1 and 5.0
# (and a 3.1 publisher). Every wait is bounded; the broker is stopped on exit.
#
# usage: mosquitto_clients_test.sh path/to/tern-broker
# exit:  0 all passed, 1 a check failed, 77 mosquitto clients not installed (skipped)

set -u
broker_bin=${1:?usage: $0 path/to/tern-broker}
for tool in mosquitto_sub mosquitto_pub; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

work=$(mktemp -d)
broker_pid=
cleanup() {
    # Children of this script only, by pid.
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
    if [[ -n $broker_pid ]]; then
        kill -TERM "$broker_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# TERN_BROKER_THREADS=N (CTest: 1, or 2 for interop.mosquitto_clients.threads2): `threads N`
# (with N > 1 also sys_interval 0).
broker_args=(-p 0)
if [[ -n ${TERN_BROKER_THREADS:-} ]]; then
    printf 'threads %s\n' "$TERN_BROKER_THREADS" >"$work/threads.conf"
    [[ $TERN_BROKER_THREADS == 1 ]] || echo 'sys_interval 0' >>"$work/threads.conf"
    broker_args+=(-c "$work/threads.conf")
fi
"$broker_bin" "${broker_args[@]}" 2>"$work/broker.log" &
broker_pid=$!
port=
for _ in $(seq 100); do
    port=$(head -n1 "$work/broker.log" 2>/dev/null | sed -nE 's/.* listening on 127\.0\.0\.1:([0-9]+).*/\1/p')
    [[ -n $port ]] && break
    sleep 0.05
done
[[ -n $port ]] || { echo "FAIL: broker did not report its port"; cat "$work/broker.log"; exit 1; }
echo "tern-broker on port $port: $(head -n1 "$work/broker.log")"

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# wait_for FILE PATTERN: up to 5 s for PATTERN to appear in FILE.
wait_for() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# check_delivery NAME SUB_VERSION PUB_VERSION SUB_QOS PUB_QOS HOST
check_delivery() {
    local name=$1 sv=$2 pv=$3 sq=$4 pq=$5 host=$6
    local topic="interop/$name" payload="hello-$name" out="$work/$name.out"
    local want=$((sq < pq ? sq : pq))
    stdbuf -oL mosquitto_sub -d -V "$sv" -h 127.0.0.1 -p "$port" -t "$topic" -q "$sq" -C 1 -W 10 \
        -F '%t|%p|%q|%r' >"$out" 2>&1 &
    local sub=$!
    if ! wait_for "$out" "received SUBACK"; then
        fail "$name: no SUBACK"; kill "$sub" 2>/dev/null; wait "$sub" 2>/dev/null; return
    fi
    local pub_args=(-V "$pv" -h "$host" -p "$port" -t "$topic" -m "$payload" -q "$pq")
    [[ $pv == mqttv31 ]] && pub_args+=(-i "tern-interop-31")
    if ! timeout 10 mosquitto_pub "${pub_args[@]}"; then
        fail "$name: mosquitto_pub failed"
    fi
    wait "$sub"
    if grep -qx "$topic|$payload|$want|0" "$out"; then
        pass "$name (sub $sv q$sq, pub $pv q$pq via $host -> q$want)"
    else
        fail "$name: expected '$topic|$payload|$want|0', got:"; sed 's/^/    /' "$out"
    fi
}

for v in mqttv311 mqttv5; do
    for q in 0 1 2; do
        check_delivery "${v}-q${q}" "$v" "$v" "$q" "$q" 127.0.0.1
    done
    check_delivery "${v}-downgrade" "$v" "$v" 1 2 ::1
done
check_delivery "mixed-311-to-5" mqttv5 mqttv311 2 2 127.0.0.1
check_delivery "mixed-5-to-311" mqttv311 mqttv5 2 1 127.0.0.1
check_delivery "mqttv31-publisher" mqttv311 mqttv31 1 1 127.0.0.1

# Retained: stored, replaced, delivered to a new subscriber with RETAIN set, cleared.
for v in mqttv311 mqttv5; do
    topic="interop/retained/$v"
    timeout 10 mosquitto_pub -V "$v" -p "$port" -h 127.0.0.1 -t "$topic" -m first -r -q 1
    timeout 10 mosquitto_pub -V "$v" -p "$port" -h 127.0.0.1 -t "$topic" -m second -r -q 2
    got=$(timeout 15 mosquitto_sub -V "$v" -p "$port" -h 127.0.0.1 -t "interop/retained/+" \
        -q 2 -C 1 -W 10 -F '%t|%p|%r' 2>&1)
    [[ $got == "$topic|second|1" ]] && pass "retained $v" || fail "retained $v: got '$got'"
    timeout 10 mosquitto_pub -V "$v" -p "$port" -h 127.0.0.1 -t "$topic" -n -r
    got=$(timeout 15 mosquitto_sub -V "$v" -p "$port" -h 127.0.0.1 -t "$topic" -C 1 -W 1 2>&1)
    [[ -z $got || $got == *"Timed out"* ]] && pass "retained cleared $v" \
        || fail "retained cleared $v: got '$got'"
done

# Wildcards and the $ rule: '#' does not see $-topics.
out="$work/dollar.out"
stdbuf -oL mosquitto_sub -d -V mqttv5 -p "$port" -h 127.0.0.1 -t '#' -C 1 -W 10 -F '%t|%p' >"$out" 2>&1 &
sub=$!
if wait_for "$out" "received SUBACK"; then
    timeout 10 mosquitto_pub -V mqttv5 -p "$port" -h 127.0.0.1 -t '$private/x' -m hidden
    timeout 10 mosquitto_pub -V mqttv5 -p "$port" -h 127.0.0.1 -t 'plain/x' -m seen
    wait "$sub"
    if grep -qx 'plain/x|seen' "$out" && ! grep -q hidden "$out"; then
        pass "wildcard # skips \$ topics"
    else
        fail "wildcard # and \$ topics:"; sed 's/^/    /' "$out"
    fi
else
    fail "no SUBACK for #"; kill "$sub" 2>/dev/null
fi

# SIGTERM: a clean exit with status 0 (a sanitizer build also reports leaks here).
if kill -TERM "$broker_pid" 2>/dev/null; then
    status=
    for _ in $(seq 100); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then wait "$broker_pid"; status=$?; break; fi
        sleep 0.05
    done
    broker_pid=
    [[ $status == 0 ]] && pass "broker exited cleanly on SIGTERM" \
        || { fail "broker exit status '$status' after SIGTERM"; cat "$work/broker.log"; }
else
    broker_pid=
    fail "broker died during the tests"; cat "$work/broker.log"
fi
echo "$failures failure(s)"
[[ $failures -eq 0 ]]
