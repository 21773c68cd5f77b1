#!/usr/bin/python3
"""Bridges inside tern-broker (`connection` blocks) under faults, with the on-disk queue, and
over TLS, against a real Mosquitto as the remote broker.

    broker_bridge_fault_test.py BIN_DIR fault 5|311
        A TCP proxy between the bridge and Mosquitto cuts, resets and stalls the link while
        QoS 1 and QoS 2 messages flow both ways; then Mosquitto itself is stopped a third of
        the way through a stream of QoS 1 and QoS 2 messages published at tern-broker and
        started again: every QoS 1 message arrives at least once, every QoS 2 message exactly
        once, each topic in order.
    broker_bridge_fault_test.py BIN_DIR queue 5|311
        queue_dir: Mosquitto down, tern-broker (no persistence of its own) killed with
        SIGKILL after the bridge took the messages, a torn record appended to the queue,
        tern-broker started again, Mosquitto back: nothing lost, QoS 2 exactly once, in
        order. Then a 64K queue_max_bytes with each queue_full_policy (block, drop-new,
        drop-oldest): what is dropped is counted in /metrics, and which messages arrive
        follows the policy.
    broker_bridge_fault_test.py BIN_DIR recvmax 5
        Mosquitto with max_inflight_messages 2 (Receive Maximum 2; it refuses a QoS 2 PUBLISH
        beyond that with PUBREC 0x97): 200 QoS 2 messages held while the link is down drain
        after it, all delivered once and in order, none refused.
    broker_bridge_fault_test.py BIN_DIR tls
        Mosquitto TLS listeners (certificates made now with openssl): bridge_cafile, mutual
        TLS with bridge_certfile/bridge_keyfile, a wrong CA and a wrong host name refused
        (the reason in the log, the side down in /metrics), bridge_insecure accepting the
        wrong host name.

Mosquitto runs with `max_inflight_messages 0`: with a full in-flight window Mosquitto 2.0.11
can send a newer queued message before older ones, which would fail the order checks for a
reason that is not the bridge's. Exit 0 when every check passed, 1 when one failed, 77
(skipped) without paho, mosquitto or openssl.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, MOSQUITTO, WORK, Client, ConfiguredBroker, check,  # noqa: E402
                            done, free_port, spawn, stop, wait_for, wait_port)
from fault_proxy import FaultyProxy  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

BIN = sys.argv[1]
MODE = sys.argv[2]
VERSION = sys.argv[3] if len(sys.argv) > 3 else "5"
HERE = os.path.dirname(os.path.abspath(__file__))
TAG = f"[{MODE} -V {VERSION}]"
if not os.path.exists(MOSQUITTO):
    print("SKIP: mosquitto not installed")
    sys.exit(77)
# Mosquitto started as root writes its store as the user 'mosquitto'.
os.chmod(WORK, 0o755)


class Mosquitto:
    """The remote broker on a fixed free port, with persistence; `extra` adds listeners."""

    def __init__(self, name, extra="", inflight=0):
        self.port = free_port()
        self.dir = os.path.join(WORK, f"mosq-{name}")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("per_listener_settings false\nallow_anonymous true\n"
                    f"listener {self.port} {HOST}\n"
                    f"persistence true\npersistence_location {self.dir}/\n"
                    f"max_queued_messages 0\nmax_inflight_messages {inflight}\n" + extra)
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "mosquitto.log"), "a")
        self.proc = spawn([MOSQUITTO, "-c", self.conf], stdout=log, stderr=subprocess.STDOUT)
        if not wait_port(self.port):
            sys.exit("FAIL: mosquitto did not start")

    def stop(self):
        stop(self.proc, signal.SIGTERM, 10)


def conf_file(name, body):
    path = os.path.join(WORK, f"{name}.conf")
    with open(path, "w") as f:
        f.write(f"listener 0 {HOST}\nallow_anonymous true\nmetrics_listener 0\n" + body)
    return path


def connection(name, port, topics, extra=""):
    version = "mqttv50" if VERSION == "5" else "mqttv311"
    return (f"connection {name}\naddress {HOST}:{port}\n" +
            "".join(f"topic {t}\n" for t in topics) +
            f"bridge_protocol_version {version}\nremote_clientid {name}-{os.getpid()}\n"
            "keepalive_interval 5\nrestart_timeout 1 1\nnotifications false\n" + extra)


class Subscriber:
    """A persistent subscription (QoS 2) at Mosquitto that stays across its restarts: the same
    paho client reconnects, keeping its QoS 2 state (a new client object would deliver a
    resent PUBLISH again or drop a PUBREL it does not know)."""

    def __init__(self, port, client_id, topic):
        self.got = []
        self.ready = threading.Event()
        self.subscribed = threading.Event()
        v5 = VERSION == "5"
        c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                        **({} if v5 else {"clean_session": False}))
        c.on_connect = lambda *a: self.ready.set()
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload.decode()))
        c.on_subscribe = lambda *a: self.subscribed.set()
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            c.connect(HOST, port, 30, clean_start=False, properties=props)
        else:
            c.connect(HOST, port, 30)
        self.c = c
        c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("paho could not connect to Mosquitto")
        c.subscribe(topic, 2)
        check(f"{TAG} subscriber {client_id} subscribed at Mosquitto", self.subscribed.wait(10))

    def drop(self):
        """A clean DISCONNECT: the session stays and Mosquitto keeps what comes for it."""
        self.c.disconnect()
        self.c.loop_stop()

    def connect(self):
        self.ready.clear()
        self.c.reconnect()
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("paho could not reconnect to Mosquitto")

    def arrivals(self, topic):
        return [p for t, p in self.got if t == topic]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def firsts(seq):
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def check_stream(name, got, want, qos):
    """QoS 1: each at least once, first arrivals in order; QoS 2: exactly `want`."""
    missing = [w for w in want if w not in set(got)]
    detail = (f"{len(got)} arrivals ({len(set(got))} distinct), missing {missing[:8]} "
              f"({len(missing)}), first arrivals {firsts(got)[:8]}...")
    if qos == 1:
        check(f"{TAG} {name}: every QoS 1 message at least once, in order",
              not missing and firsts(got) == want, detail)
    else:
        check(f"{TAG} {name}: every QoS 2 message exactly once, in order", got == want, detail)


# ---- fault


def chaos_phase(mosq, proxy, tern, name):
    """300 messages per stream (q1 out QoS 1, q2 out QoS 2, i2 in QoS 2) for 6 s while the
    proxy breaks the link."""
    n = 300
    at_remote = Client(mosq.port, VERSION)
    at_remote.subscribe("q1/#", 1)
    at_remote.subscribe("q2/#", 2)
    at_local = Client(tern.port, VERSION)
    at_local.subscribe("i2/#", 2)
    pub_local = Client(tern.port, VERSION)
    pub_remote = Client(mosq.port, VERSION)
    before = tern.bridge("tern_bridge_remote_connects_total", name)
    chaos = threading.Thread(target=proxy.chaos, args=(time.time() + 6,), daemon=True)
    chaos.start()
    for i in range(n):
        pub_local.publish("q1/a", str(i).encode(), qos=1)
        pub_local.publish("q2/b", str(i).encode(), qos=2)
        pub_remote.publish("i2/c", str(i).encode(), qos=2)
        time.sleep(6.0 / n)
    chaos.join()

    def got(c, topic):
        return [p.decode() for t, p, *_ in c.got if t == topic]

    wait_for(lambda: len(set(got(at_remote, "q1/a"))) >= n and len(set(got(at_remote, "q2/b")))
             >= n and len(set(got(at_local, "i2/c"))) >= n, 40, 0.1)
    time.sleep(1.0)  # late duplicates would show here
    faults = dict(proxy.faults)
    connects = tern.bridge("tern_bridge_remote_connects_total", name)
    print(f"faults {faults}, remote connects {before} -> {connects}", flush=True)
    check(f"{TAG} the proxy broke the link many times",
          faults["cut"] + faults["reset"] >= 2 and faults["stall"] >= 1, faults)
    check(f"{TAG} the bridge reconnected after the faults (tern_bridge_remote_connects_total)",
          connects is not None and before is not None and connects - before >= 2,
          f"{before} -> {connects}")
    want = [str(i) for i in range(n)]
    check_stream("chaos: out q1/a", got(at_remote, "q1/a"), want, 1)
    check_stream("chaos: out q2/b", got(at_remote, "q2/b"), want, 2)
    check_stream("chaos: in i2/c", got(at_local, "i2/c"), want, 2)
    for c in (at_remote, at_local, pub_local, pub_remote):
        c.close()


def outage_phase(mosq, tern, name, n=150):
    """Mosquitto stopped a third of the way through, started after the last publish."""
    sub = Subscriber(mosq.port, f"far-{os.getpid()}", "o/#")
    sub.drop()
    pub = Client(tern.port, VERSION, client_id=f"pub-{os.getpid()}")
    for i in range(n):
        if i == n // 3:
            mosq.stop()
        pub.publish("o/1", f"1-{i}", 1)
        pub.publish("o/2", f"2-{i}", 2)
        time.sleep(0.004)
    pub.close()
    check(f"{TAG} outage: tern_bridge_connected remote 0",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 0, 10))
    queued = tern.bridge("tern_bridge_messages_queued", name, direction="out")
    held = tern.metric("tern_queued_messages")
    print(f"outage: bridge holds {queued}, broker session queue {held}", flush=True)
    check(f"{TAG} outage: the bridge and the broker hold the messages",
          queued is not None and held is not None and queued > 0 and queued + held >= n, "")
    time.sleep(1.0)  # a few reconnect attempts fail meanwhile
    mosq.start()
    check(f"{TAG} outage: tern_bridge_connected remote 1 again",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 1, 20))
    sub.connect()
    wait_for(lambda: len(set(sub.arrivals("o/1"))) >= n and len(set(sub.arrivals("o/2"))) >= n,
             30, 0.1)
    time.sleep(1.0)
    check_stream("outage: o/1", sub.arrivals("o/1"), [f"1-{i}" for i in range(n)], 1)
    check_stream("outage: o/2", sub.arrivals("o/2"), [f"2-{i}" for i in range(n)], 2)
    check(f"{TAG} outage: tern_bridge_messages_queued out back to 0",
          wait_for(lambda: tern.bridge("tern_bridge_messages_queued", name, direction="out") == 0,
                   10))
    sub.close()


def fault_test():
    mosq = Mosquitto("fault")
    proxy = FaultyProxy(mosq.port)
    name = "fault"
    conf = conf_file("fault", connection(name, proxy.port,
                                         ["q1/# out 1", "q2/# out 2", "i2/# in 2", "o/# out 2"]))
    tern = ConfiguredBroker(BIN, conf)
    check(f"{TAG} the bridge connects through the proxy",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 1, 20),
          tern.text()[-2000:])
    check(f"{TAG} the bridge subscribed at tern-broker",
          wait_for(lambda: "subscribed to o/#" in tern.text(), 10), tern.text()[-2000:])
    time.sleep(0.5)  # the SUBACK at Mosquitto
    chaos_phase(mosq, proxy, tern, name)
    outage_phase(mosq, tern, name)
    check(f"{TAG} tern-broker stops cleanly", tern.stop() == 0)
    proxy.close()
    mosq.stop()


# ---- queue


def queue_crash_test(mosq, n=150):
    """The bridge's on-disk queue keeps what tern-broker itself forgets when it is killed."""
    name = "qcrash"
    qdir = os.path.join(WORK, "queue-crash")
    conf = conf_file("qcrash", f"queue_dir {qdir}\n" + connection(name, mosq.port, ["q/# out 2"]))
    tern = ConfiguredBroker(BIN, conf)
    check(f"{TAG} crash: the bridge connects",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 1, 20),
          tern.text()[-2000:])
    check(f"{TAG} crash: the bridge subscribed",
          wait_for(lambda: "subscribed to q/#" in tern.text(), 10))
    sub = Subscriber(mosq.port, f"qsub-{os.getpid()}", "q/#")
    sub.drop()
    pub = Client(tern.port, VERSION, client_id=f"qpub-{os.getpid()}")
    for i in range(n):
        if i == n // 3:
            mosq.stop()
        pub.publish("q/1", f"1-{i}", 1)
        pub.publish("q/2", f"2-{i}", 2)
        time.sleep(0.004)
    pub.close()
    # Everything the broker had for the bridge went to the bridge's disk.
    check(f"{TAG} crash: the broker's queue for the bridge drained into the disk queue",
          wait_for(lambda: tern.metric("tern_queued_messages") == 0 and
                   (tern.bridge("tern_bridge_queued_bytes", name, direction="out") or 0) > 0, 10),
          f"{tern.metric('tern_queued_messages')} "
          f"{tern.bridge('tern_bridge_queued_bytes', name, direction='out')}")
    time.sleep(0.3)
    tern.stop(signal.SIGKILL)
    segs = sorted(glob.glob(os.path.join(qdir, f"{name}.remote", "seg-*.q")))
    check(f"{TAG} crash: segments on disk", len(segs) > 0, str(os.listdir(qdir)))
    if segs:
        with open(segs[-1], "ab") as f:
            f.write(b"\x30\x00\x00\x00torn")  # a record cut off by the crash
    tern = ConfiguredBroker(BIN, conf)
    check(f"{TAG} crash: the torn tail is reported in the log",
          wait_for(lambda: "cut 8 bytes" in tern.text(), 10), tern.text()[-2000:])
    queued = tern.bridge("tern_bridge_messages_queued", name, direction="out")
    check(f"{TAG} crash: the records wait again after the restart (tern_bridge_messages_queued)",
          queued is not None and queued > 0, f"{queued}")
    mosq.start()
    sub.connect()
    wait_for(lambda: len(set(sub.arrivals("q/1"))) >= n and len(set(sub.arrivals("q/2"))) >= n,
             30, 0.1)
    time.sleep(1.0)
    check_stream("crash: q/1", sub.arrivals("q/1"), [f"1-{i}" for i in range(n)], 1)
    check_stream("crash: q/2", sub.arrivals("q/2"), [f"2-{i}" for i in range(n)], 2)
    check(f"{TAG} crash: the queue drained",
          wait_for(lambda: tern.bridge("tern_bridge_messages_queued", name, direction="out") == 0
                   and tern.bridge("tern_bridge_queued_bytes", name, direction="out") == 0, 10))
    sub.close()
    tern.stop()


