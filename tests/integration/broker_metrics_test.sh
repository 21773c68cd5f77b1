#!/usr/bin/env bash
# tern-broker's metrics_listener scraped with curl: /metrics in the Prometheus text format
# (every sample under a HELP and a TYPE line of its family, counters ending in _total, values
# that parse), /healthz, 404 and 405; the right values move when tern-pub and tern-sub send
# traffic; hostile HTTP clients (a huge head, garbage, a silent one, more connections than
# the bound) get an error or are closed, and the broker goes on serving MQTT and metrics.
# Every wait is bounded.
#
# usage: broker_metrics_test.sh tern-broker tern-pub tern-sub
# exit:  0 all passed, 1 a check failed, 77 curl missing (skipped)

set -u
broker_bin=${1:?usage: $0 tern-broker tern-pub tern-sub}
pub_bin=${2:?usage: $0 tern-broker tern-pub tern-sub}
sub_bin=${3:?usage: $0 tern-broker tern-pub tern-sub}
command -v curl > /dev/null || { echo "SKIP: curl not installed"; exit 77; }

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

scrape() { curl -sS --max-time 10 "http://127.0.0.1:$mport/metrics"; }
# value FILE SAMPLE: the value of one sample line ("name" or 'name{label="x"}').
value() { awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "missing" }' "$1"; }

# The exposition format: every sample's family has HELP and TYPE before it, the TYPE is
# counter or gauge, counters end in _total, the value is a number.
check_format() {
    awk '
        /^# HELP / { help[$3] = 1; next }
        /^# TYPE / {
            if (!($3 in help)) { print "TYPE before HELP: " $3; bad = 1 }
            type[$3] = $4
            if ($4 != "counter" && $4 != "gauge") { print "unknown type: " $0; bad = 1 }
            if ($4 == "counter" && $3 !~ /_total$/) { print "counter without _total: " $3; bad = 1 }
            next
        }
        /^#/ { print "unknown comment: " $0; bad = 1; next }
        /^$/ { print "empty line"; bad = 1; next }
        {
            name = $1; sub(/\{.*/, "", name)
            if (!(name in type)) { print "sample without HELP/TYPE: " $0; bad = 1 }
            if (NF != 2 || $2 !~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) { print "bad sample: " $0; bad = 1 }
            if ($1 ~ /\{/ && $1 !~ /^[a-z_]+\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\}$/) { print "bad labels: " $0; bad = 1 }
            samples++
        }
        END { if (samples < 30) { print "only " samples " samples"; bad = 1 } exit bad }
    ' "$1"
}

cat > "$work/m.conf" <<'EOF2'
allow_anonymous true
listener 0 127.0.0.1
metrics_listener 0
sys_interval 0
EOF2
"$broker_bin" -c "$work/m.conf" 2> "$work/broker.log" &
broker_pid=$!
if ! wait_for "$work/broker.log" 'metrics on http://' 100; then
    fail "broker did not start with a metrics listener"; sed 's/^/    /' "$work/broker.log"; exit 1
