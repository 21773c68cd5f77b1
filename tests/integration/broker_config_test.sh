#!/usr/bin/env bash
# tern-broker with configuration files: two listeners (127.0.0.1 and ::1, free ports) both
# serve mosquitto_pub/mosquitto_sub; bad lines stop start-up with FILE:LINE and status 2;
# --print-config prints valid JSON; --log-format json lines parse and carry connect and
# disconnect events; max_connections per listener; include_dir; -p with and without -c;
# SIGHUP reloads what it can and says what needs a restart; SIGTERM right after a client left
# ends the broker at once. Every wait is bounded.
#
# usage: broker_config_test.sh path/to/tern-broker
# exit:  0 all passed, 1 a check failed, 77 mosquitto clients or python3 missing (skipped)

set -u
broker_bin=${1:?usage: $0 path/to/tern-broker}
for tool in mosquitto_sub mosquitto_pub python3; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

work=$(mktemp -d)
broker_pid=
cleanup() {
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
    stop_broker
    rm -rf "$work"
}
trap cleanup EXIT

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# wait_for FILE PATTERN [TENTHS]: up to TENTHS/10 s (default 10 s) for an extended regex.
wait_for() {
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

# start_broker LOG ARGS...: starts tern-broker, waits for its first line, sets port4/port6
# from "listening on 127.0.0.1:P, [::1]:Q".
start_broker() {
    local log=$1
    shift
    "$broker_bin" "$@" 2>"$log" &
    broker_pid=$!
    port4= port6=
    if ! wait_for "$log" 'listening on' 100; then
        fail "broker did not start: $*"; sed 's/^/    /' "$log"; stop_broker; return 1
    fi
    port4=$(head -n1 "$log" | sed -nE 's/.*127\.0\.0\.1:([0-9]+).*/\1/p')
    port6=$(head -n1 "$log" | sed -nE 's/.*\[::1\]:([0-9]+).*/\1/p')
    return 0
}

# deliver NAME SUB_HOST SUB_PORT PUB_HOST PUB_PORT: a message crosses from one listener to
# the other.
deliver() {
    local name=$1 out="$work/$1.out"
    stdbuf -oL mosquitto_sub -d -h "$2" -p "$3" -t "cfg/$name" -C 1 -W 10 -i "sub-$name" >"$out" 2>&1 &
    local sub=$!
    if ! wait_for "$out" "received SUBACK"; then
        fail "$name: no SUBACK"; kill "$sub" 2>/dev/null; wait "$sub" 2>/dev/null; return 1
    fi
    timeout 10 mosquitto_pub -h "$4" -p "$5" -t "cfg/$name" -m "payload-$name" -i "pub-$name"
    wait "$sub"
    grep -qx "payload-$name" "$out"
}

json_check() {  # json_check FILE PYTHON_EXPRESSION_ON_d
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' "$1" "$2"
}

# ---- two listeners, each serving; JSON log lines with connect and disconnect events
cat >"$work/two.conf" <<'EOF'
# two loopback listeners on free ports
allow_anonymous true
listener 0 127.0.0.1
listener 0 ::1
EOF
if start_broker "$work/two.log" -c "$work/two.conf" -v --log-format json; then
    if [[ -n $port4 && -n $port6 && $port4 != "$port6" ]]; then
        pass "two listeners bound: 127.0.0.1:$port4 and [::1]:$port6"
    else
        fail "two listeners: bad first line"; head -n1 "$work/two.log"
    fi
    deliver v4-to-v6 ::1 "$port6" 127.0.0.1 "$port4" && pass "sub on ::1, pub on 127.0.0.1" ||
        fail "delivery ::1 <- 127.0.0.1"
    deliver v6-to-v4 127.0.0.1 "$port4" ::1 "$port6" && pass "sub on 127.0.0.1, pub on ::1" ||
        fail "delivery 127.0.0.1 <- ::1"
    wait_for "$work/two.log" '"event":"disconnect".*"client_id":"sub-v6-to-v4"' 50
    stop_broker
    if python3 - "$work/two.log" <<'EOF'; then pass "JSON log lines: every line parses, connect/disconnect events with client_id, peer, reason, subscribe events with client_id"; else fail "JSON log lines"; sed 's/^/    /' "$work/two.log"; fi
import json, re, sys
events = [json.loads(line) for line in open(sys.argv[1])]
assert events and events[0]["event"] == "start", events[:1]
for e in events:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["time"]), e
    assert e["level"] in ("error", "warning", "notice", "info", "debug"), e
    assert isinstance(e["msg"], str) and e["msg"], e
