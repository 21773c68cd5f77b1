#!/usr/bin/python3
"""tern-bridge's on-disk queue (--queue-dir) across a destination outage and a crash of the
bridge. tern-broker is the source (the bridge's session there is clean, so the source
forgets what the bridge had not taken: only the bridge's disk can keep it), the destination
is Mosquitto or tern-broker with persistence and a subscriber with a persistent session
(offline from before the outage until the end, so the destination queues everything for it).
QoS 1 and QoS 2 messages flow; the destination is stopped while they do; the bridge is
killed with SIGKILL while the destination is down, its last segment gets a torn tail, and it
is started again; then the destination comes back. Every QoS 1 message must arrive at least
once, every QoS 2 message exactly once, each topic in order. Then the bound: a 64K queue
with each queue_full_policy (block, drop-new, drop-oldest) while the destination is down,
drops counted in the stats.

    bridge_queue_test.py BIN_DIR mosquitto|tern 5|311 [--no-queue | --reload]

--no-queue runs the same outage without the queue and checks that messages ARE lost (the
test would not show anything if they were not). Exit 0 when every check passed, 1 when one
failed, 77 (skipped) without paho or mosquitto.
--reload instead sends SIGHUP twice while messages wait on disk for the stopped destination
(a new rule: updated in place; a new queue_max_bytes: the bridge restarted and its queue
reopened) and checks that nothing is lost or doubled.
"""

import glob
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, MOSQUITTO, WORK, Bridge, Client, check, done,  # noqa: E402
                            free_port, spawn, stop, wait_for, wait_port)
import bridge_support  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

BIN = sys.argv[1]
DEST_KIND = sys.argv[2]
VERSION = sys.argv[3]
NO_QUEUE = "--no-queue" in sys.argv
N = 150  # messages per QoS


class Dest:
    """The destination broker on a fixed free port, with persistence in WORK."""

    def __init__(self, kind, name):
        self.kind = kind
        self.port = free_port()
        self.dir = os.path.join(WORK, f"dest-{name}")
        os.makedirs(self.dir, exist_ok=True)
        # Mosquitto started as root writes its store as the user 'mosquitto'.
        os.chmod(WORK, 0o755)
        os.chmod(self.dir, 0o777)
        self.proc = None

    def start(self):
        conf = os.path.join(self.dir, "broker.conf")
        log = open(os.path.join(self.dir, "broker.log"), "a")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} {HOST}\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {self.dir}/\n"
                    "max_queued_messages 0\n")
            if self.kind == "tern":
                f.write("persistence_sync always\n")
            else:
                # As in bridge_support: no in-flight window towards the subscriber. With a
                # full window Mosquitto 2.0.11 can send a newer message before older ones
                # waiting in its queue (seen with paho alone, no bridge), which would fail
                # the order check for a reason that is not the bridge's.
                f.write("max_inflight_messages 0\n")
        if self.kind == "tern":
            args = [os.path.join(BIN, "tern-broker"), "-c", conf]
        else:
            if not os.path.exists(MOSQUITTO):
                print("SKIP: mosquitto not installed")
                sys.exit(77)
            args = [MOSQUITTO, "-c", conf]
        self.proc = spawn(args, stdout=log, stderr=log)
        if not wait_port(self.port):
            sys.exit(f"FAIL: {self.kind} did not start on {self.port}")

    def stop(self):
        stop(self.proc, signal.SIGTERM, 10)


def start_source():
    """tern-broker on a free port, without persistence."""
    b = bridge_support.Broker("tern", BIN)
    return b


def write_config(path, dest_port, queue_dir, extra=""):
    version = "mqttv50" if VERSION == "5" else "mqttv311"
    with open(path, "w") as f:
        if queue_dir:
            f.write(f"queue_dir {queue_dir}\n")
        f.write(f"connection qb\naddress {HOST}:{dest_port}\ntopic q/# out 2\n"
                f"bridge_protocol_version {version}\nremote_clientid qb-remote\n"
                "local_clientid qb-local\ncleansession false\nlocal_cleansession true\n"
                "restart_timeout 1 1\nnotifications false\n" + extra)


