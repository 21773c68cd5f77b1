#!/usr/bin/env python3
"""Interop, tern-broker back-pressure: 4 fast QoS 1 publishers (paho-mqtt) feed one slow subscriber.

Without back-pressure the broker acknowledges the publishers at full speed and drops what
does not fit in the subscriber's queue (max_queued_messages, 1000). With it, the
publishers are paused while the subscriber is congested: every message must arrive, and
the broker's memory stays bounded. Then a crossed run: two slow subscribers publishing to each
other, with a fast publisher next to each: nothing lost, no cycle of pauses. Usage:
paho_backpressure_test.py TERN_BROKER

With TERN_BROKER_THREADS=N (CTest's interop.paho_backpressure.threads2) the broker runs
`threads N` and the publishers' client ids are picked so that all but one live on shards other
than the subscriber's: their messages reach it through the shards' channels, and the slow
subscriber must pause them across shards as it does on its own loop.
"""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402

try:
    import paho.mqtt.client as mqtt
except ImportError:
    print("SKIP: paho-mqtt not installed")
    sys.exit(77)

HOST = "127.0.0.1"
PUBLISHERS = 4
PER_PUBLISHER = 3000
SLOW_DELAY = 0.0004  # seconds the subscriber spends on each message
DEADLINE = 100.0  # the whole exchange, seconds
# What the broker may grow by while the messages flow (its RSS at start is not counted: an
# ASan build of tern-broker, which links the bridge runner for `connection` blocks, starts
# at about 112 MB, 98 MB before; a release build at about 7 MB and grows by about 1 MB here).
MAX_GROWTH_KB = 52 * 1024


THREADS = int(os.environ.get("TERN_BROKER_THREADS") or len(os.sched_getaffinity(0)))


def shard_of(cid):
    return harness.shard_of(cid, THREADS)


def id_on(shard, prefix):
    return harness.ids_on(shard, prefix, THREADS)[0]


def publisher_ids():
    """One publisher on the subscriber's shard, the others on the other shards in turn."""
    home = shard_of("slow-sub")
    want = [home] + [(home + 1 + i % max(THREADS - 1, 1)) % THREADS for i in range(PUBLISHERS - 1)]
    return [id_on(shard, f"fast-pub-{n}-") for n, shard in enumerate(want)]


def connect_fast(port, cid):
    """A QoS 1 publisher: 50 in flight, nothing queued in the client."""
    c = mqtt.Client(client_id=cid, clean_session=True)
    c.max_inflight_messages_set(50)
    c.max_queued_messages_set(0)
    c.connect(HOST, port, keepalive=60)
    c.loop_start()
    return c


def publish_all(c, plan, what, errors):
    """Publishes (topic, payload) pairs at QoS 1; an error when one is not acknowledged in time."""
    infos = [c.publish(topic, payload, qos=1) for topic, payload in plan]
    end = time.monotonic() + DEADLINE
    for info in infos:
        while not info.is_published() and time.monotonic() < end:
            info.wait_for_publish(0.5)
        if not info.is_published():
            errors.append(f"{what}: not acknowledged in time")
            return