def queue_bound_test(mosq, policy, n=100):
    """A 64K queue while Mosquitto is down, 100 messages of ~1000 bytes."""
    name = f"qb-{policy}"
    qdir = os.path.join(WORK, f"queue-{policy}")
    conf = conf_file(name, connection(
        name, mosq.port, ["b/# out 1"],
        f"queue_dir {qdir}\nqueue_max_bytes 64K\nqueue_full_policy {policy}\n"))
    tern = ConfiguredBroker(BIN, conf)
    check(f"{TAG} {policy}: the bridge connects",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 1, 20),
          tern.text()[-2000:])
    check(f"{TAG} {policy}: the bridge subscribed",
          wait_for(lambda: "subscribed to b/#" in tern.text(), 10))
    sub = Subscriber(mosq.port, f"bsub-{policy}-{os.getpid()}", "b/#")
    sub.drop()
    mosq.stop()
    check(f"{TAG} {policy}: remote down",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 0, 10))
    pub = Client(tern.port, VERSION, client_id=f"bpub-{os.getpid()}")
    payload = "x" * 1000
    want = [f"{i:03d}" + payload for i in range(n)]
    for m in want:  # ~100K of records for a 64K queue
        pub.publish("b/1", m, 1)
    pub.close()

    def counts():
        return (tern.bridge("tern_bridge_messages_dropped_total", name, reason="queue_full"),
                tern.bridge("tern_bridge_queued_bytes", name, direction="out"),
                tern.bridge("tern_bridge_messages_queued", name, direction="out"),
                tern.metric("tern_queued_messages"))
    if policy == "block":
        # Nothing dropped: the bridge stops taking more, the broker keeps the rest (queued for
        # the bridge's session or sent to it and not acknowledged).
        time.sleep(1.0)
        dropped, qbytes, queued, held = counts()
        inflight = tern.metric("tern_inflight_messages")
        check(f"{TAG} block: none dropped (tern_bridge_messages_dropped_total queue_full 0), "
              f"the queue within its bound, the broker holds the rest",
              dropped == 0 and 0 < qbytes <= 65536 and queued <= n and
              queued + held + inflight >= n,
              f"dropped {dropped}, bytes {qbytes}, queued {queued}, broker queued {held}, "
              f"in flight {inflight}")
        expect = want
    else:
        ok = wait_for(lambda: (counts()[0] or 0) > 0 and counts()[2] + counts()[0] == n, 5)
        dropped, qbytes, queued, held = counts()
        check(f"{TAG} {policy}: the overflow counted in tern_bridge_messages_dropped_total "
              f"queue_full, the rest within the bound",
              ok and qbytes <= 65536 and held == 0,
              f"dropped {dropped}, bytes {qbytes}, queued {queued}, broker {held}")
        kept = n - (dropped or 0)
        expect = want[:kept] if policy == "drop-new" else want[n - kept:]
    mosq.start()
    sub.connect()
    wait_for(lambda: len(set(sub.arrivals("b/1"))) >= len(expect), 20, 0.1)
    time.sleep(0.5)
    got = firsts(sub.arrivals("b/1"))
    check(f"{TAG} {policy}: {len(expect)} of {n} arrive, in order, "
          + {"block": "none dropped", "drop-new": "the newest dropped",
             "drop-oldest": "the oldest dropped"}[policy],
          got == expect, f"got {len(got)}: {[g[:3] for g in got[:5]]}...{[g[:3] for g in got[-3:]]}")
    sub.close()
    tern.stop()


