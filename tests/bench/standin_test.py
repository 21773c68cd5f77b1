#!/usr/bin/env python3
"""tern-standin (bench/standin) with tern-bench, on 127.0.0.1, a free port, every wait bounded.

    standin_test.py BIN_DIR

Short tern-bench runs against the stand-in bench/bench-headroom measures with: pairs and fanin
in echo mode at QoS 0, 1 and 2 and over MQTT 3.1.1, pub in sink mode; each must receive (or
have acknowledged) every message, lose and duplicate nothing; tern-bench's publishers batch
their PUBLISH packets (its -v count of writes). Then what it refuses: a shared
subscription (the run fails with exit 1), packets out of place or malformed (the connection is
closed, the stand-in keeps serving), and SIGTERM ends it with its line of counts.
Exit 0 when every check passed, 1 when one failed.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1]
BENCH = os.path.join(BIN, "tern-bench")
STANDIN = os.path.join(BIN, "tern-standin")
WORK = tempfile.mkdtemp(prefix="tern-standin-test-")
FAILURES = []


def check(name, ok, detail=""):
    print(("PASS: " if ok else "FAIL: ") + name + ("" if ok else f"\n    {detail}"), flush=True)
    if not ok:
        FAILURES.append(name)
    return ok


def start(mode):
    log = open(os.path.join(WORK, f"standin-{mode}.log"), "w+")
    p = subprocess.Popen([STANDIN, "--port", "0", "--mode", mode], stderr=log)
    end = time.time() + 10
    while time.time() < end:
        log.seek(0)
        line = log.readline()
        if "listening on 127.0.0.1:" in line:
            return p, log, int(line.split("127.0.0.1:")[1].split(",")[0])
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    sys.exit(f"FAIL: tern-standin --mode {mode} did not start")


def bench(port, *args):
    cmd = [BENCH, *args, "-h", "127.0.0.1", "-p", str(port), "--json", "--time-limit", "60"]
    with tempfile.TemporaryFile("w+") as out:
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, timeout=90)
        out.seek(0)
        text = out.read()
    try:
        return r.returncode, json.loads(text.splitlines()[-1]), r.stderr
    except (IndexError, json.JSONDecodeError):
        return r.returncode, None, r.stderr


def run_ok(port, name, args, expected, key="unique"):
    code, d, err = bench(port, *args)
    if not check(f"{name}: exit 0 and a report", code == 0 and d is not None,
                 f"exit {code}: {err.strip()[:300]}"):
        return
    m = d["messages"]
    check(f"{name}: {expected} messages ({key})", m[key] == expected and m["expected"] in
          (expected, 0), json.dumps(m))
    check(f"{name}: nothing lost or duplicated",
          m["lost"] == 0 and m["duplicates"] == 0 and d["status"] == "ok", json.dumps(m))
    if key == "unique":
        check(f"{name}: latency of every delivery", d["latency_ns"]["count"] == expected,
              json.dumps(d["latency_ns"]))


def main():
    echo, echo_log, port = start("echo")
    try:
        for q in ("0", "1", "2"):
            run_ok(port, f"pairs QoS {q}",
                   ["pairs", "--clients", "4", "-q", q, "--count", "2000"], 8000)
        run_ok(port, "fanin QoS 1", ["fanin", "--publishers", "4", "-q", "1", "--count", "2000"],
               8000)
        run_ok(port, "pairs QoS 1 MQTT 3.1.1",
               ["pairs", "--clients", "2", "-q", "1", "-V", "311", "--count", "2000"], 4000)
        run_ok(port, "pairs QoS 1 two threads",
               ["pairs", "--clients", "4", "-q", "1", "--count", "2000", "--threads", "2"], 8000)
        # The receivers get each message at their subscription's QoS.
        run_ok(port, "fanout QoS 1", ["fanout", "--subscribers", "3", "-q", "1",
                                      "--count", "1000"], 3000)

        code, d, err = bench(port, "shared", "--subscribers", "2", "-q", "1", "--count", "10")
        check("shared: refused (exit 1, subscription refused)",
              code == 1 and "refused" in err + json.dumps(d or {}), f"exit {code}: {err[:300]}")

        # A PINGREQ before CONNECT, and a Remaining Length of five bytes.
        for name, data in (("PINGREQ before CONNECT", b"\xc0\x00"),
                           ("Remaining Length of 5 bytes", b"\x10\xff\xff\xff\xff\x7f")):
            with socket.create_connection(("127.0.0.1", port), 5) as s:
                s.settimeout(5)
                s.sendall(data)
                try:
                    closed = s.recv(10) == b""
                except ConnectionResetError:
                    closed = True
                except socket.timeout:
                    closed = False
            check(f"{name}: closed without an answer", closed)
        run_ok(port, "pairs QoS 1 after that", ["pairs", "--clients", "1", "-q", "1",
                                                "--count", "100"], 100)
    finally:
        echo.terminate()
        try:
            code = echo.wait(10)
        except subprocess.TimeoutExpired:
            echo.kill()
            code = None
    echo_log.seek(0)
    last = echo_log.read().strip().splitlines()[-1]
    check("SIGTERM: exit 0 with its counts", code == 0 and "publishes in" in last and
          "2 closed for errors" in last, f"exit {code}: {last}")

    sink, sink_log, port = start("sink")
    try:
        run_ok(port, "sink pub QoS 1", ["pub", "--publishers", "2", "-q", "1", "--count", "5000"],
               10000, key="acked")
        # A closed loop queues a batch while the previous one is written: far fewer writes
        # than messages (it was one write per message at QoS 0).
        code, d, err = bench(port, "pub", "--publishers", "2", "-q", "0", "--count", "20000",
                             "-v")
        line = [x for x in err.splitlines() if "PUBLISH packets in" in x]
        writes = int(line[0].split(" in ")[1].split()[0]) if line else -1
        check("sink pub QoS 0: 40000 published in at most 2500 writes",
              code == 0 and d["messages"]["published"] == 40000 and 0 < writes <= 2500,
              f"exit {code}: {line}")
        run_ok(port, "sink pub QoS 2", ["pub", "-q", "2", "--count", "2000"], 2000, key="acked")
        code, d, err = bench(port, "pairs", "--clients", "1", "-q", "1", "--count", "100",
                             "--drain", "0.5")
        check("sink pairs: nothing delivered, counted as lost (exit 4)",
              code == 4 and d is not None and d["messages"]["received"] == 0 and
              d["messages"]["lost"] == 100, f"exit {code}: {json.dumps((d or {}).get('messages'))}")
    finally:
        sink.terminate()
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()

    print(f"{len(FAILURES)} failed" if FAILURES else "all passed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
