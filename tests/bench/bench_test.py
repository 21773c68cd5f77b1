#!/usr/bin/env python3
"""tern-bench end to end, on 127.0.0.1 and free ports, every wait bounded.

    bench_test.py BIN_DIR tern-broker   short scenarios against tern-broker
    bench_test.py BIN_DIR mosquitto     the same against Mosquitto

Each run's --json output is checked against the tern-bench/1 schema (docs/bench.md) and
against what the scenario must have done (counts, zero loss where the QoS promises it);
thresholds that cannot be met must exit 4, runtime failures 1, usage errors 2.
Exit 0 when every check passed, 1 when one failed, 77 (skipped) when mosquitto is missing.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
MODE = sys.argv[2]
BENCH = os.path.join(BIN, "tern-bench")
MOSQUITTO = "/usr/sbin/mosquitto"
WORK = tempfile.mkdtemp(prefix="tern-bench-test-")
PROCS = []
FAILURES = []
EXIT_THRESHOLD = 4
# Built with ASan/UBSan (tests/bench/CMakeLists.txt): the sanitizer's allocator, not glibc's,
# with freed memory held in quarantine, so tern-bench's memory use is not what it is checked for.
SANITIZED = os.environ.get("TERN_SANITIZED") == "1"


def check(name, ok, detail=""):
    print(("PASS: " if ok else "FAIL: ") + name + ("" if ok else f"\n    {detail}"), flush=True)
    if not ok:
        FAILURES.append(name)
    return ok


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from harness import free_port  # noqa: E402  (distinct ports within one test)


def wait_port(port, seconds=10):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_broker():
    if MODE == "mosquitto":
        if not os.path.exists(MOSQUITTO):
            print("SKIP: no mosquitto")
            sys.exit(77)
        port = free_port()
        conf = os.path.join(WORK, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        log = open(os.path.join(WORK, "mosquitto.log"), "w")
        p = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        PROCS.append(p)
        if not wait_port(port):
            sys.exit("FAIL: mosquitto did not start")
        return port
    log = open(os.path.join(WORK, "broker.log"), "w+")
    # Packets as large as Mosquitto takes by default (large_payloads() sends 1 MiB).
    conf = os.path.join(WORK, "tern.conf")
    with open(conf, "w") as f:
        f.write("listener 0 127.0.0.1\nallow_anonymous true\nmax_packet_size 268435455\n")
    p = subprocess.Popen([os.path.join(BIN, "tern-broker"), "-c", conf], stderr=log)
    PROCS.append(p)
    end = time.time() + 10
    while time.time() < end:
        log.seek(0)
        line = log.readline()
        if "listening on 127.0.0.1:" in line:
            return int(line.split("127.0.0.1:")[1].split(",")[0].split()[0])
        time.sleep(0.05)
    sys.exit("FAIL: tern-broker did not report its port")


def bench(port, args, timeout=120):
    """Runs tern-bench with --json; returns (exit status, parsed JSON or None, stderr)."""
    cmd = [BENCH] + args[:1] + ["-h", "127.0.0.1", "-p", str(port), "--json"] + args[1:]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, "timed out: " + " ".join(cmd)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = None
    return p.returncode, doc, p.stderr


PERCENTILE_KEYS = ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"]


def schema_errors(d):
    """What in `d` does not follow the tern-bench/1 schema of docs/bench.md."""
    errors = []

    def need(obj, key, types, where):
        if not isinstance(obj, dict) or key not in obj:
            errors.append(f"{where}.{key} missing")
            return None
        if not isinstance(obj[key], types) or isinstance(obj[key], bool) != (types is bool):
            errors.append(f"{where}.{key} has type {type(obj[key]).__name__}")
            return None
        return obj[key]

    num = (int, float)
    if need(d, "schema", str, "") != "tern-bench/1":
        errors.append("schema is not tern-bench/1")
    for key in ("tool", "version", "scenario", "status"):
        need(d, key, str, "")
    if d.get("status") not in ("ok", "threshold", "error"):
        errors.append(f"status {d.get('status')!r}")
    params = need(d, "parameters", dict, "") or {}
    for key in ("host", "protocol_version", "topic", "filter"):
        need(params, key, str, "parameters")
    for key in ("port", "qos", "publishers", "subscribers", "clients", "size", "count",
                "inflight", "keep_alive_s", "threads"):
        need(params, key, int, "parameters")
    for key in ("duration_s", "warmup_s", "rate", "connect_rate", "hold_s", "drain_s",
                "time_limit_s"):
        need(params, key, num, "parameters")
    seconds = need(d, "seconds", dict, "") or {}
    for key in ("wall", "connect", "publish", "ack", "receive"):
        need(seconds, key, num, "seconds")
    conns = need(d, "connections", dict, "") or {}
    for key in ("attempted", "succeeded", "failed"):
        need(conns, key, int, "connections")
    need(conns, "per_second", num, "connections")
    msgs = need(d, "messages", dict, "") or {}
    for key in ("published", "acked", "refused", "expected", "received", "unique", "lost",
                "duplicates", "out_of_order", "foreign", "measured_published", "measured_acked",
                "measured_received"):
        need(msgs, key, int, "messages")
    need(msgs, "loss_percent", num, "messages")
    rates = need(d, "rates", dict, "") or {}
    for key in ("headline", "published_msg_s", "published_bytes_s", "acked_msg_s",
                "acked_bytes_s", "received_msg_s", "received_bytes_s"):
        need(rates, key, num, "rates")
    for name in ("latency_ns", "ack_latency_ns"):
        pct = need(d, name, dict, "") or {}
        for key in PERCENTILE_KEYS:
            need(pct, key, num, name)
        values = [pct.get(k, 0) for k in ("min", "p50", "p90", "p99", "p99_9", "p99_99", "max")]
        if values != sorted(values):
            errors.append(f"{name} percentiles are not monotonic: {values}")
    need(conns, "latency_ns", dict, "connections")
    hists = need(d, "histograms", dict, "") or {}
    for name in ("latency", "ack_latency", "connect_latency"):
        h = need(hists, name, dict, "histograms") or {}
        buckets = need(h, "buckets", list, f"histograms.{name}") or []
        if sum(b[1] for b in buckets) != h.get("count"):
            errors.append(f"histograms.{name}: bucket counts do not add up to count")
        if [b[0] for b in buckets] != sorted(b[0] for b in buckets):
            errors.append(f"histograms.{name}: buckets not in order")
    if (d.get("latency_ns") or {}).get("count") != (hists.get("latency") or {}).get("count"):
        errors.append("latency_ns.count differs from the histogram's")
    for p in need(d, "per_publisher", list, "") or []:
        for key in ("index", "published", "acked", "expected", "received", "lost", "duplicates",
                    "out_of_order"):
            need(p, key, int, "per_publisher[]")
    cpu = need(d, "cpu", dict, "") or {}
    for key in ("user_s", "system_s", "utilization"):
        need(cpu, key, num, "cpu")
    th = need(d, "thresholds", dict, "") or {}
    need(th, "limits", dict, "thresholds")
    need(th, "violations", list, "thresholds")
    need(d, "timed_out", bool, "")
    need(d, "errors", list, "")
    return errors


def run_ok(port, name, args, expect):
    """A scenario that must succeed: exit 0, valid JSON and the expected counts."""
    code, d, err = bench(port, args)
    if not check(f"{name}: exit 0", code == 0, f"exit {code}, stderr: {err.strip()[:500]}"):
        return None
    if not check(f"{name}: JSON output", d is not None):
        return None
    errors = schema_errors(d)
    check(f"{name}: schema tern-bench/1", not errors, "; ".join(errors[:10]))
    m = d["messages"]
    for key, want in expect.items():
        got = m.get(key) if key in m else d["connections"].get(key)
        check(f"{name}: {key} == {want}", got == want, f"got {got}: {json.dumps(m)}")
    check(f"{name}: status ok, no errors", d["status"] == "ok" and not d["errors"],
          f"{d['status']} {d['errors']}")
    return d


def scenarios(port):
    # Publishers only: every message acknowledged, publish-to-ack latency recorded.
    d = run_ok(port, "pub q1", ["pub", "-q", "1", "--publishers", "2", "--count", "2000"],
               {"published": 4000, "acked": 4000})
    if d:
        check("pub q1: ack latency per message", d["ack_latency_ns"]["count"] == 4000)
        check("pub q1: headline rate is the ack rate",
              d["rates"]["headline"] == d["rates"]["acked_msg_s"] > 0)
        check("pub q1: bench CPU time reported",
              d["cpu"]["user_s"] + d["cpu"]["system_s"] > 0, json.dumps(d["cpu"]))
    # QoS 1 and 2 runs are paced so that no broker queue overflows even on a loaded machine:
# loss would fail the run.
    d = run_ok(port, "fanin q1", ["fanin", "-q", "1", "--publishers", "3", "--count", "1000",
                                  "--rate", "6000"],
               {"published": 3000, "expected": 3000, "unique": 3000, "lost": 0,
                "duplicates": 0})
    if d:
        check("fanin q1: end-to-end latency per delivery", d["latency_ns"]["count"] == 3000)
        check("fanin q1: per-publisher lines",
              [p["received"] for p in d["per_publisher"]] == [1000, 1000, 1000],
              json.dumps(d["per_publisher"]))
        # 1000 messages per publisher at 2000/s each: about half a second of publishing.
        check("fanin q1: --rate paces the run", 0.4 < d["seconds"]["publish"] < 5,
              str(d["seconds"]))
    d = run_ok(port, "fanout q1", ["fanout", "-q", "1", "--subscribers", "4", "--count", "1000",
                                   "--rate", "4000"],
               {"published": 1000, "expected": 4000, "unique": 4000, "lost": 0})
    run_ok(port, "pairs q2 3.1.1", ["pairs", "-q", "2", "-V", "311", "--clients", "3",
                                    "--count", "1000", "--rate", "6000"],
           {"published": 3000, "expected": 3000, "unique": 3000, "lost": 0, "duplicates": 0})
    hgrm = os.path.join(WORK, "pairs.hgrm")
    d = run_ok(port, "pairs q0", ["pairs", "--clients", "2", "--count", "1000", "--size", "200",
                                  "--histogram", hgrm],
               {"published": 2000, "expected": 2000})
    if d:
        text = open(hgrm).read() if os.path.exists(hgrm) else ""
        check("--histogram writes the distribution",
              "Percentile" in text and "Total count    =         2000]" in text, text[-300:])
    if d:
        check("pairs q0: bytes/s is msg/s x size",
              abs(d["rates"]["received_bytes_s"] - 200 * d["rates"]["received_msg_s"]) < 1e-3 *
              d["rates"]["received_bytes_s"] + 1)
    # 16 bytes: the compact header counts loss, duplicates and order, but has no send time.
    d = run_ok(port, "pairs q1 16 B", ["pairs", "-q", "1", "--clients", "2", "--count", "500",
                                       "--size", "16"],
               {"published": 1000, "expected": 1000, "unique": 1000, "lost": 0,
                "duplicates": 0})
    if d:
        check("pairs 16 B: bytes/s is msg/s x 16",
              abs(d["rates"]["received_bytes_s"] - 16 * d["rates"]["received_msg_s"]) < 1e-3 *
              d["rates"]["received_bytes_s"] + 1)
        check("pairs 16 B: no end-to-end latency without a send time",
              d["latency_ns"].get("count", 0) == 0, json.dumps(d["latency_ns"]))
    # %c: each publisher's own client id in its topic; a pairs subscriber follows its
    # publisher, a fanin subscriber gets '+' for that level.
    d = run_ok(port, "pairs %c", ["pairs", "-q", "1", "--clients", "2", "--count", "500",
                                  "--rate", "4000", "-t", "tern-bench/dev/%c/up"],
               {"published": 1000, "expected": 1000, "unique": 1000, "lost": 0})
    run_ok(port, "fanin %c", ["fanin", "-q", "1", "--publishers", "2", "--count", "500",
                              "--rate", "4000", "-t", "tern-bench/dev/%c/up"],
           {"published": 1000, "expected": 1000, "unique": 1000, "lost": 0})
    # A shared subscription group of 3: every message reaches the group once, each member
    # gets a share.
    d = run_ok(port, "shared q1", ["shared", "-q", "1", "--subscribers", "3", "--count", "3000",
                                   "--rate", "6000"],
               {"published": 3000, "expected": 3000, "unique": 3000, "lost": 0,
                "duplicates": 0})
    if d:
        shares = d.get("shared", {}).get("received_per_subscriber", [])
        check("shared q1: three members, each with a share, adding up to every message",
              len(shares) == 3 and all(n > 0 for n in shares) and sum(shares) == 3000,
              json.dumps(d.get("shared")))
    # Request/response: 3 requesters, 2 responders sharing the requests; every request answered
    # once on its Response Topic, the round trip measured per response.
    d = run_ok(port, "reqresp q1", ["reqresp", "-q", "1", "--publishers", "3",
                                    "--subscribers", "2", "--count", "1000", "--rate", "3000"],
               {"published": 3000, "expected": 3000, "unique": 3000, "lost": 0,
                "duplicates": 0})
    if d:
        answered = d.get("reqresp", {}).get("answered_per_responder", [])
        check("reqresp q1: both responders answered, 3000 in all",
              len(answered) == 2 and all(n > 0 for n in answered) and sum(answered) == 3000,
              json.dumps(d.get("reqresp")))
        check("reqresp q1: a round-trip latency per response", d["latency_ns"]["count"] == 3000)
    run_ok(port, "conn", ["conn", "--clients", "50", "--hold", "0.2", "--connect-rate", "500"],
           {"attempted": 50, "succeeded": 50, "failed": 0})
    # Warm-up: messages stamped in the first 0.3 s are left out of the latency figures.
    d = run_ok(port, "pub warmup", ["pub", "-q", "1", "--rate", "2000", "--duration", "0.8",
                                    "--warmup", "0.3"], {})
    if d:
        m = d["messages"]
        check("pub warmup: measured < published",
              0 < m["measured_acked"] < m["published"], json.dumps(m))
        check("pub warmup: latency only of measured messages",
              d["ack_latency_ns"]["count"] == m["measured_acked"])


def large_payloads(port):
    """1 MiB payloads at QoS 1 over 4 pairs: nothing lost, and the bench's memory stays
    bounded and reused. A publisher's output is bounded in bytes (1 MiB per batch), not only
    in packets: with 64 packets per batch it held two buffers of up to 40 MiB here (a peak
    RSS of 200 MiB). Freed heap is kept (tools/bench/main.cpp): glibc handing it back made
    the pages of most messages fresh again (240 page faults per message; 33 when kept)."""
    n = 160
    cmd = [BENCH, "pairs", "-h", "127.0.0.1", "-p", str(port), "--json", "--clients", "4",
           "-q", "1", "--size", "1048576", "--count", str(n // 4), "--time-limit", "60"]
    out = tempfile.TemporaryFile("w+")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True)
    peak_kib, faults, end = 0, 0, time.time() + 90
    while p.poll() is None and time.time() < end:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
            with open(f"/proc/{p.pid}/stat") as f:
                faults = max(faults, int(f.read().rsplit(")", 1)[1].split()[7]))  # minflt
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.02)
    if p.poll() is None:
        p.kill()
        p.wait()
    out.seek(0)
    try:
        m = json.loads(out.read())["messages"]
    except (ValueError, KeyError):
        m = {}
    check("pairs 1 MiB q1: exit 0", p.returncode == 0, f"exit {p.returncode}")
    check("pairs 1 MiB q1: all delivered once",
          m.get("unique") == n and m.get("lost") == 0 and m.get("duplicates") == 0, str(m))
    if SANITIZED:
        return
    check("pairs 1 MiB q1: tern-bench peak RSS under 64 MiB", 0 < peak_kib < 64 * 1024,
          f"{peak_kib} KiB")
    check("pairs 1 MiB q1: under 100 page faults per message", 0 < faults < 100 * n,
          f"{faults} minor faults for {n} messages")


def threads(port):
    """--threads 2: the clients on two event loops, the figures added up after the run."""
    runs = [
        ("pairs", ["pairs", "-q", "1", "--clients", "4", "--count", "1000", "--rate", "8000"],
         {"published": 4000, "expected": 4000, "unique": 4000, "received": 4000}),
        ("fanin", ["fanin", "-q", "1", "--publishers", "3", "--count", "1000", "--rate", "6000"],
         {"published": 3000, "expected": 3000, "unique": 3000, "received": 3000}),
        ("fanout", ["fanout", "-q", "1", "--subscribers", "4", "--count", "1000", "--rate",
                    "4000"],
         {"published": 1000, "expected": 4000, "unique": 4000, "received": 4000}),
        # The group's members on both loops: each message once over the group.
        ("shared", ["shared", "-q", "1", "--subscribers", "3", "--count", "2000", "--rate",
                    "6000"],
         {"published": 2000, "expected": 2000, "unique": 2000}),
    ]
    for name, args, expect in runs:
        expect = dict(expect, lost=0, duplicates=0, acked=expect["published"])
        d = run_ok(port, f"{name} q1 --threads 2", args + ["--threads", "2"], expect)
        if not d:
            continue
        check(f"{name} --threads 2: parameters.threads is 2", d["parameters"]["threads"] == 2,
              json.dumps(d["parameters"]))
        check(f"{name} --threads 2: a latency per delivery, an ack latency per message",
              d["latency_ns"]["count"] == expect["unique"] and
              d["ack_latency_ns"]["count"] == expect["published"],
              f"{d['latency_ns']['count']} {d['ack_latency_ns']['count']}")
        check(f"{name} --threads 2: every publisher complete",
              all(p["lost"] == 0 and p["duplicates"] == 0 and p["acked"] == p["published"]
                  for p in d["per_publisher"]), json.dumps(d["per_publisher"]))
        check(f"{name} --threads 2: connect latency of every connection",
              d["connections"]["latency_ns"]["count"] == d["connections"]["attempted"] ==
              d["connections"]["succeeded"], json.dumps(d["connections"]))
        if name == "shared":
            shares = d.get("shared", {}).get("received_per_subscriber", [])
            check("shared --threads 2: the members' shares add up", sum(shares) == 2000,
                  json.dumps(d.get("shared")))
    # 0: one loop per core, never more than the connections.
    d = run_ok(port, "pub --threads 0", ["pub", "-q", "1", "--publishers", "2", "--count", "500",
                                         "--threads", "0"], {"published": 1000, "acked": 1000})
    if d:
        check("--threads 0: between 1 and the 2 connections",
              d["parameters"]["threads"] in (1, 2) and
              d["parameters"]["threads"] == min(2, os.cpu_count() or 1),
              json.dumps(d["parameters"]))
    # The text summary says how many threads the CPU time was spent on.
    p = subprocess.run([BENCH, "pairs", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                        "--clients", "2", "--count", "200", "--threads", "2"],
                       capture_output=True, text=True, timeout=60)
    check("--threads 2: text summary", p.returncode == 0 and "on 2 threads" in p.stdout,
          f"{p.returncode}: {p.stdout}{p.stderr}")
    p = subprocess.run([BENCH, "pairs", "--threads", "-1"], capture_output=True, text=True,
                       timeout=20)
    check("usage error exits 2: --threads -1", p.returncode == 2, f"{p.returncode}: {p.stderr}")


def sub_scenario(port):
    """tern-bench sub in one process counts what tern-bench pub in another sends."""
    err_file = open(os.path.join(WORK, "sub.err"), "w+")
    sub = subprocess.Popen([BENCH, "sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                            "--subscribers", "2", "--count", "1500", "--json", "-v",
                            "--time-limit", "50",
                            "--filter", "tern-bench/pub/#"],
                           stdout=subprocess.PIPE, stderr=err_file, text=True)
    PROCS.append(sub)
    end, seen = time.time() + 20, ""
    while time.time() < end and "subscribed" not in seen and sub.poll() is None:
        err_file.seek(0)
        seen = err_file.read()
        time.sleep(0.05)
    check("sub: subscribed", "subscribed" in seen, seen)
    # Paced: a broker drops QoS 1 messages past a subscriber's queue limit (1000 by default
    # in both brokers), which a loaded machine could otherwise reach.
    code, _, err = bench(port, ["pub", "-q", "1", "--count", "1500", "--rate", "5000"])
    check("sub: the publisher ran", code == 0, err)
    try:
        out, _ = sub.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        sub.kill()
        out, _ = sub.communicate()
    err_file.seek(0)
    check("sub: exit 0", sub.returncode == 0, f"exit {sub.returncode}: {err_file.read()[-2000:]}")
    try:
        d = json.loads(out)
    except ValueError:
        check("sub: JSON output", False, out[:300])
        return
    errors = schema_errors(d)
    check("sub: schema tern-bench/1", not errors, "; ".join(errors[:10]))
    m = d["messages"]
    check("sub: both subscribers got all 1500", m["unique"] == 3000 and m["lost"] == 0,
          json.dumps(m))
    check("sub: latency from another process's stamps", d["latency_ns"]["count"] == 3000)


def per_client_rate(port):
    # --rate-per-client: each of 4 publishers at 500/s for 2 s, 2,000/s in all.
    d = run_ok(port, "pairs --rate-per-client", ["pairs", "-q", "1", "--clients", "4",
                                                 "--rate-per-client", "500", "--duration", "2"],
               {"lost": 0, "duplicates": 0})
    if d:
        p = d["parameters"]
        check("--rate-per-client: parameters.rate is the total",
              p["rate"] == 2000 and p["rate_per_client"] == 500, json.dumps(p))
        sent = [x["published"] for x in d["per_publisher"]]
        # Paced by the clock, the run ends at 2 s: a publisher a few sends behind its
        # schedule then (a loaded machine: 997 seen) stops there. A shared total rate would
        # give each about 500.
        check("--rate-per-client: each publisher sent its 1,000 (2 s at 500/s, 2% late at most)",
              all(980 <= n <= 1001 for n in sent), str(sent))
        rate = d["rates"]["published_msg_s"]
        check("--rate-per-client: about 2,000 published a second in all",
              1800 <= rate <= 2200, f"{rate:.0f}/s, {d['seconds']}")
    for args in (["pairs", "--rate", "100", "--rate-per-client", "10"],
                 ["sub", "--count", "5", "--rate-per-client", "10"]):
        p = subprocess.run([BENCH] + args, capture_output=True, text=True, timeout=20)
        check("usage error exits 2: " + " ".join(args), p.returncode == 2,
              f"{p.returncode}: {p.stderr}")


def failures(port):
    # An impossible rate: the run works, the threshold fails with status 4 and says which.
    code, d, err = bench(port, ["pub", "--count", "500", "--min-rate", "1e12"])
    check("--min-rate 1e12 exits 4", code == EXIT_THRESHOLD, f"exit {code}: {err}")
    check("--min-rate 1e12 names the threshold", "min-rate" in err, err)
    if d:
        check("--min-rate: status threshold",
              d["status"] == "threshold" and d["thresholds"]["violations"][0]["name"] == "min-rate",
              json.dumps(d["thresholds"]))
        check("--min-rate: limits echoed", d["thresholds"]["limits"].get("min_rate") == 1e12)
    code, d, err = bench(port, ["pairs", "--clients", "1", "--count", "500", "--max-p99", "0"])
    check("--max-p99 0 exits 4", code == EXIT_THRESHOLD and "max-p99" in err, f"{code}: {err}")
    code, d, err = bench(port, ["pairs", "--clients", "1", "--count", "500", "--max-p99",
                                "60000", "--min-rate", "1", "--max-loss", "100"])
    check("thresholds that hold exit 0", code == 0, f"{code}: {err}")
    # Nothing listening: a runtime error, status 1, reported in the JSON too.
    dead = free_port()
    code, d, err = bench(dead, ["pub", "--count", "10"])
    check("refused connection exits 1", code == 1, f"{code}: {err}")
    check("refused connection: status error", d is not None and d["status"] == "error" and
          d["errors"], json.dumps(d)[:300] if d else "no JSON")
    for args in (["pub", "--size", "10"], ["pub", "--size", "15"],
                 ["pairs", "--size", "20", "--duration", "2", "--warmup", "1"],
                 ["fanin", "--clients", "2"], ["sub"],
                 ["pub", "--count", "5", "--duration", "1"], ["nonsense"],
                 ["shared", "--group", "a/b"], ["pairs", "--group", "g"],
                 ["reqresp", "-V", "311"],
                 ["pub", "-t", "a/+/b"], ["conn", "--source", "not-an-address"]):
        p = subprocess.run([BENCH] + args, capture_output=True, text=True, timeout=20)
        check("usage error exits 2: " + " ".join(args), p.returncode == 2,
              f"{p.returncode}: {p.stderr}")


def connack_standin(peers, connections, seconds=20):
    """A listener on 127.0.0.1 that answers each CONNECT with an MQTT 5.0 CONNACK (success)
    and records the peer address of each connection. Returns (port, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(seconds)

    def serve(conn):
        with conn:
            conn.settimeout(seconds)
            data = b""
            try:
                while len(data) < 2 or len(data) < 2 + data[1]:  # CONNECT under 128 bytes
                    chunk = conn.recv(512)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(bytes([0x20, 0x03, 0x00, 0x00, 0x00]))
                while conn.recv(512):  # until the bench closes it
                    pass
            except OSError:
                pass

    def accept_all():
        workers = []
        with srv:
            for _ in range(connections):
                try:
                    conn, peer = srv.accept()
                except OSError:
                    break
                peers.append(peer[0])
                w = threading.Thread(target=serve, args=(conn,), daemon=True)
                w.start()
                workers.append(w)
        for w in workers:
            w.join(seconds)

    t = threading.Thread(target=accept_all, daemon=True)
    t.start()
    return srv.getsockname()[1], t


def sources():
    """--source: the connections come from the given loopback addresses, taken in turn."""
    peers = []
    port, t = connack_standin(peers, 4)
    d = run_ok(port, "conn --source", ["conn", "--clients", "4", "--hold", "0.2", "--source",
                                       "127.0.0.2,127.0.0.3"],
               {"attempted": 4, "succeeded": 4, "failed": 0})
    t.join(20)
    check("conn --source: two connections from each address",
          sorted(peers) == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"], str(peers))
    # An address of the other family than the broker's: a runtime error naming it.
    code, d, err = bench(free_port(), ["conn", "--clients", "1", "--source", "::1"])
    check("--source of another family exits 1", code == 1 and "--source ::1" in err,
          f"{code}: {err}")


def run_to_file(port, name, args):
    """Starts a --json run writing to WORK/name.json; returns the process."""
    out = open(os.path.join(WORK, name + ".json"), "w")
    p = subprocess.Popen([BENCH] + args[:1] + ["-h", "127.0.0.1", "-p", str(port), "--json"] +
                         args[1:], stdout=out, stderr=subprocess.DEVNULL)
    PROCS.append(p)
    return p


def merge_and_baseline(port):
    """Two runs at once (as from two machines) merged; a baseline that holds and one that not."""
    files = [os.path.join(WORK, n + ".json") for n in ("m1", "m2")]
    procs = [run_to_file(port, n, ["pairs", "-q", "1", "--clients", "2", "--count", "800",
                                   "--rate", "4000", "-t", f"tern-bench/{n}/%i"])
             for n in ("m1", "m2")]
    codes = [p.wait(120) for p in procs]
    if not check("merge: both runs exit 0", codes == [0, 0], str(codes)):
        return
    runs = [json.load(open(f)) for f in files]
    p = subprocess.run([BENCH, "merge", "--json"] + files, capture_output=True, text=True,
                       timeout=30)
    check("merge: exit 0", p.returncode == 0, f"{p.returncode}: {p.stderr}")
    try:
        m = json.loads(p.stdout)
    except ValueError:
        check("merge: JSON output", False, p.stdout[:300])
        return
    errors = schema_errors(m)
    check("merge: schema tern-bench/1", not errors, "; ".join(errors[:10]))
    check("merge: runs and files", m.get("merged") == {"runs": 2, "files": files},
          json.dumps(m.get("merged")))
    check("merge: deliveries add up", m["messages"]["unique"] == 3200 ==
          sum(r["messages"]["unique"] for r in runs), json.dumps(m["messages"]))
    check("merge: latency histogram counts add up", m["latency_ns"]["count"] == 3200)
    check("merge: rates add up", abs(m["rates"]["headline"] -
                                     sum(r["rates"]["headline"] for r in runs)) < 1e-6 *
          m["rates"]["headline"] + 1e-9)
    lo = min(r["latency_ns"]["p50"] for r in runs)
    hi = max(r["latency_ns"]["p50"] for r in runs)
    check("merge: the merged p50 lies between the runs' p50s", lo <= m["latency_ns"]["p50"] <= hi,
          f"{lo} {m['latency_ns']['p50']} {hi}")
    check("merge: publishers of both runs", len(m["per_publisher"]) == 4)
    p = subprocess.run([BENCH, "merge"] + files, capture_output=True, text=True, timeout=30)
    check("merge: text summary", p.returncode == 0 and "merge of 2 pairs runs" in p.stdout,
          p.stdout + p.stderr)
    p = subprocess.run([BENCH, "merge", "--min-rate", "1e12"] + files, capture_output=True,
                       text=True, timeout=30)
    check("merge: a threshold on the merged rate exits 4",
          p.returncode == EXIT_THRESHOLD and "min-rate" in p.stderr, f"{p.returncode}: {p.stderr}")

    # Baselines: the run itself within a generous allowance; a doctored one 100x faster.
    base = files[0]
    args = ["pairs", "-q", "1", "--clients", "2", "--count", "800", "--rate", "4000"]
    # Latency on a loaded machine varies a hundredfold between runs: an allowance that holds.
    code, d, err = bench(port, args + ["--baseline", base, "--max-regression", "1e6"])
    check("--baseline within --max-regression exits 0", code == 0, f"{code}: {err}")
    if d:
        check("--baseline: limits echoed", d["thresholds"]["limits"].get("baseline", {})
              .get("file") == base, json.dumps(d["thresholds"]))
    fast = dict(runs[0])
    fast["rates"] = dict(fast["rates"], headline=runs[0]["rates"]["headline"] * 100)
    fast_file = os.path.join(WORK, "fast.json")
    json.dump(fast, open(fast_file, "w"))
    code, d, err = bench(port, args + ["--baseline", fast_file])
    check("--baseline 100x faster exits 4 naming regression-rate",
          code == EXIT_THRESHOLD and "regression-rate" in err, f"{code}: {err}")
    for bad in (["pub", "--count", "5", "--baseline", base],
                ["pairs", "--count", "5", "--max-regression", "5"],
                ["pairs", "--count", "5", "--baseline", os.path.join(WORK, "missing.json")],
                ["merge", base, os.path.join(WORK, "missing.json")],
                ["merge"],
                ["pairs", base]):
        p = subprocess.run([BENCH] + bad, capture_output=True, text=True, timeout=20)
        check("usage error exits 2: " + " ".join(os.path.basename(a) for a in bad),
              p.returncode == 2, f"{p.returncode}: {p.stderr}")


def main():
    port = start_broker()
    try:
        scenarios(port)
        large_payloads(port)
        threads(port)
        per_client_rate(port)
        sub_scenario(port)
        failures(port)
        merge_and_baseline(port)
        sources()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    print(f"{len(FAILURES)} failure(s)" + (": " + ", ".join(FAILURES) if FAILURES else ""))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
