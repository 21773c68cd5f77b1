#!/usr/bin/env bash
# MQTT over WebSocket with the Tern tools and Mosquitto:
#  - tern-broker with a ws listener (any path), a wss listener (websockets_path /mqtt,
#    certificates made by tls_certs.sh) and a plain MQTT one, all on free loopback ports;
#  - tern-pub/tern-sub over ws:// and wss:// (QoS 0/1/2), across ws and mqtt listeners;
#    tern-bench pairs over ws://;
#  - refused with their reasons: a wrong path (404), no CA for wss, a plain HTTP request
#    (400), an upgrade offering only another subprotocol, oversized headers, garbage, a plain
#    MQTT client on the ws port; the broker keeps serving after each;
#  - tern-pub/tern-sub over ws:// against Mosquitto's websockets listener. Mosquitto 2.0.11
#    binds it on every interface whatever the address says, so it runs in a private network
#    namespace (unshare -n) where only loopback exists; skipped with a message without it.
# TERN_BROKER_THREADS=N: tern-broker runs with `threads N`.
#
# usage: websockets_test.sh tern-broker tern-pub tern-sub [tern-bench]
# exit:  0 all passed, 1 a check failed, 77 openssl or python3 missing (skipped)

set -u
broker_bin=${1:?usage: $0 tern-broker tern-pub tern-sub [tern-bench]}
pub_bin=${2:?}
sub_bin=${3:?}
bench_bin=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
for tool in openssl python3 curl; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

"$here/tls_certs.sh" "$work/certs" || { echo "FAIL: could not make the certificates"; exit 1; }
c=$work/certs
chmod -R go+rX "$work"

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# The broker logs a refusal after its answer has gone out: wait up to 5 s for the line.
log_has() {
    local i
    for i in $(seq 50); do
        grep -q -- "$1" "$work/broker.log" && return 0
        sleep 0.1
    done
    return 1
}

# expect NAME STATUS GOT FILE PATTERN: the status was STATUS and FILE holds PATTERN.
expect() {
    local name=$1 want=$2 got=$3 file=$4 pattern=$5
    if [[ $got == "$want" ]] && { [[ -z $pattern ]] || grep -q -- "$pattern" "$file"; }; then
        pass "$name"
    else
        fail "$name: exit $got (want $want), '$pattern' in:"; sed 's/^/    /' "$file"
    fi
}