def start_broker(binary, log, work):
    args = [binary, "-p", "0", "-v"]
    if os.environ.get("TERN_BROKER_THREADS"):  # CTest: 1, or 2 for the .threads2 run
        conf = os.path.join(work, "threads.conf")
        with open(conf, "w") as f:
            f.write(f"threads {THREADS}\n" + ("sys_interval 0\n" if THREADS > 1 else ""))
        args += ["-c", conf]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(log.name) as f:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.readline())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("broker did not report its port")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    binary = sys.argv[1]
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log, \
            tempfile.TemporaryDirectory() as work:
        proc, port = start_broker(binary, log, work)
        try:
            failed = run(proc, port) + crossed(port)
            print(f"{2 - failed} passed, {failed} failed")
            if failed:
                log.seek(0)
                print("broker log (last 40 lines):")
                print("".join(log.readlines()[-40:]), end="")
            return 1 if failed else 0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(proc, port):
    base = rss_kb(proc.pid)  # before any client
    got = set()
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(c, u, m):
        time.sleep(SLOW_DELAY)  # slow: the socket is not read meanwhile
        with lock:
            got.add(m.payload)

    sub = mqtt.Client(client_id="slow-sub", clean_session=True)
    sub.on_message = on_message
    sub.on_subscribe = lambda c, u, mid, granted: subscribed.set()
    sub.connect(HOST, port, keepalive=60)
    sub.loop_start()
    sub.subscribe("bp/t", qos=1)
    if not subscribed.wait(10):
        print("FAIL: no SUBACK")
        return 1

    peak = [0]
    errors = []

    ids = publisher_ids()

    def publisher(n):
        c = connect_fast(port, ids[n])
        publish_all(c, [("bp/t", f"{n}-{i}".encode()) for i in range(PER_PUBLISHER)],
                    f"publisher {n}", errors)
        c.disconnect()
        c.loop_stop()

    start = time.monotonic()
    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(PUBLISHERS)]
    for t in threads:
        t.start()
    total = PUBLISHERS * PER_PUBLISHER
    end = start + DEADLINE
    while time.monotonic() < end:
        peak[0] = max(peak[0], rss_kb(proc.pid))
        with lock:
            if len(got) >= total:
                break
        time.sleep(0.1)
    for t in threads:
        t.join(DEADLINE)
    elapsed = time.monotonic() - start
    sub.disconnect()
    sub.loop_stop()

    failures = list(errors)
    print(f"received {len(got)}/{total} in {elapsed:.1f}s, broker peak RSS {peak[0]} kB "
          f"(at start {base} kB)")
    if len(got) != total:
        failures.append(f"lost {total - len(got)} of {total} QoS 1 messages")
    if peak[0] - base > MAX_GROWTH_KB:
        failures.append(f"broker RSS grew by {peak[0] - base} kB (from {base} kB), over "
                        f"{MAX_GROWTH_KB} kB")
    for f in failures:
        print("FAIL: " + f)
    if not failures:
        print("PASS: nothing lost, memory bounded")
    return 1 if failures else 0


CROSSED = 3000  # messages each client of the crossed run publishes
CROSSED_FAST = 2  # fast publishers next to each slow client


def crossed(port):
    """Two slow subscribers that also publish to each other (on two shards with `threads`),
    and fast publishers beside each, feeding the other one: each slow client holds up the other's
    shard while its own publishes are held up there. Nothing may be lost and nothing may wait
    forever (a cycle of pauses would leave the messages unacknowledged until the deadline)."""
    shards = [0, 1 % THREADS]
    got = [set(), set()]
    lock = threading.Lock()
    errors = []
    slow = []
    for k in range(2):
        subscribed = threading.Event()

        def on_message(c, u, m, k=k):
            time.sleep(SLOW_DELAY)
            with lock:
                got[k].add(m.payload)

        c = connect_fast(port, id_on(shards[k], f"crossed-slow-{k}-"))
        c.on_message = on_message
        c.on_subscribe = lambda c, u, mid, granted, e=subscribed: e.set()
        c.subscribe(f"bp/x/{k}", qos=1)
        if not subscribed.wait(10):
            print("FAIL: crossed: no SUBACK")
            return 1
        slow.append(c)

    def fast(k, j):
        c = connect_fast(port, id_on(shards[k], f"crossed-fast-{k}-{j}-"))
        publish_all(c, [(f"bp/x/{1 - k}", f"f{k}-{j}-{i}".encode()) for i in range(CROSSED)],
                    f"crossed: fast {k}-{j}", errors)
        c.disconnect()
        c.loop_stop()

    start = time.monotonic()
    threads = [threading.Thread(target=publish_all, args=(
        slow[k], [(f"bp/x/{1 - k}", f"s{k}-{i}".encode()) for i in range(CROSSED)],
        f"crossed: slow {k}", errors)) for k in range(2)]
    threads += [threading.Thread(target=fast, args=(k, j))
                for k in range(2) for j in range(CROSSED_FAST)]
    for t in threads:
        t.start()
    want = CROSSED * (1 + CROSSED_FAST)  # from the other slow one and the fast ones beside it
    end = start + DEADLINE
    while time.monotonic() < end:
        with lock:
            if len(got[0]) >= want and len(got[1]) >= want:
                break
        time.sleep(0.1)
    for t in threads:
        t.join(DEADLINE)
    for c in slow:
        c.disconnect()
        c.loop_stop()
    print(f"crossed: received {len(got[0])}/{want} and {len(got[1])}/{want} in "
          f"{time.monotonic() - start:.1f}s (slow clients on shards {shards})")
    failures = list(errors)
    for k in range(2):
        if len(got[k]) != want:
            failures.append(f"crossed: slow client {k} lost {want - len(got[k])} of {want}")
    for f in failures:
        print("FAIL: " + f)
    if not failures:
        print("PASS: crossed, nothing lost, nothing stuck")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
