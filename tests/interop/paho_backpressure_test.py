#!/usr/bin/env python3
"""Interop, tern-broker back-pressure: 4 fast QoS 1 publishers (paho-mqtt) feed one slow subscriber.

Without back-pressure the broker acknowledges the publishers at full speed and drops what
does not fit in the subscriber's queue (max_queued_messages, 1000). With it, the
publishers are paused while the subscriber is congested: every message must arrive, and
the broker's memory stays bounded. Usage: paho_backpressure_test.py TERN_BROKER
"""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time

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


def start_broker(binary, log):
    proc = subprocess.Popen([binary, "-p", "0"], stdout=subprocess.DEVNULL, stderr=log)
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
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc, port = start_broker(binary, log)
        try:
            return run(proc, port)
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

    def publisher(n):
        c = mqtt.Client(client_id=f"fast-pub-{n}", clean_session=True)
        c.max_inflight_messages_set(50)
        c.max_queued_messages_set(0)
        c.connect(HOST, port, keepalive=60)
        c.loop_start()
        infos = [c.publish("bp/t", f"{n}-{i}".encode(), qos=1) for i in range(PER_PUBLISHER)]
        end = time.monotonic() + DEADLINE
        for info in infos:
            while not info.is_published() and time.monotonic() < end:
                info.wait_for_publish(0.5)
            if not info.is_published():
                errors.append(f"publisher {n}: not acknowledged in time")
                break
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
    print(f"{1 if not failures else 0} passed, {len(failures) and 1} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