connects = [e for e in events if e["event"] == "connect"]
disconnects = [e for e in events if e["event"] == "disconnect"]
ids = {e["client_id"] for e in connects}
assert {"sub-v4-to-v6", "pub-v4-to-v6", "sub-v6-to-v4", "pub-v6-to-v4"} <= ids, ids
peers = {e["client_id"]: e["peer"] for e in connects}
assert peers["pub-v4-to-v6"].startswith("127.0.0.1:"), peers
assert peers["pub-v6-to-v4"].startswith("[::1]:"), peers
assert all(e.get("reason") for e in disconnects), disconnects
assert any(e["client_id"] == "pub-v4-to-v6" and e["reason"] == "client disconnected" for e in disconnects)
assert events[-1]["event"] in ("stats", "stop"), events[-1]
subs = [e for e in events if e["event"] == "subscribe"]
assert any(e["client_id"] == "sub-v4-to-v6" and "granted QoS" in e["msg"] for e in subs), subs
EOF
fi

# ---- errors in the file: FILE:LINE, status 2, nothing listened on
check_bad() {  # check_bad NAME EXPECTED_MESSAGE_REGEX < config text
    local conf="$work/$1.conf"
    cat >"$conf"
    timeout 10 "$broker_bin" -c "$conf" >"$work/$1.out" 2>"$work/$1.err"
    local rc=$?
    if [[ $rc -eq 2 ]] && grep -qE -- "$conf:$2" "$work/$1.err" && ! grep -q listening "$work/$1.err"; then
        pass "$1: exit 2, $(head -n1 "$work/$1.err")"
    else
        fail "$1: exit $rc, expected 2 and '$conf:$2'"; sed 's/^/    /' "$work/$1.err"
    fi
}
printf 'allow_anonymous true\nlistener 0 127.0.0.1\n\nno_such_option 1\n' |
    check_bad unknown "4: unknown option 'no_such_option'"
printf 'allow_anonymous true\nlistener 0 127.0.0.1\nlog_timestamp_format %%H\n' |
    check_bad unsupported "3: option 'log_timestamp_format' is not supported yet"
printf 'max_keepalive 70000\n' | check_bad range "1: max_keepalive: 70000 is out of range"
printf 'max_keepalive 10\nmax_keepalive 20\n' | check_bad duplicate "2: 'max_keepalive' is already set at .*:1"
printf 'listener 0 127.0.0.1\nallow_anonymous maybe\n' | check_bad anonymous "2: allow_anonymous: expected true or false"
printf 'persistent_client_expiration 10s\n' | check_bad duration "1: persistent_client_expiration: '10s' is not a duration"

# --print-config of a bad file fails the same way.
if ! timeout 10 "$broker_bin" -c "$work/unknown.conf" --print-config >"$work/pc-bad.out" 2>"$work/pc-bad.err" &&
    grep -q "unknown.conf:4:" "$work/pc-bad.err" && [[ ! -s $work/pc-bad.out ]]; then
    pass "--print-config with a bad file: FILE:LINE on stderr, nothing on stdout, non-zero"
else
    fail "--print-config with a bad file"; cat "$work/pc-bad.err"
fi

# ---- --print-config, include_dir
mkdir -p "$work/conf.d"
printf 'listener 0 ::1\nmax_connections 7\n' >"$work/conf.d/b.conf"
printf 'max_queued_messages 0\n' >"$work/conf.d/A.conf"
printf 'ignored, not .conf\n' >"$work/conf.d/notes.txt"
cat >"$work/main.conf" <<EOF
allow_anonymous true
listener 1884 127.0.0.1
max_packet_size 4096
persistent_client_expiration 2d
log_type information
include_dir $work/conf.d
EOF
if timeout 10 "$broker_bin" -c "$work/main.conf" --print-config >"$work/pc.json" 2>"$work/pc.err" &&
    json_check "$work/pc.json" '
        d["files"] == [sys.argv[1].rsplit("/",1)[0] + "/main.conf",
                       sys.argv[1].rsplit("/",1)[0] + "/conf.d/A.conf",
                       sys.argv[1].rsplit("/",1)[0] + "/conf.d/b.conf"]
        and [(l["port"], l["addresses"], l["max_connections"]) for l in d["listeners"]]
            == [(1884, ["127.0.0.1"], None), (0, ["::1"], 7)]
        and d["max_packet_size"] == 4096 and d["persistent_client_expiration"] == 172800
        and d["max_queued_messages"] == 0 and d["log_verbosity"] == 1 and not d["local_only"]' 2>/dev/null; then
    pass "--print-config: JSON with include_dir files in order, listeners, limits"