class Subscriber:
    """A persistent QoS 2 subscription on the destination, across its restarts."""

    def __init__(self, port):
        self.port = port
        self.got = []
        self.c = None
        self.connect()
        self.subscribed.clear()
        self.c.subscribe("q/#", 2)
        check("subscriber subscribed at the destination", self.subscribed.wait(10))

    def _on_message(self, client, userdata, m):
        self.got.append((m.topic, bytes(m.payload), m.qos, bool(m.retain), {}))

    def connect(self):
        """Connects the first time; later calls reconnect the same paho client, which keeps
        its QoS 2 state across the destination's restart: a message received before the
        outage and released after it is delivered once, at its PUBREL (a new client object
        would deliver a resent PUBLISH again, or drop a PUBREL it does not know)."""
        self.ready = threading.Event()
        if self.c is None:
            v5 = VERSION == "5"
            kw = {} if v5 else {"clean_session": False}
            c = mqtt.Client(client_id="qsub", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                            **kw)
            self.subscribed = threading.Event()
            c.on_connect = lambda *a: self.ready.set()
            c.on_message = self._on_message
            c.on_subscribe = lambda *a: self.subscribed.set()
            if v5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 3600
                c.connect(HOST, self.port, 30, clean_start=False, properties=props)
            else:
                c.connect(HOST, self.port, 30)
            self.c = c
        else:
            self.c.reconnect()
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("paho could not connect to the destination")

    def drop(self):
        """A clean DISCONNECT: the session stays, and the destination queues for it."""
        self.c.disconnect()
        self.c.loop_stop()


def make_subscriber(port):
    return Subscriber(port)


def publish_all(port, stop_at, on_stop):
    """QoS 1 on q/1 and QoS 2 on q/2, interleaved; calls on_stop() after `stop_at` pairs."""
    pub = Client(port, VERSION, client_id="qpub")
    for i in range(N):
        if i == stop_at:
            on_stop()
        pub.publish("q/1", f"1-{i}", 1)
        pub.publish("q/2", f"2-{i}", 2)
        time.sleep(0.004)
    pub.close()


def out_of_order(seen):
    """Where a list of 'Q-i' payloads first leaves ascending order, with its neighbours."""
    nums = [int(p.split("-")[1]) for p in seen]
    for k in range(1, len(nums)):
        if nums[k] < nums[k - 1]:
            return f"at arrival {k}: {seen[max(0, k - 5):k + 5]}"
    return f"in order ({len(seen)} arrivals)"


def arrivals(got, topic):
    return [p.decode() for (t, p, q, r, props) in got if t == topic]


def bridge_args(cfg):
    return ["-c", cfg]


