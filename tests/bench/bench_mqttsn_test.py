#!/usr/bin/env python3
"""tern-bench over MQTT-SN (-L mqttsn://...) against tern-broker's gateway, on 127.0.0.1 with
ports the broker picked (listener 0), every wait bounded.

Short runs of pairs (QoS 0, 1, 2), pub (QoS 1, publish-to-ack latency), fanin and fanout over
UDP: at QoS 1 and 2 every message arrives (received == published, no loss, no duplicate at
QoS 2), latencies are recorded, protocol_version is mqttsn-1.2. `sub` over MQTT-SN counts what
a tern-bench pub over MQTT/TCP publishes on the same broker at the same time; conn opens and
closes MQTT-SN connections. The scenarios MQTT-SN cannot run (shared, reqresp), --inflight, and
user names are usage errors (exit 2); a port without a gateway fails the run (exit 1).

usage: bench_mqttsn_test.py BIN_DIR
exit:  0 passed, 1 failed
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402
import mqttsn  # noqa: E402

BIN = sys.argv[1]
BENCH = os.path.join(BIN, "tern-bench")
TIMEOUT = 60
check = harness.Checks()


def bench(args, url=None, timeout=TIMEOUT):
    """tern-bench SCENARIO -L URL --json ARGS...: (exit status, JSON or None, stderr)."""
    cmd = [BENCH, args[0]] + (["-L", url] if url else []) + ["--json"] + args[1:]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, "timed out: " + " ".join(cmd)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = None
    return p.returncode, doc, p.stderr


def run_ok(url, name, args, expect):
    code, d, err = bench(args, url)
    if not check(code == 0 and d is not None,
                 "%s: exit 0 with a JSON report (exit %s, stderr: %s)" % (name, code, err.strip()[:400])):
        return None
    check(d["parameters"]["protocol_version"] == "mqttsn-1.2",
          "%s: protocol_version mqttsn-1.2 (%s)" % (name, d["parameters"]["protocol_version"]))
    m = d["messages"]
    for key, want in expect.items():
        got = m.get(key) if key in m else d["connections"].get(key)
        check(got == want, "%s: %s == %s (got %s: %s)" % (name, key, want, got, json.dumps(m)))
    check(d["status"] == "ok" and not d["errors"] and not d["timed_out"],
          "%s: status ok, no errors (%s %s)" % (name, d["status"], d["errors"]))
    return d


def latency_present(d, name, key, count):
    pct = d[key]
    check(pct["count"] == count and 0 < pct["p50"] <= pct["p99"] <= pct["max"],
          "%s: %s recorded for each of %d (%s)" % (name, key, count, json.dumps(pct)))


def main():
    work = tempfile.mkdtemp(prefix="tern-bench-mqttsn-")
    broker = mqttsn.start_gateway(os.path.join(BIN, "tern-broker"), work, args=())
    udp = broker.sn_port
    url = "mqttsn://127.0.0.1:%d" % udp
    try:
        d = run_ok(url, "pairs q1", ["pairs", "-q", "1", "--clients", "3", "--count", "300"],
                   {"published": 900, "expected": 900, "unique": 900, "received": 900,
                    "lost": 0, "succeeded": 6})
        if d:
            latency_present(d, "pairs q1", "latency_ns", 900)
            check(d["rates"]["headline"] > 0, "pairs q1: a headline rate")
            check(d["parameters"]["port"] == udp, "pairs q1: the URL's port is used")
        d = run_ok(url, "pairs q2", ["pairs", "-q", "2", "--clients", "2", "--count", "200"],
                   {"published": 400, "expected": 400, "unique": 400, "lost": 0,
                    "duplicates": 0})
        if d:
            latency_present(d, "pairs q2", "latency_ns", 400)
        # QoS 0 over UDP may lose datagrams when paced faster than the gateway reads; at
        # 2000 messages per second on loopback it must not.
        d = run_ok(url, "pairs q0", ["pairs", "--clients", "2", "--count", "400",
                                     "--rate", "2000"],
                   {"published": 800, "expected": 800})
        if d:
            check(d["messages"]["unique"] > 0, "pairs q0: messages arrived")
        d = run_ok(url, "pub q1", ["pub", "-q", "1", "--publishers", "2", "--count", "300"],
                   {"published": 600, "acked": 600})
        if d:
            latency_present(d, "pub q1", "ack_latency_ns", 600)
        # fanin with the default wildcard filter: the gateway REGISTERs each topic first.
        run_ok(url, "fanin q1", ["fanin", "-q", "1", "--publishers", "3", "--count", "200"],
               {"published": 600, "expected": 600, "unique": 600, "lost": 0})
        run_ok(url, "fanout q1", ["fanout", "-q", "1", "--subscribers", "3", "--count", "200"],
               {"published": 200, "expected": 600, "unique": 600, "lost": 0})
        run_ok(url, "conn", ["conn", "--clients", "20", "--hold", "0.2"],
               {"attempted": 20, "succeeded": 20, "failed": 0})

        # sub over MQTT-SN, the publisher over MQTT on TCP: one broker, both protocols.
        sub_err = os.path.join(work, "sub.err")
        with open(sub_err, "w") as err_file:
            sub = subprocess.Popen([BENCH, "sub", "-L", url + "/tern-bench/x/#", "-q", "1",
                                    "--count", "500", "--json", "--time-limit", "40", "-v"],
                                   stdout=subprocess.PIPE, stderr=err_file, text=True)
        end = time.monotonic() + 20  # -v logs "subscribed 1" once the SUBACK is in
        while time.monotonic() < end and sub.poll() is None:
            with open(sub_err) as f:
                if "subscribed 1" in f.read():
                    break
            time.sleep(0.05)
        code, d, err = bench(["pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                              "--count", "500", "-t", "tern-bench/x/%i"])
        check(code == 0, "pub over MQTT beside sub over MQTT-SN: exit 0 (%s)" % err.strip()[:300])
        try:
            out, _ = sub.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            sub.kill()
            out, _ = sub.communicate()
        with open(sub_err) as f:
            serr = f.read()
        s = json.loads(out) if out.strip().startswith("{") else None
        if check(sub.returncode == 0 and s is not None,
                 "sub over MQTT-SN: exit 0 (%s: %s)" % (sub.returncode, serr.strip()[:300])):
            check(s["messages"]["unique"] == 500 and s["messages"]["lost"] == 0,
                  "sub over MQTT-SN: 500 of the MQTT publisher's messages, none lost (%s)"
                  % json.dumps(s["messages"]))
            latency_present(s, "sub over MQTT-SN", "latency_ns", 500)

        # What MQTT-SN cannot run is a usage error that says so.
        for args, what in ((["shared"], "shared is not supported over MQTT-SN"),
                           (["reqresp", "-V", "5"], "reqresp is not supported over MQTT-SN"),
                           (["pairs", "--inflight", "8", "-q", "1"], "one QoS 1/2 message"),
                           (["pairs", "-u", "someone"], "no user name")):
            code, _, err = bench(args, url)
            check(code == 2 and what in err,
                  "%s over MQTT-SN: exit 2 saying '%s' (exit %s: %s)"
                  % (args[0], what, code, err.strip()[:300]))

        # No gateway on the port: the run fails (exit 1) and says why, without waiting for
        # the retransmissions.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        t0 = time.monotonic()
        code, d, err = bench(["pub", "--count", "10"], "mqttsn://127.0.0.1:%d" % dead)
        check(code == 1 and d is not None and any("port unreachable" in e for e in d["errors"])
              and time.monotonic() - t0 < 20,
              "no gateway: exit 1 with 'port unreachable' (exit %s, %s)"
              % (code, d and d["errors"]))
        check(broker.running(), "tern-broker still running")
    finally:
        broker.stop()
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