else
    # json_check reads the directory from argv[1], the JSON file itself
    fail "--print-config JSON"; cat "$work/pc.json" "$work/pc.err"
fi
if timeout 10 "$broker_bin" --print-config -p 0 >"$work/pc0.json" &&
    json_check "$work/pc0.json" 'd["local_only"] and d["files"] == [] and [(l["port"], l["addresses"]) for l in d["listeners"]] == [(0, ["127.0.0.1", "::1"])]'; then
    pass "--print-config without -c: local-only 127.0.0.1 and ::1 on the -p port"
else
    fail "--print-config without -c"; cat "$work/pc0.json"
fi

# ---- -p: local-only without -c; ignored when the file has listeners
if start_broker "$work/p0.log" -p 0; then
    [[ -n $port4 && $port4 == "$port6" ]] && pass "-p 0 without -c: 127.0.0.1 and ::1 on one free port" ||
        fail "-p 0 without -c: $(head -n1 "$work/p0.log")"
    kill -HUP "$broker_pid"
    if wait_for "$work/p0.log" "SIGHUP: no configuration file \(-c\), nothing to reload" 50 &&
        timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i after-hup; then
        pass "SIGHUP without -c: logged, still serving"
    else
        fail "SIGHUP without -c"; sed 's/^/    /' "$work/p0.log"
    fi
    stop_broker
fi
if start_broker "$work/pc.log" -c "$work/two.conf" -p 1; then
    grep -q -- "-p 1 is ignored" "$work/pc.log" && pass "-p with listeners in the file: ignored with a warning" ||
        fail "-p with -c: no warning"
    stop_broker
fi

# ---- max_connections per listener, then SIGHUP
cat >"$work/live.conf" <<'EOF'
allow_anonymous true
log_type error
listener 0 127.0.0.1
max_connections 1
listener 0 ::1
EOF
if start_broker "$work/live.log" -c "$work/live.conf"; then
    mosquitto_sub -h 127.0.0.1 -p "$port4" -t hold -i holder -W 30 >/dev/null 2>&1 &
    holder=$!
    sleep 0.5
    if ! timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i second 2>/dev/null &&
        timeout 10 mosquitto_pub -h ::1 -p "$port6" -t x -m y -i other-listener; then
        pass "max_connections 1 on 127.0.0.1 refuses a second client there, ::1 still serves"
    else
        fail "max_connections 1 per listener"
    fi
    kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
    grep -q "connected from" "$work/live.log" && fail "log_type error still logs connections"

    # Reload: more log detail, no connection bound, two limits applied, one that needs a
    # restart (announced to 5.0 clients in CONNACK).
    cat >"$work/live.conf" <<'EOF'
allow_anonymous true
log_type information
max_queued_messages 5
max_client_id_length 30
max_packet_size 100000
listener 0 127.0.0.1
max_connections -1
listener 0 ::1
EOF
    kill -HUP "$broker_pid"
    if wait_for "$work/live.log" "reloaded .*applied log_type, max_queued_messages, max_client_id_length, max_connections of .*live.conf:6; changed but needing a restart: max_packet_size" 50; then
        pass "SIGHUP: applied log_type, two limits and max_connections, max_packet_size needs a restart"
    else
        fail "SIGHUP reload line"; sed 's/^/    /' "$work/live.log"
    fi
    # The reloaded max_client_id_length (256 before) refuses a 35-byte client id.
    if ! timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 2>/dev/null &&
        timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i thirty-bytes-exactly-xxxxxxxxx; then
        pass "after SIGHUP: max_client_id_length 30 refuses 35 bytes, takes 30"
    else
        fail "after SIGHUP: max_client_id_length not applied"
    fi
    mosquitto_sub -h 127.0.0.1 -p "$port4" -t hold -i holder2 -W 30 >/dev/null 2>&1 &
    holder=$!
    sleep 0.5
    if timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i after-reload &&
        wait_for "$work/live.log" "client after-reload connected from 127.0.0.1:" 50; then
        pass "after SIGHUP: connections logged, max_connections lifted"
    else
        fail "after SIGHUP"; sed 's/^/    /' "$work/live.log"
    fi
    kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

    # A broken file on reload is reported and the running configuration stays.
    printf 'allow_anonymous true\nlistener 0 127.0.0.1\nbogus\n' >"$work/live.conf"
    kill -HUP "$broker_pid"
    if wait_for "$work/live.log" "reload failed, keeping the running configuration: .*live.conf:3: unknown option 'bogus'" 50 &&
        timeout 10 mosquitto_pub -h ::1 -p "$port6" -t x -m y -i still-serving; then
        pass "SIGHUP with a bad file: FILE:LINE logged, still serving"
    else
        fail "SIGHUP with a bad file"; sed 's/^/    /' "$work/live.log"
    fi
    kill -0 "$broker_pid" 2>/dev/null || fail "broker died on SIGHUP"
    stop_broker
