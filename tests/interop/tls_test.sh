#!/usr/bin/env bash
# TLS with real peers, certificates made fresh by tls_certs.sh (openssl):
#  - mosquitto_pub/mosquitto_sub with --cafile, and with client certificates, against
#    tern-broker (require_certificate, crlfile);
#  - tern-pub/tern-sub (and tern-bench) against tern-broker and tern-pub/tern-sub against Mosquitto (the mosquitto binary on a
#    free loopback port with its own TLS listeners), with -L mqtts:// too;
#  - refused, each with its reason on stderr or in the broker log: a wrong CA, an expired
#    certificate, a wrong host name, a plaintext client on a TLS port, no client certificate,
#    a revoked one, one from another CA; --insecure accepts the wrong host name;
#  - use_identity_as_username and use_subject_as_username: the certificate's name, not
#    CONNECT's, is the user name the acl_file sees.
#
# usage: tls_test.sh tern-broker tern-pub tern-sub [tern-bench]
#        (TERN_BROKER_THREADS=N: the brokers run with `threads N`)
# exit:  0 all passed, 1 a check failed, 77 openssl or the mosquitto tools missing (skipped)

set -u
broker_bin=${1:?usage: $0 tern-broker tern-pub tern-sub}
pub_bin=${2:?}
sub_bin=${3:?}
bench_bin=${4:-}  # optional: tern-bench
here=$(cd "$(dirname "$0")" && pwd)
for tool in openssl mosquitto_sub mosquitto_pub; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)

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
# Mosquitto run as root reads its files as the user mosquitto.
chmod -R go+rX "$work"

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect NAME STATUS FILE PATTERN: the last command's status was STATUS and FILE holds PATTERN.
expect() {
    local name=$1 want=$2 got=$3 file=$4 pattern=$5
    if [[ $got == "$want" ]] && { [[ -z $pattern ]] || grep -q -- "$pattern" "$file"; }; then
        pass "$name"
    else
        fail "$name: exit $got (want $want), '$pattern' in:"; sed 's/^/    /' "$file"
    fi
}