wait_for() {  # FILE PATTERN: up to 5 s
    for _ in $(seq 100); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# round_trip NAME SUB_ARGS -- PUB_ARGS: tern-sub (-C 1) gets what tern-pub sends.
round_trip() {
    local name=$1 out=$work/rt$RANDOM.out sub
    shift
    local sub_args=() pub_args=()
    while [[ $1 != -- ]]; do sub_args+=("$1"); shift; done
    shift
    pub_args=("$@")
    timeout 15 "$sub_bin" "${sub_args[@]}" -C 1 -W 12 -v >"$out" 2>&1 &
    sub=$!
    sleep 0.6  # the subscription is in place (tern-sub prints nothing before a message)
    timeout 10 "$pub_bin" "${pub_args[@]}" 2>>"$out"
    local st=$?
    wait "$sub"
    local sst=$?
    [[ $st == 0 ]] || { fail "$name: tern-pub exit $st"; sed 's/^/    /' "$out"; return; }
    expect "$name" 0 "$sst" "$out" "${pub_args[-1]}"
}

# TERN_BROKER_THREADS=N (CTest's interop.websockets.threads2): `threads N`.
threads_line=
[[ -n ${TERN_BROKER_THREADS:-} ]] && threads_line="threads $TERN_BROKER_THREADS"
cat >"$work/tern.conf" <<CONF
allow_anonymous true
$threads_line
listener 0 127.0.0.1
protocol websockets
listener 0 127.0.0.2
protocol websockets
websockets_path /mqtt
certfile $c/server.crt
keyfile $c/server.key
listener 0 127.0.0.3
CONF
"$broker_bin" -c "$work/tern.conf" -v 2>"$work/broker.log" &
pids+=($!)
wait_for "$work/broker.log" "listening on" || { echo "FAIL: tern-broker did not start"; cat "$work/broker.log"; exit 1; }
read -r ws_port wss_port mqtt_port < <(head -n1 "$work/broker.log" |
    grep -oE '127\.0\.0\.[0-9]:[0-9]+' | cut -d: -f2 | tr '\n' ' ')
echo "tern-broker: $(head -n1 "$work/broker.log")"

"$broker_bin" -c "$work/tern.conf" --print-config >"$work/print.json"
python3 - "$work/print.json" <<'PY' && pass "--print-config shows protocol and websockets_path" || fail "--print-config"
import json, sys
l = json.load(open(sys.argv[1]))["listeners"]
assert [x["protocol"] for x in l] == ["websockets", "websockets", "mqtt"], l
assert l[0]["websockets_path"] == "" and l[1]["websockets_path"] == "/mqtt", l
assert l[1]["tls"] is not None
PY

ws=ws://127.0.0.1:$ws_port
wss=wss://127.0.0.2:$wss_port/mqtt
round_trip "ws -> ws, QoS 0, no path" -L "$ws" -t w/1 -- -L "$ws" -t w/1 -m ws-plain
round_trip "ws (any path) -> mqtt, QoS 1" -h 127.0.0.3 -p "$mqtt_port" -t w/2 -q 1 -- \
    -L "$ws/some/path?x=1" -t w/2 -q 1 -m ws-to-mqtt
round_trip "mqtt -> ws, QoS 2, MQTT 3.1.1" -L "$ws/mqtt" -t w/3 -q 2 -V 311 -- \
    -h 127.0.0.3 -p "$mqtt_port" -t w/3 -q 2 -m mqtt-to-ws
round_trip "wss -> wss with --cafile, QoS 1" -L "$wss" --cafile "$c/ca.crt" -t w/4 -q 1 -- \
    -L "$wss" --cafile "$c/ca.crt" -t w/4 -q 1 -m over-wss
round_trip "wss -> ws, MQTT 3.1.1" -L "$ws" -t w/5 -V 311 -- \
    -L "$wss" --cafile "$c/ca.crt" -t w/5 -V 311 -m wss-to-ws

timeout 10 "$pub_bin" -L "wss://127.0.0.2:$wss_port/other" --cafile "$c/ca.crt" -t w/x -m x \
    2>"$work/e1.out"
expect "wss: another path than websockets_path is refused (404)" 1 $? "$work/e1.out" \
    "declined the WebSocket upgrade of /other: HTTP 404"
log_has "secure WebSocket connection from .* refused: WebSocket request for another path (GET /other" &&
    pass "broker log: wrong path" || fail "broker log: no wrong-path line"
timeout 10 "$pub_bin" -L "$wss" -t w/x -m x 2>"$work/e2.out"
expect "wss without the CA is refused (system trust store)" 1 $? "$work/e2.out" \
    "TLS handshake failed: certificate verify failed"
timeout 10 "$pub_bin" -L "ws://127.0.0.2:$wss_port/mqtt" -t w/x -m x 2>"$work/e3.out"
expect "ws:// to a wss port fails" 1 $? "$work/e3.out" ""
log_has "refused: not a TLS handshake (first byte 0x47)" &&
    pass "broker log: plain WebSocket client on the wss port" || fail "broker log: no 'not a TLS handshake'"

# ---- hostile peers on the ws listener; the broker keeps serving after each
curl -s -m 5 -o "$work/h1.body" -w '%{http_code}' "http://127.0.0.1:$ws_port/index.html" >"$work/h1.code"
expect "plain HTTP GET answered 400" 0 $? "$work/h1.code" "^400$"
log_has "refused: not a WebSocket upgrade request (GET /index.html)" &&
    pass "broker log: not an upgrade request" || fail "broker log: no 'not a WebSocket upgrade request'"
curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Connection: Upgrade" -H "Upgrade: websocket" \
    -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
    -H "Sec-WebSocket-Protocol: chat, superchat" "http://127.0.0.1:$ws_port/" >"$work/h2.code"
expect "upgrade offering only other subprotocols answered 400" 0 $? "$work/h2.code" "^400$"
log_has "offers the WebSocket subprotocols 'chat, superchat' but not mqtt" &&
    pass "broker log: subprotocol refused" || fail "broker log: no subprotocol line"
python3 - "$ws_port" >"$work/h3.out" 2>&1 <<'PY'
import socket, sys, time
port = int(sys.argv[1])

def exchange(data, wait=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        s.sendall(data)
    except OSError:
        pass
    got = b""
    end = time.time() + wait
    try:
        while time.time() < end:
            chunk = s.recv(4096)
            if not chunk:
                return got, True
            got += chunk
    except (socket.timeout, ConnectionResetError):
        return got, not isinstance(sys.exc_info()[1], socket.timeout)
    return got, False

# 20 KiB of headers: over the 8 KiB limit
big = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 200) for i in range(100))
got, closed = exchange(big)
print("big headers:", got[:12], "closed" if closed else "open")
assert closed and got.startswith(b"HTTP/1.1 400"), got[:100]
# binary garbage
got, closed = exchange(bytes(range(256)) * 4)
print("garbage:", got[:12], "closed" if closed else "open")
assert closed and got == b"", got[:100]
# a plain MQTT CONNECT (3.1.1) on the ws port: closed without an HTTP answer
got, closed = exchange(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
print("plain MQTT:", got[:12], "closed" if closed else "open")
assert closed and got == b"", got[:100]
PY
expect "oversized headers (400), garbage and a plain MQTT client are closed" 0 $? "$work/h3.out" ""
log_has "a plain MQTT client on a WebSocket port" &&
    pass "broker log: plain MQTT client on the ws port" || fail "broker log: no plain-MQTT line"
round_trip "the broker still serves ws after the hostile peers" -L "$ws" -t w/6 -- \
    -L "$ws" -t w/6 -m still-serving

if [[ -n $bench_bin ]]; then
    timeout 60 "$bench_bin" pairs -L "$ws/mqtt" --clients 3 --count 300 -q 1 >"$work/b1.out" 2>&1
    expect "tern-bench pairs over ws://, nothing lost" 0 $? "$work/b1.out" "received 900 .*lost 0"
fi

# ---- Mosquitto's websockets listener, in a private network namespace
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [[ ! -x $mosquitto_bin ]]; then
    echo "NOTE: mosquitto not installed: the Mosquitto part is skipped"
elif ! timeout 5 unshare -n true 2>/dev/null; then
    echo "NOTE: unshare -n is not permitted here: the Mosquitto part is skipped"
else
    cat >"$work/mosq.sh" <<'INNER'
set -u
ip link set lo up || exit 3
work=$1 pub=$2 sub=$3 mosq=$4
# 2.0.11 exits when a websockets listener is its only one: a plain listener beside it.
cat >"$work/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
listener 8080 127.0.0.1
protocol websockets
allow_anonymous true
CONF
"$mosq" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
m=$!
trap 'kill $m 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q "running" "$work/mosquitto.log" && break; sleep 0.1; done
timeout 15 "$sub" -L ws://127.0.0.1:8080/mqtt -t m/1 -q 1 -C 2 -W 12 >"$work/mq.out" 2>&1 &
s=$!
sleep 0.6
timeout 10 "$pub" -L ws://127.0.0.1:8080/ -t m/1 -q 1 -m from-tern-pub || exit 4
timeout 10 "$pub" -L mqtt://127.0.0.1:1883 -t m/1 -q 2 -V 311 -m from-plain || exit 5
wait $s
INNER
    timeout 40 unshare -n bash "$work/mosq.sh" "$work" "$pub_bin" "$sub_bin" "$mosquitto_bin"
    st=$?
    if [[ $st == 0 ]] && grep -q "^from-tern-pub$" "$work/mq.out" && grep -q "^from-plain$" "$work/mq.out"; then
        pass "tern-pub/tern-sub over ws:// against Mosquitto 2.0 (protocol websockets)"
    else
        fail "tern-pub/tern-sub against Mosquitto: exit $st"
        sed 's/^/    /' "$work/mq.out" "$work/mosquitto.log" 2>/dev/null | tail -30
    fi
fi

if ((failures > 0)); then
    echo "--- broker log"; tail -40 "$work/broker.log"
    echo "$failures check(s) failed"
    exit 1
fi
echo "all passed"