fi

# ---- per_listener_settings: each listener its own acl_file, reloaded on SIGHUP
printf 'topic write a/#\n' >"$work/pl.acl"
cat >"$work/pl.conf" <<EOF
per_listener_settings true
listener 0 127.0.0.1
allow_anonymous true
acl_file $work/pl.acl
listener 0 ::1
allow_anonymous true
EOF
# denied CLIENT_ID TOPIC: the broker logged that it refused CLIENT_ID's publish to TOPIC.
denied() { wait_for "$work/pl.log" "client $1 denied publish to $2 by acl" 20; }
if start_broker "$work/pl.log" -c "$work/pl.conf" -v; then
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t b/x -m y -q 1 -i pl-v4
    timeout 10 mosquitto_pub -h ::1 -p "$port6" -t b/x -m y -q 1 -i pl-v6
    timeout 10 mosquitto_pub -h ::1 -p "$port6" -t end -m y -q 1 -i pl-end
    wait_for "$work/pl.log" "client pl-end connected" 50
    if denied pl-v4 b/x && ! grep -q "client pl-v6 denied" "$work/pl.log"; then
        pass "per_listener_settings: the acl_file of 127.0.0.1's listener applies to its clients only"
    else
        fail "per_listener_settings acl_file"; sed 's/^/    /' "$work/pl.log"
    fi
    printf 'topic write b/#\n' >"$work/pl.acl"
    kill -HUP "$broker_pid"
    if wait_for "$work/pl.log" "reloaded .*applied .*allow_anonymous, password_file and acl_file of each listener" 50; then
        timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t b/x -m y -q 1 -i pl-v4b
        timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t a/x -m y -q 1 -i pl-v4a
        if denied pl-v4a a/x && ! grep -q "client pl-v4b denied" "$work/pl.log"; then
            pass "per_listener_settings: SIGHUP reloads that listener's acl_file"
        else
            fail "per_listener_settings reload"; sed 's/^/    /' "$work/pl.log"
        fi
    else
        fail "per_listener_settings: no reload line"; sed 's/^/    /' "$work/pl.log"
    fi
    stop_broker
fi

# ---- connection_messages false, log_dest stdout, log_timestamp
cat >"$work/quiet.conf" <<'EOF'
allow_anonymous true
listener 0 127.0.0.1
connection_messages false
log_timestamp true
EOF
if start_broker "$work/quiet.log" -c "$work/quiet.conf" -v; then
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i not-logged
    sleep 0.3
    if ! grep -q "not-logged" "$work/quiet.log" &&
        grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z tern-broker: listening on' "$work/quiet.log"; then
        pass "connection_messages false hides connections even with -v; log_timestamp prefixes the time"
    else
        fail "connection_messages/log_timestamp"; sed 's/^/    /' "$work/quiet.log"
    fi
    stop_broker
fi

# ---- SIGTERM right after a client left: the broker exits at once (a closed connection's
# grace-period deadline must not hold the loop for its 3 s)
if start_broker "$work/term.log" -p 0; then
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port4" -t x -m y -i leaves-before-term
    t0=$(date +%s%N)
    kill -TERM "$broker_pid"
    for _ in $(seq 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.02; done
    ms=$((($(date +%s%N) - t0) / 1000000))
    if ! kill -0 "$broker_pid" 2>/dev/null && wait "$broker_pid"; then
        broker_pid=
        if ((ms < 1500)); then
            pass "SIGTERM after a client left: exited with status 0 in $ms ms"
        else
            fail "SIGTERM after a client left: exit took $ms ms (a close grace period is 3 s)"
        fi
    else
        fail "SIGTERM after a client left: not exited with status 0 within 2 s"; stop_broker
    fi
fi

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