def queue_test():
    mosq = Mosquitto("queue")
    queue_crash_test(mosq)
    for policy in ("block", "drop-new", "drop-oldest"):
        queue_bound_test(mosq, policy)
    mosq.stop()


# ---- recvmax


def receive_maximum_test(n=200):
    """Mosquitto with max_inflight_messages 2 says Receive Maximum 2 in its CONNACK and answers
    a QoS 2 PUBLISH beyond it with PUBREC 0x97 (quota exceeded). The bridge's link is held
    down (a proxy that refuses) while 200 QoS 2 messages are published at tern-broker; when
    it comes back the bridge drains them: all must arrive, once, in order, none refused."""
    mosq = Mosquitto("recvmax", inflight=2)
    proxy = FaultyProxy(mosq.port)
    name = "rm"
    tern = ConfiguredBroker(BIN, conf_file("recvmax", connection(name, proxy.port, ["rm/# out 2"])))
    check(f"{TAG} the bridge connects",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 1, 20),
          tern.text()[-2000:])
    check(f"{TAG} the bridge subscribed", wait_for(lambda: "subscribed to rm/#" in tern.text(), 10))
    # QoS 0 towards the subscriber: Mosquitto's own window of 2 then holds nothing back.
    at_mosq = Client(mosq.port, VERSION)
    at_mosq.subscribe("rm/#", 0)
    proxy.refuse(True)
    check(f"{TAG} the link is down",
          wait_for(lambda: tern.bridge("tern_bridge_connected", name, side="remote") == 0, 10))
    pub = Client(tern.port, VERSION)
    for i in range(n):
        pub.publish("rm/a", f"{i}", qos=2)
    # The bridge holds what the broker sent it (the broker's in-flight window towards it), the
    # broker queues the rest for the bridge's session.
    held = (tern.bridge("tern_bridge_messages_queued", name, direction="out"),
            tern.metric("tern_queued_messages"))
    check(f"{TAG} the bridge and the broker hold them while the link is down",
          None not in held and held[0] > 2 and sum(held) == n, f"{held}")
    proxy.refuse(False)
    want = [str(i) for i in range(n)]

    def got():
        return [p.decode() for t, p, *_ in at_mosq.got if t == "rm/a"]
    wait_for(lambda: len(got()) >= n, 30, 0.1)
    time.sleep(0.5)
    refused = tern.bridge("tern_bridge_messages_dropped_total", name, reason="refused")
    check(f"{TAG} drained within Receive Maximum 2: none refused (PUBREC 0x97) "
          "(tern_bridge_messages_dropped_total refused 0)", refused == 0, f"{refused}")
    check(f"{TAG} all {n} arrived once, in order", got() == want,
          f"{len(got())} arrivals, first {got()[:5]}")
    check(f"{TAG} one reconnect (tern_bridge_remote_connects_total 2)",
          tern.bridge("tern_bridge_remote_connects_total", name) == 2)
    pub.close()
    at_mosq.close()
    tern.stop()
    proxy.close()
    mosq.stop()


