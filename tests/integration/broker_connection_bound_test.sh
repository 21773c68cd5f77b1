#!/usr/bin/env bash
# tern-broker's connection bounds, with tern-bench conn holding 10,050 connections:
# a listener without max_connections of its own stops at the broker's default bound (10,000);
# a listener with `max_connections 10050` is held to its own bound alone and takes them all.
#
# usage: broker_connection_bound_test.sh path/to/tern-broker path/to/tern-bench
# exit:  0 passed, 1 failed, 77 the file limit is too low to try (skipped)
set -uo pipefail
broker=$1
bench=$2
want=10050
ulimit -n 32768 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((want + 200)) ]; then
    echo "SKIP: file limit $(ulimit -n) is below $((want + 200))"
    exit 77
fi
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null; rm -rf "$work"' EXIT
status=0

# held CONFIG_LINES: connections tern-bench held open against a broker with that config.
held() {
    printf 'listener 0 127.0.0.1\nallow_anonymous true\n%s' "$1" >"$work/tern.conf"
    "$broker" -c "$work/tern.conf" 2>"$work/broker.log" &
    pid=$!
    local port="" i
    for i in $(seq 100); do
        port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/broker.log" | head -1 | cut -d: -f2)
        [ -n "$port" ] && break
        sleep 0.1
    done
    echo "$port" >"$work/port"
    "$bench" conn -h 127.0.0.1 -p "$port" --clients $want --connect-rate 20000 --hold 1 \
        --json >"$work/bench.json" 2>"$work/bench.err"
    kill "$pid"
    wait "$pid" 2>/dev/null
    /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections"]["succeeded"])' \
        "$work/bench.json" 2>/dev/null || echo "none"
}

# explain: what the bench and the broker said, after a failed check (on stderr).
explain() {
    {
        echo "    port read from the log: '$(cat "$work/port")'"
        /usr/bin/python3 -c 'import json,sys; print("    bench errors:", json.load(open(sys.argv[1]))["errors"])' \
            "$work/bench.json" 2>/dev/null || sed 's/^/    bench: /' "$work/bench.err"
        tail -n 5 "$work/broker.log" | sed 's/^/    broker: /'
    } >&2
}

got=$(held "")
if [ "$got" = 10000 ]; then
    echo "PASS: no max_connections of its own: 10000 of $want held (the default bound)"
else
    echo "FAIL: no max_connections of its own: $got of $want held, expected 10000"
    explain
    status=1
fi
got=$(held "max_connections $want
")
if [ "$got" = $want ]; then
    echo "PASS: max_connections $want: all $want held (above the default bound)"
else
    echo "FAIL: max_connections $want: $got of $want held"
    explain
    status=1
fi
exit $status