def outage_test():
    source = start_source()
    dest = Dest(DEST_KIND, "outage")
    dest.start()
    qdir = None if NO_QUEUE else os.path.join(WORK, "queue")
    cfg = os.path.join(WORK, "bridge.conf")
    write_config(cfg, dest.port, qdir)
    args = ["--local", f"mqtt://{HOST}:{source.port}"] + bridge_args(cfg)
    bridge = Bridge(BIN, args)
    check("bridge connected to both brokers", bridge.wait_connected(), bridge.stderr())
    bridge.wait_subscribed()
    sub = make_subscriber(dest.port)
    # The subscriber is offline from here until the destination is back, so the destination
    # holds everything for it in its queue: no message is half-way to the subscriber when the
    # destination stops (paho's QoS 2 state for such a message, or the destination's, is
    # not what this test is about).
    sub.drop()

    # The destination goes down a third of the way through.
    publish_all(source.port, N // 3, dest.stop)
    time.sleep(1.0)  # the bridge takes the rest from the source (and writes it to disk)
    stats = bridge.last_stats()
    if not NO_QUEUE:
        check("stats count the queue", "queued_bytes_out" in stats and
              stats.get("queue_fsyncs", 0) > 0 and stats.get("queued_out", 0) > 0, str(stats))

    bridge.proc.send_signal(signal.SIGKILL)
    bridge.proc.wait()
    if not NO_QUEUE:
        segs = sorted(glob.glob(os.path.join(qdir, "qb.remote", "seg-*.q")))
        check("segments on disk", len(segs) > 0, str(os.listdir(WORK)))
        if segs:
            with open(segs[-1], "ab") as f:
                f.write(b"\x30\x00\x00\x00torn")  # a record cut off by the crash
    bridge2 = Bridge(BIN, args)
    check("bridge restarted", wait_for(lambda: bridge2.connected("local"), 15), bridge2.stderr())
    if not NO_QUEUE:
        opened = [e for e in bridge2.events("queue_opened") if e.get("side") == "remote"]
        check("the queue reopened with the waiting records",
              opened and opened[0].get("records", 0) > 0 and opened[0].get("cut_bytes") == 8,
              str(opened))
        problems = bridge2.events("queue_problem")
        check("the torn tail is reported", any("cut 8 bytes" in e.get("reason", "")
                                               for e in problems), str(problems))
    time.sleep(0.5)
    dest.start()
    sub.connect()
    expect = 2 * N
    wait_for(lambda: len(set((t, p) for (t, p, *_) in sub.got)) >= expect, 40, 0.1)
    time.sleep(1.5)  # duplicates, if any, arrive by now
    q1 = arrivals(sub.got, "q/1")
    q2 = arrivals(sub.got, "q/2")
    want1 = [f"1-{i}" for i in range(N)]
    want2 = [f"2-{i}" for i in range(N)]
    missing1 = [m for m in want1 if m not in set(q1)]
    missing2 = [m for m in want2 if m not in set(q2)]
    detail = (f"q/1 {len(q1)} ({len(set(q1))} distinct), "
              f"q/2 {len(q2)} ({len(set(q2))} distinct); missing q/1 {missing1[:10]}, "
              f"q/2 {missing2[:10]}")
    print(detail, flush=True)
    if NO_QUEUE:
        check("without the queue, messages are lost (the control)",
              len(missing1) + len(missing2) > 0, detail)
        return
    check("every QoS 1 message at least once", not missing1, detail)
    check("every QoS 2 message exactly once", not missing2 and len(q2) == N, detail)
    firsts = []
    for m in q1:
        if m not in firsts:
            firsts.append(m)
    check("QoS 1 in order (first arrivals)", firsts == want1, str(firsts[:20]))
    check("QoS 2 in order", q2 == want2, out_of_order(q2))
    check("the queue drained", wait_for(lambda: bridge2.last_stats().get("queued_out") == 0, 5),
          str(bridge2.last_stats()))
    bridge2.stop()
    dest.stop()
    source.stop()


def bound_test(policy):
    """A 64K queue while the destination is down, 100 messages of ~1 kB, with `policy`:
    drop-new and drop-oldest count what they drop and keep the oldest / newest; block drops
    nothing (the source keeps the rest) and all arrive."""
    source = start_source()
    dest = Dest(DEST_KIND, f"bound-{policy}")
    dest.start()
    qdir = os.path.join(WORK, f"queue-bound-{policy}")
    cfg = os.path.join(WORK, f"bound-{policy}.conf")
    write_config(cfg, dest.port, None,
                 f"queue_dir {qdir}\nqueue_max_bytes 64K\nqueue_full_policy {policy}\n")
    bridge = Bridge(BIN, ["--local", f"mqtt://{HOST}:{source.port}", "-c", cfg])
    tag = f"bound, {policy}:"
    check(f"{tag} bridge connected", bridge.wait_connected(), bridge.stderr())
    bridge.wait_subscribed()
    sub = make_subscriber(dest.port)
    dest.stop()
    sub.drop()
    time.sleep(0.5)
    pub = Client(source.port, VERSION, client_id="qpub2")
    payload = "x" * 1000
    n = 100
    for i in range(n):  # ~100K of records for a 64K queue
        pub.publish("q/1", f"{i:03d}" + payload, 1)
    pub.close()
    want = [f"{i:03d}" + payload for i in range(n)]
    if policy == "block":
        time.sleep(1.0)
        stats = bridge.last_stats()
        # What the source had sent before the bridge stopped reading waits in the bridge's
        # memory, unacknowledged (queued_out counts it); the rest stays at the source. All
        # of them arrive below.
        check(f"{tag} nothing dropped, the queue within its bound, the rest held",
              stats.get("dropped_queue_full") == 0 and
              0 < stats.get("queued_bytes_out", 0) <= 65536 and
              0 < stats.get("queued_out", 0) <= n,
              str(stats))
        expect = want
    else:
        ok = wait_for(lambda: bridge.last_stats().get("dropped_queue_full", 0) > 0 and
                      bridge.last_stats().get("dropped_queue_full", 0) +
                      bridge.last_stats().get("queued_out", 0) == n, 5)
        stats = bridge.last_stats()
        check(f"{tag} counted in stats (dropped_queue_full + queued_out = {n})",
              ok and stats.get("queued_bytes_out", 0) <= 65536, str(stats))
        kept = n - stats.get("dropped_queue_full", 0)
        expect = want[:kept] if policy == "drop-new" else want[n - kept:]
    dest.start()
    sub.connect()
    wait_for(lambda: len(set(arrivals(sub.got, "q/1"))) >= len(expect), 20, 0.1)
    time.sleep(0.3)
    got = arrivals(sub.got, "q/1")
    firsts = [g for i, g in enumerate(got) if g not in got[:i]]
    check(f"{tag} {len(expect)} of {n} arrive, in order, "
          + {"block": "none dropped", "drop-new": "the newest dropped",
             "drop-oldest": "the oldest dropped"}[policy],
          firsts == expect, f"expected {len(expect)}, got {len(got)}: "
          f"{[g[:3] for g in firsts[:4]]}...{[g[:3] for g in firsts[-3:]]}; missing "
          f"{[g[:3] for g in expect if g not in firsts]}, not expected "
          f"{[g[:3] for g in firsts if g not in expect]}; stats {stats}")
    bridge.stop()
    dest.stop()
    source.stop()


def reload_test():
    """SIGHUP while messages wait in the on-disk queue (the destination down): a new rule
    (updated in place) and then a new queue_max_bytes (the bridge restarted: its queue saved,
    closed and opened again by the new one) lose nothing and double no QoS 2 message."""
    source = start_source()
    dest = Dest(DEST_KIND, "reload")
    dest.start()
    qdir = os.path.join(WORK, "queue-reload")
    cfg = os.path.join(WORK, "reload.conf")
    write_config(cfg, dest.port, qdir)
    bridge = Bridge(BIN, ["--local", f"mqtt://{HOST}:{source.port}", "-c", cfg])
    check("reload: bridge connected", bridge.wait_connected(), bridge.stderr())
    bridge.wait_subscribed()
    sub = make_subscriber(dest.port)
    sub.drop()
    dest.stop()
    pub = Client(source.port, VERSION, client_id="qpub3")
    n = 0

    def publish(count):
        nonlocal n
        for _ in range(count):
            pub.publish("q/1", f"1-{n}", 1)
            pub.publish("q/2", f"2-{n}", 2)
            n += 1

    def on_disk(count):
        return wait_for(lambda: bridge.last_stats().get("queued_out") == 2 * count, 10)

    def reloaded(count):
        return wait_for(lambda: len(bridge.events("reloaded")) >= count, 10)

    publish(40)
    check("reload: 80 messages wait on disk", on_disk(40), str(bridge.last_stats()))
    write_config(cfg, dest.port, qdir, "topic r/# out 1\n")
    bridge.proc.send_signal(signal.SIGHUP)
    ok = reloaded(1)
    ev = bridge.events("reloaded")
    check("reload: a new rule updates the bridge in place",
          ok and ev[0].get("action") == "updated" and ev[0].get("rules_changed") is True, str(ev))
    publish(40)
    check("reload: 160 messages wait on disk", on_disk(80), str(bridge.last_stats()))
    write_config(cfg, dest.port, qdir, "topic r/# out 1\nqueue_max_bytes 512M\n")
    bridge.proc.send_signal(signal.SIGHUP)
    ok = reloaded(2)
    ev = bridge.events("reloaded")
    check("reload: a new queue_max_bytes restarts the bridge",
          ok and ev[-1].get("action") == "restarted", str(ev))
    opened = [e for e in bridge.events("queue_opened") if e.get("side") == "remote"]
    check("reload: the restarted bridge opens the queue with the 160 records",
          wait_for(lambda: len([e for e in bridge.events("queue_opened")
                                if e.get("side") == "remote"]) >= 2, 10) and
          [e for e in bridge.events("queue_opened") if e.get("side") == "remote"][-1]
          .get("records") == 160, str(opened))
    # The source session is clean (local_cleansession): what is published before the new
    # bridge has subscribed there has no subscriber to go to.
    check("reload: the restarted bridge connects to the source again",
          wait_for(lambda: bridge.connected("local", 2), 10), str(bridge.events("connected")))
    bridge.wait_subscribed()
    publish(40)
    check("reload: 240 messages wait on disk", on_disk(120), str(bridge.last_stats()))
    pub.close()
    dest.start()
    sub.connect()
    wait_for(lambda: len(set(arrivals(sub.got, "q/1"))) >= n and
             len(set(arrivals(sub.got, "q/2"))) >= n, 30, 0.1)
    time.sleep(1.0)
    q1, q2 = arrivals(sub.got, "q/1"), arrivals(sub.got, "q/2")
    want1, want2 = [f"1-{i}" for i in range(n)], [f"2-{i}" for i in range(n)]
    firsts = []
    for m in q1:
        if m not in firsts:
            firsts.append(m)
    check("reload: every QoS 1 message at least once, in order", firsts == want1,
          f"{len(q1)} arrivals, {len(set(q1))} distinct")
    check("reload: every QoS 2 message exactly once, in order", q2 == want2, out_of_order(q2))
    check("reload: the queue drained",
          wait_for(lambda: bridge.last_stats().get("queued_out") == 0, 5),
          str(bridge.last_stats()))
    bridge.stop()
    dest.stop()
    source.stop()


if "--reload" in sys.argv:
    reload_test()
    done()
outage_test()
if not NO_QUEUE:
    for p in ("block", "drop-new", "drop-oldest"):
        bound_test(p)
done()