fi
port=$(head -n1 "$work/broker.log" | sed -nE 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/p')
mport=$(sed -nE 's|.*metrics on http://127\.0\.0\.1:([0-9]+)/metrics.*|\1|p' "$work/broker.log")
[[ -n $port && -n $mport && $port != "$mport" ]] && pass "MQTT port $port, metrics port $mport" ||
    fail "ports not found in the log"

# --print-config shows it.
if "$broker_bin" -c "$work/m.conf" --print-config | grep -q '"metrics_listener":{"port":0,"bind":"127.0.0.1"'; then
    pass "--print-config shows metrics_listener"
else
    fail "--print-config does not show metrics_listener"
fi

# ---- format, headers, other paths
curl -sS --max-time 10 -D "$work/h0" -o "$work/m0" "http://127.0.0.1:$mport/metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$work/h0" && pass "Content-Type 0.0.4" ||
    fail "Content-Type: $(grep -i content-type "$work/h0")"
if out=$(check_format "$work/m0"); then pass "exposition format (HELP/TYPE, _total, values)"; else
    fail "format:"; sed 's/^/    /' <<< "$out"; fi
for m in tern_connections tern_connections_accepted_total tern_connections_refused_total \
         'tern_messages_received_total{qos="1"}' 'tern_messages_sent_total{qos="2"}' \
         'tern_payload_bytes_received_total{qos="0"}' 'tern_messages_dropped_total{reason="queue_full"}' \
         tern_queued_messages tern_inflight_messages tern_subscriptions tern_retained_messages \
         tern_bytes_received_total tern_clients_connected; do
    [[ $(value "$work/m0" "$m") != missing ]] || fail "no sample $m"
done
[[ $(value "$work/m0" tern_store_file_bytes) == missing ]] && pass "no store gauge without persistence" ||
    fail "tern_store_file_bytes without persistence"

code() { curl -s --max-time 10 -o "$work/body" -w '%{http_code}' "$@"; }
[[ $(code "http://127.0.0.1:$mport/healthz") == 200 && $(cat "$work/body") == ok ]] &&
    pass "/healthz 200 ok" || fail "/healthz: $(cat "$work/body")"
[[ $(code "http://127.0.0.1:$mport/nothing") == 404 ]] && pass "404 for another path" || fail "no 404"
[[ $(code -X POST "http://127.0.0.1:$mport/metrics") == 405 ]] && pass "405 for POST" || fail "no 405"
[[ $(code "http://127.0.0.1:$mport/metrics?x=1") == 200 ]] && pass "query ignored" || fail "query"

# ---- traffic moves the right values
"$sub_bin" -p "$port" -t 'm/#' -q 2 -C 6 -W 20 > "$work/sub.out" 2> "$work/sub.err" &
sub_pid=$!
for _ in $(seq 50); do
    scrape > "$work/m1" 2>/dev/null && [[ $(value "$work/m1" tern_subscriptions) == 1 ]] && break
    sleep 0.1
done
[[ $(value "$work/m1" tern_subscriptions) == 1 ]] && pass "one subscription" ||
    fail "subscriptions: $(value "$work/m1" tern_subscriptions)"
[[ $(value "$work/m1" tern_clients_connected) == 1 ]] && pass "one client connected" ||
    fail "clients_connected: $(value "$work/m1" tern_clients_connected)"
"$pub_bin" -p "$port" -t m/a -q 0 -m 12345 --repeat 3
"$pub_bin" -p "$port" -t m/b -q 1 -m 1234567890
"$pub_bin" -p "$port" -t m/c -q 2 -m abc -r
"$pub_bin" -p "$port" -t m/c -q 2 -m abcd
wait "$sub_pid"; sub_rc=$?
[[ $sub_rc == 0 ]] && pass "subscriber got 6 messages" || fail "tern-sub exit $sub_rc: $(cat "$work/sub.err")"
for _ in $(seq 50); do
    scrape > "$work/m2" && [[ $(value "$work/m2" 'tern_messages_sent_total{qos="2"}') == 2 ]] && break
    sleep 0.1
done
check() {  # check SAMPLE EXPECTED
    local v; v=$(value "$work/m2" "$1")
    [[ $v == "$2" ]] && pass "$1 = $2" || fail "$1 = $v, expected $2"
}
check 'tern_messages_received_total{qos="0"}' 3
check 'tern_messages_received_total{qos="1"}' 1
check 'tern_messages_received_total{qos="2"}' 2
check 'tern_messages_sent_total{qos="0"}' 3
check 'tern_messages_sent_total{qos="1"}' 1
check 'tern_messages_sent_total{qos="2"}' 2
check 'tern_payload_bytes_received_total{qos="0"}' 15
check 'tern_payload_bytes_received_total{qos="1"}' 10
check 'tern_payload_bytes_received_total{qos="2"}' 7
check 'tern_payload_bytes_sent_total{qos="2"}' 7
check tern_retained_messages 1
check tern_subscriptions 0
check tern_clients_connected 0
check tern_connections_accepted_total 5
check tern_connects_accepted_total 5
b0=$(value "$work/m1" tern_bytes_received_total)
b2=$(value "$work/m2" tern_bytes_received_total)
((b2 > b0)) && pass "bytes received moved ($b0 -> $b2)" || fail "bytes received $b0 -> $b2"
u1=$(value "$work/m0" tern_uptime_seconds); u2=$(value "$work/m2" tern_uptime_seconds)
awk -v a="$u1" -v b="$u2" 'BEGIN { exit !(b > a) }' && pass "uptime moved" || fail "uptime $u1 -> $u2"

# A queue: a persistent QoS 1 session goes offline, messages wait for it.
"$sub_bin" -p "$port" -i keeper -c -x 300 -q 1 -t q/# -E 2> /dev/null
"$pub_bin" -p "$port" -t q/x -q 1 -m one
"$pub_bin" -p "$port" -t q/x -q 1 -m two
scrape > "$work/m3"
[[ $(value "$work/m3" tern_queued_messages) == 2 ]] && pass "2 messages queued for an offline session" ||
    fail "queued: $(value "$work/m3" tern_queued_messages)"
[[ $(value "$work/m3" tern_sessions_offline) == 1 ]] && pass "one offline session" ||
    fail "offline sessions: $(value "$work/m3" tern_sessions_offline)"
# max_connections on the listener is not set: refused stays 0; a QoS 0 for the offline
# session is dropped with its reason.
"$pub_bin" -p "$port" -t q/x -q 0 -m zero
scrape > "$work/m4"
[[ $(value "$work/m4" 'tern_messages_dropped_total{reason="qos0_offline"}') == 1 ]] &&
    pass "QoS 0 for an offline session counted as dropped (qos0_offline)" ||
    fail "dropped qos0_offline: $(value "$work/m4" 'tern_messages_dropped_total{reason="qos0_offline"}')"

# ---- hostile clients
# A head over 8 KiB: 431 (or the connection closed), never a hang.
big=$(head -c 20000 /dev/zero | tr '\0' a)
status=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "X-Big: $big" "http://127.0.0.1:$mport/metrics")
[[ $status == 431 || $status == 000 ]] && pass "huge head refused ($status)" || fail "huge head: $status"
# Garbage: 400.
reply=$(printf 'GARBAGE\x01\x02 nonsense\r\n\r\n' | timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$mport; cat >&3; cat <&3")
[[ $reply == "HTTP/1.1 400"* ]] && pass "garbage answered 400" || fail "garbage: ${reply:0:40}"
# Binary noise without a line end, then silence: closed by the deadline (5 s), not held.
start=$SECONDS
timeout 15 bash -c "exec 3<>/dev/tcp/127.0.0.1/$mport; head -c 100 /dev/urandom | tr -d '\r\n' >&3; cat <&3 >/dev/null"
rc=$?
((rc != 124 && SECONDS - start <= 9)) && pass "a silent client is closed by the deadline ($((SECONDS - start)) s)" ||
    fail "silent client: rc $rc after $((SECONDS - start)) s"
# More idle connections than the bound (16) at once: the extra ones are closed, and once the
# deadline has passed the endpoint answers again.
idle=()
for _ in $(seq 20); do
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$mport; sleep 8" 2>/dev/null &
    idle+=($!)
done
sleep 0.5
# Past the bound a connection is closed at once: no answer, and no wait for the deadline.
status=$(curl -s --max-time 4 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/metrics")
[[ $status == 000 ]] && pass "connections past the bound of 16 closed" || fail "past the bound: $status"
# Meanwhile MQTT is served.
"$pub_bin" -p "$port" -t m/x -q 1 -m during && pass "MQTT served while HTTP clients idle" ||
    fail "MQTT publish failed while HTTP clients idle"
sleep 6
for p in "${idle[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
scrape > "$work/m5" && check_format "$work/m5" > /dev/null && pass "scrape works after the hostile clients" ||
    fail "no scrape after the hostile clients"
kill -0 "$broker_pid" 2>/dev/null && pass "broker still running" || fail "broker died"

# SIGHUP with another metrics_listener: named as needing a restart, the endpoint stays.
sed -i 's/^metrics_listener 0$/metrics_listener 1 127.0.0.1/' "$work/m.conf"
kill -HUP "$broker_pid"
if wait_for "$work/broker.log" 'needing a restart: metrics_listener' 50 && scrape > /dev/null; then
    pass "SIGHUP: metrics_listener needs a restart, the running endpoint serves on"
else
    fail "SIGHUP with a changed metrics_listener"; tail -n 3 "$work/broker.log" | sed 's/^/    /'
fi

# ---- persistence: the store gauge
stop_broker
mkdir -p "$work/store"
cat > "$work/p.conf" <<EOF2
allow_anonymous true
listener 0 127.0.0.1
metrics_listener 0 ::1
persistence true
persistence_location $work/store
EOF2
"$broker_bin" -c "$work/p.conf" 2> "$work/p.log" &
broker_pid=$!
if wait_for "$work/p.log" 'metrics on http://' 100; then
    mport6=$(sed -nE 's|.*metrics on http://\[::1\]:([0-9]+)/metrics.*|\1|p' "$work/p.log")
    port=$(head -n1 "$work/p.log" | sed -nE 's/.*127\.0\.0\.1:([0-9]+).*/\1/p')
    "$pub_bin" -p "$port" -t keep/me -q 1 -r -m retained-and-stored
    curl -sS --max-time 10 -g "http://[::1]:$mport6/metrics" > "$work/m6"
    s=$(value "$work/m6" tern_store_file_bytes)
    [[ $s =~ ^[0-9]+$ ]] && ((s > 0)) && pass "store file size $s bytes (IPv6 metrics listener)" ||
        fail "store gauge: $s"
elif grep -q "metrics_listener ::1" "$work/p.log"; then
    echo "SKIP: no IPv6 loopback for the persistence part"
else
    fail "broker with persistence did not start"; sed 's/^/    /' "$work/p.log"
fi
stop_broker

echo "$failures failure(s)"
[[ $failures == 0 ]]
