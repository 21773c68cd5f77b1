#!/usr/bin/python3
"""Two hundred paho-mqtt clients publishing and subscribing at once through tern-broker.

Client i (half of them MQTT 3.1.1, half 5.0) subscribes to soak/i/# at QoS 2 and publishes
PER_QOS messages at QoS 1 and PER_QOS at QoS 2 to its neighbour's topics soak/(i+1)/q1/i and
soak/(i+1)/q2/i, all clients at the same time; mosquitto_sub watches soak/# beside them.
Checks, with a bounded wait:
  - every client got each QoS 1 message of its neighbour at least once and each QoS 2 message
    exactly once, in the order its neighbour put them on the wire (paho's own order: with
    several threads, paho can send a message it had queued for its in-flight window after
    one published later, so the order of publish() calls is not the order to check);
  - every publish was acknowledged (PUBACK / PUBCOMP);
  - mosquitto_sub saw all 200 x 2 x PER_QOS messages (it subscribes at QoS 2).

usage: paho_soak_test.py path/to/tern-broker [clients] [per_qos]
exit:  0 passed, 1 failed, 77 paho-mqtt or mosquitto_sub missing (skipped)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

try:
    import paho.mqtt.client as mqtt
except ImportError:
    print("SKIP: paho-mqtt is not installed")
    sys.exit(77)
if shutil.which("mosquitto_sub") is None:
    print("SKIP: mosquitto_sub is not installed")
    sys.exit(77)

BROKER = sys.argv[1]
CLIENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PER_QOS = int(sys.argv[3]) if len(sys.argv) > 3 else 100
failures = []


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


class Peer:
    def __init__(self, i, port):
        self.i = i
        self.v5 = i % 2 == 1
        self.lock = threading.Lock()
        self.got = {1: [], 2: []}
        self.acked = 0
        self.subscribed = threading.Event()
        proto = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        self.c = mqtt.Client(client_id=f"soak-{i}", protocol=proto)
        self.c.max_inflight_messages_set(20)
        self.c.on_message = self.on_message
        self.c.on_publish = self.on_publish
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_log = self.on_log
        self.mids = {}   # packet id -> (qos, n), from publish()
        self.sent = []   # packet ids in the order paho wrote the PUBLISH packets
        self.c.connect("127.0.0.1", port, keepalive=60)
        self.c.subscribe(f"soak/{i}/#", 2)
        self.c.loop_start()

    def on_message(self, c, u, m):
        q = 1 if "/q1/" in m.topic else 2
        with self.lock:
            self.got[q].append(int(m.payload.decode()))

    def on_log(self, c, u, level, buf):
        if buf.startswith("Sending PUBLISH"):
            m = re.search(r"m(\d+)\)", buf)
            if m:
                self.sent.append(int(m.group(1)))

    def wire_order(self, q):
        """The n of each QoS q message in the order it was written (first sends only)."""
        out, seen = [], set()
        for mid in self.sent:
            x = self.mids.get(mid)
            if x and x[0] == q and x[1] not in seen:
                seen.add(x[1])
                out.append(x[1])
        return out

    def on_publish(self, c, u, mid):
        with self.lock:
            self.acked += 1

    def publish_all(self):
        target = (self.i + 1) % CLIENTS
        for n in range(PER_QOS):
            i1 = self.c.publish(f"soak/{target}/q1/{self.i}", str(n), qos=1)
            i2 = self.c.publish(f"soak/{target}/q2/{self.i}", str(n), qos=2)
            self.mids[i1.mid] = (1, n)
            self.mids[i2.mid] = (2, n)


def main():
    work = tempfile.mkdtemp()
    log = open(os.path.join(work, "broker.log"), "w+")
    args = [BROKER, "-p", "0"]
    threads = os.environ.get("TERN_BROKER_THREADS")  # CTest: 1, or 2 for .threads2
    if threads:
        conf = os.path.join(work, "threads.conf")
        with open(conf, "w") as f:
            f.write("threads %s\n%s" % (threads, "" if threads == "1" else "sys_interval 0\n"))
        args += ["-c", conf]
    broker = subprocess.Popen(args, stderr=log)
    try:
        port = None
        for _ in range(200):
            log.seek(0)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if port is None:
            print("FAIL: tern-broker did not start")
            return 1
        total = CLIENTS * 2 * PER_QOS
        watch_out = open(os.path.join(work, "watch.out"), "w+")
        watcher = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
                                    "-t", "soak/#", "-q", "2", "-v", "-C", str(total),
                                    "-W", "90"], stdout=watch_out, stderr=subprocess.STDOUT)
        peers = [Peer(i, port) for i in range(CLIENTS)]
        ready = all(p.subscribed.wait(20) for p in peers)
        check(ready, f"{CLIENTS} clients connected and subscribed (3.1.1 and 5.0)")
        time.sleep(0.5)  # the watcher's SUBSCRIBE is in as well
        started = time.time()
        threads = [threading.Thread(target=p.publish_all) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.time() + 90
        while time.time() < deadline:
            done = True
            for p in peers:
                with p.lock:
                    if (p.acked < 2 * PER_QOS or len(set(p.got[1])) < PER_QOS
                            or len(p.got[2]) < PER_QOS):
                        done = False
                        break
            if done:
                break
            time.sleep(0.1)
        elapsed = time.time() - started
        time.sleep(0.5)  # and no late duplicate
        print(f"{total} messages among {CLIENTS} clients in {elapsed:.1f} s", flush=True)

        want = list(range(PER_QOS))
        lost1, dup2, order, unacked = [], [], [], []
        for p in peers:
            with p.lock:
                q1, q2, acked = list(p.got[1]), list(p.got[2]), p.acked
            if set(q1) != set(want):
                lost1.append(p.i)
            if sorted(q2) != want:
                dup2.append((p.i, len(q2)))
            first = []
            for n in q1:
                if n not in first:
                    first.append(n)
            sender = peers[(p.i - 1) % CLIENTS]
            if first != sender.wire_order(1) or q2 != sender.wire_order(2):
                order.append(p.i)
            if acked != 2 * PER_QOS:
                unacked.append((p.i, acked))
        check(not lost1, f"QoS 1: every client got all {PER_QOS} messages of its neighbour "
                         f"at least once (short: {lost1[:10]})")
        check(not dup2, f"QoS 2: every client got all {PER_QOS} exactly once "
                        f"(wrong counts: {dup2[:10]})")
        check(not order, f"each publisher's messages arrived in the order it sent them "
                         f"(not: {order[:10]})")
        check(not unacked, f"every publish was acknowledged (not: {unacked[:10]})")
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()
        watch_out.seek(0)
        lines = watch_out.read().splitlines()
        check(len(lines) == total, f"mosquitto_sub on soak/# saw all {total} messages "
                                   f"(saw {len(lines)})")
        for p in peers:
            p.c.disconnect()
            p.c.loop_stop()
        broker.terminate()
        check(broker.wait(timeout=10) == 0, "tern-broker stopped cleanly")
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