# ---- tls


def tls_test():
    if not shutil.which("openssl"):
        print("SKIP: openssl not installed")
        sys.exit(77)
    certs = os.path.join(WORK, "certs")
    subprocess.run(["bash", os.path.join(HERE, "..", "interop", "tls_certs.sh"), certs],
                   check=True, timeout=60)
    for d, _, files in os.walk(certs):  # Mosquitto as root reads them as the user mosquitto
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)

    def cert(n):
        return os.path.join(certs, n)
    tls_port, mutual_port, wrong_port = free_port(), free_port(), free_port()
    mosq = Mosquitto("tls", f"listener {tls_port} {HOST}\n"
                            f"certfile {cert('server.crt')}\nkeyfile {cert('server.key')}\n"
                            f"listener {mutual_port} {HOST}\n"
                            f"certfile {cert('server.crt')}\nkeyfile {cert('server.key')}\n"
                            f"cafile {cert('ca.crt')}\nrequire_certificate true\n"
                            f"listener {wrong_port} {HOST}\n"
                            f"certfile {cert('wronghost.crt')}\nkeyfile {cert('server.key')}\n")
    for p in (tls_port, mutual_port, wrong_port):
        check(f"{TAG} Mosquitto TLS listener {p}", wait_port(p))
    ca = f"bridge_cafile {cert('ca.crt')}\n"
    blocks = {
        "tls": (tls_port, ca),
        "mutual": (mutual_port, ca + f"bridge_certfile {cert('client.crt')}\n"
                                     f"bridge_keyfile {cert('client.key')}\n"),
        "nocert": (mutual_port, ca),
        "wrongca": (tls_port, f"bridge_cafile {cert('other-ca.crt')}\n"),
        "wronghost": (wrong_port, ca),
        "insecure": (wrong_port, ca + "bridge_insecure true\n"),
    }
    conf = conf_file("tls", "".join(
        connection(name, port, [f"{name}/# both 1"], extra) for name, (port, extra)
        in blocks.items()))
    tern = ConfiguredBroker(BIN, conf)

    def connected(name):
        return tern.bridge("tern_bridge_connected", name, side="remote") == 1
    good = ("tls", "mutual", "insecure")
    check(f"{TAG} the bridges with a good CA connect over TLS: {', '.join(good)}",
          wait_for(lambda: all(connected(n) for n in good), 20), tern.text()[-3000:])
    time.sleep(0.5)  # the subscriptions
    at_tern, at_mosq = Client(tern.port, VERSION), Client(mosq.port, VERSION)
    at_tern.subscribe("#", 1)
    at_mosq.subscribe("#", 1)
    for name in blocks:
        for i in range(5):
            at_tern.publish(f"{name}/out", f"o{i}", qos=1)
            at_mosq.publish(f"{name}/in", f"i{i}", qos=1)

    def got(c, topic):
        return [p.decode() for t, p, *_ in c.got if t == topic]
    wait_for(lambda: all(len(got(at_mosq, f"{n}/out")) >= 5 and len(got(at_tern, f"{n}/in")) >= 5
                         for n in good), 15)
    time.sleep(0.5)
    for name in good:
        check(f"{TAG} {name}: QoS 1 both ways over TLS",
              got(at_mosq, f"{name}/out") == [f"o{i}" for i in range(5)] and
              got(at_tern, f"{name}/in") == [f"i{i}" for i in range(5)],
              f"out {got(at_mosq, f'{name}/out')}, in {got(at_tern, f'{name}/in')}")
    reasons = {
        "wrongca": "certificate verify failed",
        "wronghost": "certificate verify failed",
        "nocert": "",
    }
    for name, why in reasons.items():
        line = [ln for ln in tern.text().splitlines()
                if f"bridge connect_failed bridge={name} " in ln]
        check(f"{TAG} {name}: refused, down in /metrics, nothing crosses",
              not connected(name) and line and why in line[0] and
              not got(at_mosq, f"{name}/out") and not got(at_tern, f"{name}/in"),
              f"{line[:1]} connected {connected(name)}")
    for c in (at_tern, at_mosq):
        c.close()
    check(f"{TAG} tern-broker stops cleanly", tern.stop() == 0)
    mosq.stop()


{"fault": fault_test, "queue": queue_test, "tls": tls_test, "recvmax": receive_maximum_test}[MODE]()
done()
