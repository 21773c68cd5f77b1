#!/usr/bin/env bash
# tern-broker with a password_file made by mosquitto_passwd, used as is: the right password
# connects (3.1.1 and 5.0), a wrong one and an unknown user get CONNACK 5 (3.1.1) / 0x86 Bad
# User Name or Password (5.0; Mosquitto 2 sends 0x87) after the refusal delay, an anonymous
# client 5 / 0x87 (as Mosquitto), and are logged; packets sent
# right behind CONNECT wait for the password check and are answered in order; SIGHUP reads
# the password file again; an acl_file with an error stops start-up naming FILE:LINE.
# `tern-broker passwd` writes a file that Mosquitto itself accepts (when mosquitto is there).
#
# usage: broker_auth_test.sh path/to/tern-broker
# exit:  0 all passed, 1 a check failed, 77 mosquitto_passwd/clients or python3 missing

set -u
broker_bin=${1:?usage: $0 path/to/tern-broker}
for tool in mosquitto_passwd mosquitto_sub mosquitto_pub python3; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

work=$(mktemp -d)
broker_pid=
cleanup() {
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null; done
    [[ -n $broker_pid ]] && kill -KILL "$broker_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
wait_for() {  # wait_for FILE PATTERN [TENTHS]
    for _ in $(seq "${3:-100}"); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

mosquitto_passwd -c -b "$work/pw" alice secret || { fail "mosquitto_passwd -c"; exit 1; }
mosquitto_passwd -b "$work/pw" bob 'hunter 2' || { fail "mosquitto_passwd"; exit 1; }
cat >"$work/tern.conf" <<EOF
listener 0 127.0.0.1
password_file $work/pw
EOF

"$broker_bin" -c "$work/tern.conf" -v 2>"$work/broker.log" &
broker_pid=$!
if ! wait_for "$work/broker.log" 'listening on'; then
    fail "broker did not start"; cat "$work/broker.log"; exit 1
fi
port=$(head -n1 "$work/broker.log" | sed -nE 's/.*127\.0\.0\.1:([0-9]+).*/\1/p')

pub() {  # pub VERSION ARGS... -> exit status of mosquitto_pub
    local v=$1
    shift
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port" -V "$v" -t auth/t -m x "$@" 2>/dev/null
}

for v in 311 5; do
    pub "$v" -u alice -P secret -i "ok-$v" && pass "v$v: alice with her password connects" ||
        fail "v$v: alice refused"
    pub "$v" -u bob -P 'hunter 2' && pass "v$v: bob (password with a space) connects" ||
        fail "v$v: bob refused"
    expected=5
    anonymous=5
    [[ $v == 5 ]] && expected=134 && anonymous=135
    start=$(date +%s%N)
    pub "$v" -u alice -P wrong -i "bad-$v"
    rc=$?
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
    if [[ $rc -eq $expected && $elapsed_ms -ge 900 ]]; then
        pass "v$v: wrong password: exit $rc (CONNACK $expected) after ${elapsed_ms} ms"
    else
        fail "v$v: wrong password: exit $rc after ${elapsed_ms} ms, expected $expected after >= 900 ms"
    fi
    pub "$v" -u mallory -P secret
    rc=$?
    [[ $rc -eq $expected ]] && pass "v$v: unknown user: exit $rc" || fail "v$v: unknown user: exit $rc"
    pub "$v"
    rc=$?
    [[ $rc -eq $anonymous ]] && pass "v$v: anonymous (allow_anonymous false by default): exit $rc" ||
        fail "v$v: anonymous: exit $rc"
done
if grep -q "client bad-311 refused from 127.0.0.1:[0-9]*: not authorised (bad user name or password, user 'alice')" "$work/broker.log"; then
    pass "refusals are logged with client id, peer and user"
else
    fail "no refusal log line"; sed 's/^/    /' "$work/broker.log"
fi

# While many wrong passwords wait out their delay, a right one still gets in at once: well
# under the 8 s that waiting behind the 8 one-second delays would take (the margin is for a
# loaded machine, where starting mosquitto_pub alone can take most of a second).
guessers=()
for i in $(seq 8); do
    pub 311 -u alice -P "wrong$i" -i "guess$i" &
    guessers+=($!)
done
sleep 0.2
start=$(date +%s%N)
pub 311 -u alice -P secret -i during-guessing
rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
wait "${guessers[@]}"
if [[ $rc -eq 0 && $elapsed_ms -lt 3000 ]]; then
    pass "8 refusals pending: a right password connects in ${elapsed_ms} ms"
else
    fail "during guessing: exit $rc after ${elapsed_ms} ms"
fi

# CONNECT, PUBLISH QoS 1, SUBSCRIBE and PINGREQ in one write: held until the password is
# checked, then answered in order.
if python3 - "$port" <<'EOF'; then pass "packets behind CONNECT wait for the check: CONNACK, PUBACK, SUBACK, PINGRESP"; else fail "pipelined packets"; fi
import socket, sys
def s(b): return bytes([len(b) >> 8, len(b) & 255]) + b
body = s(b"MQTT") + bytes([4, 0xC2, 0, 60]) + s(b"pipelined") + s(b"alice") + s(b"secret")
connect = bytes([0x10, len(body)]) + body
pub_body = s(b"auth/p") + bytes([0, 1]) + b"hi"
publish = bytes([0x32, len(pub_body)]) + pub_body
sub_body = bytes([0, 2]) + s(b"auth/#") + bytes([0])
subscribe = bytes([0x82, len(sub_body)]) + sub_body
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
c.sendall(connect + publish + subscribe + bytes([0xC0, 0]))
want = bytes([0x20, 2, 0, 0, 0x40, 2, 0, 1, 0x90, 3, 0, 2, 0, 0xD0, 0])
got = b""
while len(got) < len(want):
    chunk = c.recv(100)
    if not chunk: break
    got += chunk
assert got == want, got.hex()
EOF

# SIGHUP: a user added to the file can connect after the reload, not before.
mosquitto_passwd -b "$work/pw" carol 'c4rol'
pub 311 -u carol -P c4rol
rc=$?
[[ $rc -eq 5 ]] && pass "carol before SIGHUP: exit 5" || fail "carol before SIGHUP: exit $rc"
kill -HUP "$broker_pid"
if wait_for "$work/broker.log" 'reloaded .*password_file'; then
    pub 311 -u carol -P c4rol && pass "carol after SIGHUP connects" || fail "carol after SIGHUP refused"
else
    fail "no reload line"; sed 's/^/    /' "$work/broker.log"
fi
kill -TERM "$broker_pid"
wait "$broker_pid"
broker_pid=

# --print-config names the files; an acl_file with an error stops start-up with FILE:LINE.
printf 'user alice\ntopic sometimes x\n' >"$work/bad.acl"
printf 'listener 0 127.0.0.1\npassword_file %s\nacl_file %s\n' "$work/pw" "$work/bad.acl" >"$work/bad.conf"
timeout 10 "$broker_bin" -c "$work/bad.conf" >"$work/bad.out" 2>"$work/bad.err"
rc=$?
if [[ $rc -eq 2 ]] && grep -q "$work/bad.acl:2: invalid access 'sometimes'" "$work/bad.err"; then
    pass "bad acl_file: exit 2, $(head -n1 "$work/bad.err")"
else
    fail "bad acl_file: exit $rc"; cat "$work/bad.err"
fi
printf 'user alice\ntopic alice/#\n' >"$work/good.acl"
printf 'listener 0 127.0.0.1\npassword_file %s\nacl_file %s\n' "$work/pw" "$work/good.acl" >"$work/good.conf"
if timeout 10 "$broker_bin" -c "$work/good.conf" --print-config >"$work/pc.json" &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["password_file"]==sys.argv[2] and d["acl_file"]==sys.argv[3] and d["allow_anonymous"] is False' \
        "$work/pc.json" "$work/pw" "$work/good.acl"; then
    pass "--print-config: password_file, acl_file, allow_anonymous false"
else
    fail "--print-config"; cat "$work/pc.json"
fi

# ---- tern-broker passwd
tb() { "$broker_bin" passwd "$@"; }
printf 'secret\n' | tb -c --stdin "$work/tpw" alice &&
    printf 'hunter 2\n' | tb --stdin "$work/tpw" bob &&
    printf 'old\n' | tb --stdin "$work/tpw" dave
rc=$?
mode=$(stat -c %a "$work/tpw")
if [[ $rc -eq 0 && $mode == 600 ]] && grep -qE '^alice:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$' "$work/tpw"; then
    pass "passwd -c / update: \$7\$101 lines, a new file is mode 600"
else
    fail "passwd: rc $rc, mode $mode"; cat "$work/tpw"
fi
chmod 644 "$work/tpw"  # Mosquitto may drop root for its own user before reading it
printf 'new\n' | tb --stdin "$work/tpw" dave
[[ $(stat -c %a "$work/tpw") == 644 && $(grep -c '^dave:' "$work/tpw") == 1 ]] &&
    pass "passwd: a changed password replaces the line, the file keeps its mode" ||
    fail "passwd update: mode $(stat -c %a "$work/tpw")"
tb "$work/tpw" carol </dev/null 2>"$work/tty.err"
rc=$?
[[ $rc -eq 1 ]] && grep -q "not a terminal" "$work/tty.err" && pass "passwd without a terminal or --stdin: exit 1" ||
    fail "passwd without terminal: exit $rc"
tb -D "$work/tpw" nobody 2>/dev/null
[[ $? -eq 1 ]] && pass "passwd -D of an unknown user: exit 1" || fail "passwd -D unknown"
tb --stdin "$work/tpw" 'a:b' </dev/null 2>/dev/null
[[ $? -eq 2 ]] && pass "passwd: a user name with ':' is a usage error" || fail "passwd a:b"
# "#a:HASH" would be a comment line: the user could never log in.
tb --stdin "$work/tpw" '#a' </dev/null 2>"$work/hash.err"
[[ $? -eq 2 ]] && grep -q "invalid user name" "$work/hash.err" && ! grep -q '^#a:' "$work/tpw" &&
    pass "passwd: a user name starting with '#' is a usage error, the file untouched" || fail "passwd #a"
# On a terminal: asked twice, not echoed; a mismatch changes nothing.
if python3 - "$broker_bin" "$work/tpw" <<'EOF'; then pass "passwd on a terminal: two prompts, no echo, a mismatch refused"; else fail "passwd on a terminal"; fi
import os, pty, select, sys, time
def read_some(fd, deadline):
    ready, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
    if not ready: return b""
    try:
        return os.read(fd, 100)
    except OSError:  # the child is gone
        return b""
def run(answers):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.argv[1], [sys.argv[1], "passwd", sys.argv[2], "tty-user"])
    seen, deadline = b"", time.time() + 10
    for i, a in enumerate(answers):
        # Each answer after its own prompt (echo is off from just before it shows): the
        # second must not go while the tool turns echo back on between the two.
        while seen.count(b"assword: ") <= i and time.time() < deadline:
            seen += read_some(fd, deadline)
        os.write(fd, a + b"\n")
    while time.time() < deadline:
        chunk = read_some(fd, deadline)
        if not chunk: break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen
code, seen = run([b"tty-secret", b"tty-secret"])
assert code == 0 and b"tty-secret" not in seen and seen.count(b"assword: ") == 2, (code, seen)
assert any(l.startswith("tty-user:$7$101$") for l in open(sys.argv[2])), "no line"
before = open(sys.argv[2]).read()
code, seen = run([b"one", b"two"])
assert code == 1 and b"do not match" in seen and open(sys.argv[2]).read() == before, (code, seen)
EOF
mosquitto_passwd -b "$work/tpw" erin 'from mosquitto'
printf 'x\n' | tb --stdin "$work/tpw" gone && tb -D "$work/tpw" gone && ! grep -q '^gone:' "$work/tpw" &&
    pass "passwd -D removes the line" || fail "passwd -D"

# Both brokers take the file: tern-broker, and Mosquitto itself.
printf 'listener 0 127.0.0.1\npassword_file %s\n' "$work/tpw" >"$work/t2.conf"
"$broker_bin" -c "$work/t2.conf" 2>"$work/t2.log" &
broker_pid=$!
if wait_for "$work/t2.log" 'listening on'; then
    port=$(head -n1 "$work/t2.log" | sed -nE 's/.*127\.0\.0\.1:([0-9]+).*/\1/p')
    pub 311 -u alice -P secret && pub 5 -u bob -P 'hunter 2' && pub 311 -u dave -P new &&
        pub 311 -u erin -P 'from mosquitto' && ! pub 311 -u dave -P old &&
        pass "tern-broker takes the file tern-broker passwd and mosquitto_passwd wrote" ||
        fail "tern-broker with the tern-broker passwd file"
fi
kill -TERM "$broker_pid"
wait "$broker_pid"
broker_pid=
if command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]]; then
    mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # user root: started as root, Mosquitto would switch to its own user, who cannot read
    # the private temporary directory (ignored when not root).
    printf 'user root\nlistener %s 127.0.0.1\npassword_file %s\nallow_anonymous false\n' "$mport" "$work/tpw" >"$work/m.conf"
    "$mosquitto_bin" -c "$work/m.conf" 2>"$work/m.log" &
    broker_pid=$!
    port=$mport
    ok=0
    for _ in $(seq 50); do pub 311 -u alice -P secret && { ok=1; break; }; sleep 0.1; done
    if [[ $ok -eq 1 ]] && pub 5 -u bob -P 'hunter 2' && pub 311 -u dave -P new && ! pub 311 -u alice -P wrong; then
        pass "Mosquitto takes the file tern-broker passwd wrote (right passwords in, a wrong one out)"
    else
        fail "Mosquitto with the tern-broker passwd file"; cat "$work/m.log"
    fi
    kill -TERM "$broker_pid"
    wait "$broker_pid"
    broker_pid=
else
    echo "SKIP: mosquitto (the broker) not installed: the file is not checked against it"
fi

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