# wait_for FILE PATTERN: up to 5 s.
wait_for() {
    for _ in $(seq 100); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# TERN_BROKER_THREADS=N (CTest: 1, or 2 for interop.tls.threads2): both tern-brokers run with
# `threads N`, with N > 1 each TLS connection handed to its client id's shard after the
# handshake.
threads_line=
[[ -n ${TERN_BROKER_THREADS:-} ]] && threads_line="threads $TERN_BROKER_THREADS"

# ---- tern-broker: four TLS listeners on free ports (the first one's certificate is renewed
# on SIGHUP below)
cp "$c/server.crt" "$work/live.crt"
cat >"$work/tern.conf" <<CONF
$threads_line
allow_anonymous true
listener 0 127.0.0.1
certfile $work/live.crt
keyfile $c/server.key
listener 0 127.0.0.2
certfile $c/expired.crt
keyfile $c/server.key
listener 0 127.0.0.3
certfile $c/server.crt
keyfile $c/server.key
cafile $c/ca.crt
require_certificate true
crlfile $c/crl.pem
listener 0 127.0.0.4
certfile $c/wronghost.crt
keyfile $c/server.key
tls_version tlsv1.3
CONF
"$broker_bin" -c "$work/tern.conf" 2>"$work/broker.log" &
pids+=($!)
wait_for "$work/broker.log" "listening on" || { echo "FAIL: tern-broker did not start"; cat "$work/broker.log"; exit 1; }
read -r tls_port expired_port mutual_port wrong_port < <(head -n1 "$work/broker.log" |
    grep -oE '127\.0\.0\.[0-9]:[0-9]+' | cut -d: -f2 | tr '\n' ' ')
echo "tern-broker: $(head -n1 "$work/broker.log")"

# mosquitto_sub and mosquitto_pub with --cafile.
out=$work/m1.out
timeout 10 stdbuf -oL mosquitto_sub --cafile "$c/ca.crt" -h 127.0.0.1 -p "$tls_port" -t tls/m1 -C 1 -W 8 \
    -d >"$out" 2>&1 &
sub=$!
wait_for "$out" "received SUBACK" || fail "mosquitto_sub over TLS: no SUBACK"
timeout 10 mosquitto_pub --cafile "$c/ca.crt" -h localhost -p "$tls_port" -t tls/m1 -m over-tls -q 1
wait "$sub"
expect "mosquitto_pub -> tern-broker -> mosquitto_sub over TLS (--cafile)" 0 0 "$out" "^over-tls$"

# Client certificates: accepted from the CA, refused without one, revoked, or from another CA.
timeout 10 mosquitto_pub --cafile "$c/ca.crt" --cert "$c/client.crt" --key "$c/client.key" \
    -h 127.0.0.3 -p "$mutual_port" -t tls/m2 -m x -d >"$work/m2.out" 2>&1
expect "mosquitto_pub with a client certificate (require_certificate)" 0 $? "$work/m2.out" "CONNACK (0)"
timeout 10 mosquitto_pub --cafile "$c/ca.crt" -h 127.0.0.3 -p "$mutual_port" -t tls/m3 -m x \
    >"$work/m3.out" 2>&1
st=$?
[[ $st != 0 ]] && st=refused
expect "mosquitto_pub without a client certificate is refused" refused "$st" "$work/broker.log" \
    "on 127.0.0.3:$mutual_port refused: peer did not return a certificate"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" --cert "$c/revoked.crt" --key "$c/revoked.key" \
    -h 127.0.0.3 -p "$mutual_port" -t tls/m4 -m x 2>"$work/m4.out"
expect "tern-pub with a revoked certificate (crlfile)" 1 $? "$work/m4.out" \
    "the broker refused the TLS connection: sslv3 alert certificate revoked"
grep -q "refused: certificate verify failed: certificate revoked" "$work/broker.log" &&
    pass "broker log: certificate revoked" || fail "broker log: no 'certificate revoked'"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" --cert "$c/other-client.crt" \
    --key "$c/other-client.key" -h 127.0.0.3 -p "$mutual_port" -t tls/m5 -m x 2>"$work/m5.out"
expect "tern-pub with a certificate from another CA" 1 $? "$work/m5.out" "refused the TLS connection"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" --cert "$c/client.crt" --key "$c/client.key" \
    -h 127.0.0.3 -p "$mutual_port" -t tls/m6 -m x 2>"$work/m6.out"
expect "tern-pub with a client certificate" 0 $? "$work/m6.out" ""

# tern-sub and tern-pub against tern-broker, by host name and by mqtts:// URL.
out=$work/t1.out
timeout 10 "$sub_bin" --cafile "$c/ca.crt" -h localhost -p "$tls_port" -t tls/t1 -C 2 -W 8 \
    >"$out" 2>&1 &
sub=$!
sleep 0.5
timeout 10 "$pub_bin" --cafile "$c/ca.crt" -h localhost -p "$tls_port" -t tls/t1 -m one -q 1
timeout 10 "$pub_bin" --cafile "$c/ca.crt" -L "mqtts://127.0.0.1:$tls_port/tls/t1" -m two -q 2
wait "$sub"
st=$?
if [[ $st == 0 ]] && [[ $(cat "$out") == $'one\ntwo' ]]; then
    pass "tern-pub -> tern-broker -> tern-sub over TLS (-h and -L mqtts://)"
else
    fail "tern-sub over TLS: exit $st:"; sed 's/^/    /' "$out"
fi

# Refusals, each with its reason.
timeout 10 "$pub_bin" --cafile "$c/other-ca.crt" -h localhost -p "$tls_port" -t x -m x 2>"$work/r1.out"
expect "wrong CA refused" 1 $? "$work/r1.out" \
    "TLS handshake failed: certificate verify failed: unable to get local issuer certificate"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" -h 127.0.0.2 -p "$expired_port" -t x -m x 2>"$work/r2.out"
expect "expired certificate refused" 1 $? "$work/r2.out" \
    "certificate verify failed: certificate has expired"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" -h 127.0.0.4 -p "$wrong_port" -t x -m x 2>"$work/r3.out"
expect "wrong host (IP address) refused" 1 $? "$work/r3.out" \
    "certificate verify failed: IP address mismatch"
timeout 10 "$sub_bin" --cafile "$c/ca.crt" -h 127.0.0.2 -p "$expired_port" -t x -C 1 -W 2 2>"$work/r4.out"
expect "tern-sub: expired certificate refused" 1 $? "$work/r4.out" \
    "certificate verify failed: certificate has expired"
timeout 10 "$pub_bin" --insecure --cafile "$c/ca.crt" -h 127.0.0.4 -p "$wrong_port" -t x -m x \
    2>"$work/r5.out"
expect "--insecure accepts the wrong host name" 0 $? "$work/r5.out" ""
timeout 10 "$pub_bin" --tls-version tlsv1.3 --cafile "$c/ca.crt" --insecure -h 127.0.0.4 \
    -p "$wrong_port" -t x -m x 2>"$work/r6.out"
expect "--tls-version tlsv1.3 to a tls_version tlsv1.3 listener" 0 $? "$work/r6.out" ""
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$tls_port" -t x -m plaintext >"$work/r7.out" 2>&1
st=$?
[[ $st != 0 ]] && st=refused
expect "plaintext client on a TLS port refused and logged" refused "$st" "$work/broker.log" \
    "refused: not a TLS handshake (first byte 0x10): a plaintext MQTT client on a TLS port"
grep -q "refused: tlsv1 alert unknown ca" "$work/broker.log" &&
    pass "broker log: unknown ca" || fail "broker log: no 'unknown ca'"

# tern-bench over TLS: every message of every pair, and the expired certificate refused.
if [[ -n $bench_bin ]]; then
    timeout 60 "$bench_bin" pairs --cafile "$c/ca.crt" -h localhost -p "$tls_port" --clients 3 \
        --count 300 -q 1 >"$work/b1.out" 2>&1
    expect "tern-bench pairs over TLS, nothing lost" 0 $? "$work/b1.out" "received 900 .*lost 0"
    timeout 60 "$bench_bin" pub --cafile "$c/ca.crt" -L "mqtts://127.0.0.2:$expired_port" \
        --count 10 >"$work/b2.out" 2>&1
    expect "tern-bench: expired certificate refused" 1 $? "$work/b2.out" \
        "TLS handshake with 127.0.0.2:$expired_port failed: certificate verify failed: certificate has expired"
fi

# SIGHUP: the certificate file is read again; new connections get the new certificate, an
# open connection stays.
out=$work/h1.out
timeout 20 "$sub_bin" --cafile "$c/ca.crt" -h 127.0.0.1 -p "$tls_port" -t tls/h1 -C 1 -W 15 \
    >"$out" 2>&1 &
sub=$!
sleep 0.5
cp "$c/wronghost.crt" "$work/live.crt"
kill -HUP "${pids[0]}"
wait_for "$work/broker.log" "applied TLS of" || fail "SIGHUP: no 'applied TLS of' in the log"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" -h 127.0.0.1 -p "$tls_port" -t tls/h1 -m x 2>"$work/h2.out"
expect "after SIGHUP new connections get the renewed certificate" 1 $? "$work/h2.out" \
    "certificate verify failed: IP address mismatch"
timeout 10 "$pub_bin" --insecure --cafile "$c/ca.crt" -h 127.0.0.1 -p "$tls_port" -t tls/h1 \
    -m kept -q 1 2>"$work/h3.out"
wait "$sub"
expect "after SIGHUP the open TLS connection is kept" 0 $? "$out" "^kept$"
# A certificate file that cannot be read on SIGHUP: logged, the running one stays in use.
rm "$work/live.crt"
kill -HUP "${pids[0]}"
wait_for "$work/broker.log" "not reloaded, the running files stay" ||
    fail "SIGHUP with a missing certfile: not logged"
timeout 10 "$pub_bin" --insecure --cafile "$c/ca.crt" -h 127.0.0.1 -p "$tls_port" -t tls/h4 -m x \
    2>"$work/h4.out"
expect "after a failed reload the listener keeps serving TLS" 0 $? "$work/h4.out" ""
cp "$c/server.crt" "$work/live.crt"

# ---- use_identity_as_username / use_subject_as_username: a second tern-broker without
# anonymous clients or a password_file, so only the certificate's name lets a client in; its
# acl_file gives that name (the commonName, or the RFC 2253 subject) a topic of its own.
# The subject as openssl prints it in RFC 2253 form, as Mosquitto renders it too.
subject=$(openssl x509 -in "$c/client.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
cat >"$work/cert-acl" <<ACL
user tern-client
topic readwrite byid/#
user $subject
topic readwrite bysubject/#
ACL
cat >"$work/cert.conf" <<CONF
$threads_line
allow_anonymous false
acl_file $work/cert-acl
listener 0 127.0.0.3
certfile $c/server.crt
keyfile $c/server.key
cafile $c/ca.crt
require_certificate true
use_identity_as_username true
listener 0 127.0.0.4
certfile $c/server.crt
keyfile $c/server.key
cafile $c/ca.crt
require_certificate true
use_subject_as_username true
CONF
"$broker_bin" -c "$work/cert.conf" -v 2>"$work/cert.log" &
pids+=($!)
wait_for "$work/cert.log" "listening on" || { fail "tern-broker (cert names) did not start"; cat "$work/cert.log"; }
read -r id_port subject_port < <(head -n1 "$work/cert.log" |
    grep -oE '127\.0\.0\.[34]:[0-9]+' | cut -d: -f2 | tr '\n' ' ')
for mode in id subject; do
    host=127.0.0.3 port=$id_port topic=byid/x other=bysubject/x
    [[ $mode == subject ]] && host=127.0.0.4 port=$subject_port topic=bysubject/x other=byid/x
    certargs=(--cafile "$c/ca.crt" --cert "$c/client.crt" --key "$c/client.key" -h $host)
    out=$work/u-$mode.out
    timeout 10 stdbuf -oL mosquitto_sub "${certargs[@]}" -p "$port" -t '#' -C 1 -W 8 -v -d \
        >"$out" 2>&1 &
    sub=$!
    wait_for "$out" "received SUBACK" || fail "$mode: mosquitto_sub with a certificate: no SUBACK"
    # CONNECT's own user name and password are ignored: the certificate's name connects,
    # and its ACL refuses the other name's topic (PUBACK 0x87).
    timeout 10 "$pub_bin" "${certargs[@]}" -p "$port" -u mallory -P wrong -t "$other" -m denied -q 1 \
        2>"$work/u-$mode-1.out"
    expect "$mode: CONNECT's user name is ignored, the certificate's name connects, $other refused" \
        1 $? "$work/u-$mode-1.out" "the broker refused message 1: not_authorized"
    timeout 10 "$pub_bin" "${certargs[@]}" -p "$port" -t "$topic" -m allowed -q 1 2>"$work/u-$mode-2.out"
    wait "$sub"
    expect "$mode: the ACL of the certificate's name lets it write $topic, not $other" 0 $? \
        "$out" "^$topic allowed$"
    grep -q "denied" "$out" && fail "$mode: a message to $other got through the ACL"
done
grep -q "denied publish to byid/x by acl" "$work/cert.log" &&
    pass "use_subject_as_username: the commonName alone is not the user name" ||
    fail "cert log: no 'denied publish to byid/x by acl'"
timeout 10 "$pub_bin" --cafile "$c/ca.crt" --cert "$c/other-client.crt" --key "$c/other-client.key" \
    -h 127.0.0.3 -p "$id_port" -t byid/x -m x 2>"$work/u-other.out"
expect "a certificate from another CA is still refused at the handshake" 1 $? "$work/u-other.out" \
    "refused the TLS connection"

# ---- configuration errors name FILE:LINE; --print-config shows the TLS options
printf 'allow_anonymous true\nlistener 0 127.0.0.1\ncertfile %s\nkeyfile %s/missing.key\n' \
    "$c/server.crt" "$c" >"$work/bad.conf"
"$broker_bin" -c "$work/bad.conf" 2>"$work/bad.out"
expect "a missing keyfile stops tern-broker with FILE:LINE" 2 $? "$work/bad.out" \
    "bad.conf:4: keyfile $c/missing.key: cannot read: No such file or directory"
printf 'allow_anonymous true\nlistener 0 127.0.0.1\ncertfile %s\nkeyfile %s\n' \
    "$c/server.crt" "$c/client.key" >"$work/bad2.conf"
"$broker_bin" -c "$work/bad2.conf" 2>"$work/bad2.out"
expect "a key of another certificate stops tern-broker" 2 $? "$work/bad2.out" \
    "bad2.conf:4: keyfile $c/client.key: does not match the certificate"
"$broker_bin" -c "$work/tern.conf" --print-config >"$work/print.out" 2>&1
expect "--print-config shows the TLS options" 0 $? "$work/print.out" \
    "\"require_certificate\":true"

# ---- Mosquitto with TLS, tern-pub and tern-sub as its clients
if [[ -x $mosquitto_bin ]]; then
    free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    mport=$(free_port)
    mport2=$(free_port)
    mport3=$(free_port)
    cat >"$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
listener $mport 127.0.0.1
certfile $c/server.crt
keyfile $c/server.key
listener $mport2 127.0.0.1
certfile $c/server.crt
keyfile $c/server.key
cafile $c/ca.crt
require_certificate true
use_identity_as_username true
listener $mport3 127.0.0.1
certfile $c/wronghost.crt
keyfile $c/server.key
CONF
    "$mosquitto_bin" -c "$work/mosquitto.conf" -v >"$work/mosquitto.log" 2>&1 &
    pids+=($!)
    wait_for "$work/mosquitto.log" "listen socket on port $mport3" ||
        { fail "mosquitto did not start"; cat "$work/mosquitto.log"; }
    out=$work/q1.out
    timeout 10 "$sub_bin" --cafile "$c/ca.crt" -h localhost -p "$mport" -t tls/q1 -C 1 -W 8 -V 311 \
        >"$out" 2>&1 &
    sub=$!
    wait_for "$work/mosquitto.log" "SUBSCRIBE" || fail "tern-sub did not subscribe to mosquitto"
    timeout 10 "$pub_bin" --cafile "$c/ca.crt" -L "mqtts://localhost:$mport/tls/q1" -m via-mosquitto -q 1
    wait "$sub"
    expect "tern-pub -> mosquitto -> tern-sub over TLS" 0 $? "$out" "^via-mosquitto$"
    timeout 10 "$pub_bin" --cafile "$c/ca.crt" --cert "$c/client.crt" --key "$c/client.key" \
        -h 127.0.0.1 -p "$mport2" -t tls/q2 -m x 2>"$work/q2.out"
    expect "tern-pub with a client certificate to mosquitto (use_identity_as_username)" 0 $? \
        "$work/q2.out" ""
    grep -q "u'tern-client'" "$work/mosquitto.log" &&
        pass "mosquitto took the user name tern-client from tern-pub's certificate" ||
        fail "mosquitto log: no u'tern-client'"
    timeout 10 "$pub_bin" --cafile "$c/ca.crt" -h 127.0.0.1 -p "$mport2" -t tls/q3 -m x 2>"$work/q3.out"
    # With TLS 1.3 Mosquitto checks the certificate after the client's handshake is done: its
    # alert, or its closing of the connection before the alert is read, refuses tern-pub.
    expect "tern-pub without a certificate refused by mosquitto" 1 $? "$work/q3.out" \
        "the broker refused the TLS connection\|Connection reset by peer"
    timeout 10 "$sub_bin" --cafile "$c/other-ca.crt" -h localhost -p "$mport" -t x -C 1 2>"$work/q4.out"
    expect "tern-sub with the wrong CA refused by its own check" 1 $? "$work/q4.out" \
        "certificate verify failed: unable to get local issuer certificate"
    timeout 10 "$sub_bin" --cafile "$c/ca.crt" -h localhost -p "$mport3" -t x -C 1 2>"$work/q6.out"
    expect "tern-sub: wrong host name refused (a certificate for wrong.example)" 1 $? \
        "$work/q6.out" "certificate verify failed: hostname mismatch"
    timeout 10 "$sub_bin" -h 127.0.0.1 -p "$mport" -t x -C 1 -W 3 2>"$work/q5.out"
    st=$?
    [[ $st != 0 ]] && st=failed
    expect "tern-sub in plain TCP to a TLS port fails" failed "$st" "$work/q5.out" "error"
else
    echo "SKIP: mosquitto (the broker) not installed"
fi

echo "$failures failure(s)"
[[ $failures == 0 ]]
