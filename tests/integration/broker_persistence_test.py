#!/usr/bin/python3
"""tern-broker persistence against paho-mqtt and raw MQTT bytes.

Each case starts tern-broker on port 0 with a store in a temporary directory, stops it
(SIGTERM) or kills it (SIGKILL), starts it again on the same store and checks what clients
get: retained messages, a persistent session's queued QoS 1 messages, every message whose
PUBACK a publisher saw with persistence_sync always and batch, no duplicate of a QoS 2 message
between PUBREC and PUBREL, a damaged store that still lets the broker start (also when
there is no room to write it anew), and --check-store's JSON report and exit status.

usage: broker_persistence_test.py path/to/tern-broker
exit:  0 passed, 1 failed, 77 paho-mqtt missing (skipped)
"""

import json
import os
import signal
import socket
import struct
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from store_clients import PersistentSub, StoreBroker, small_files  # noqa: E402
import harness  # noqa: E402

BROKER = sys.argv[1]
THREADS_SET = int(os.environ.get("TERN_BROKER_THREADS") or 0) or None  # None: the default
THREADS = THREADS_SET or len(os.sched_getaffinity(0))
failures = []


def shard_file(store, cid):
    """The store file that holds client `cid`'s session: tern.db, or with threads N > 1
    that of its shard (tern.db.shardK)."""
    k = harness.shard_of(cid, THREADS)
    return os.path.join(store, "tern.db" + (f".shard{k}" if k else ""))


def shard_report(report, cid):
    """The part of a --check-store DIR report about `cid`'s shard."""
    k = harness.shard_of(cid, THREADS)
    return report["shards"][k - 1] if k else report


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


class Broker(StoreBroker):
    """`threads N` with TERN_BROKER_THREADS=N in the environment (CTest: 1, or 2 for the
    .threads2 run, a store file per shard), else the broker's default."""

    def __init__(self, store, sync="batch", extra=""):
        super().__init__(BROKER, store, sync, extra)

    def start(self, threads=None, preexec_fn=None):
        return super().start(threads or THREADS_SET, preexec_fn)


class Sub(PersistentSub):
    def __init__(self, port, cid, topic, qos=1):
        super().__init__(port, cid, topic, qos, check)


def publish_qos1(port, topic, payloads, retain=False):
    """Publishes and waits for every PUBACK."""
    c = mqtt.Client(client_id="", clean_session=True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, p, qos=1, retain=retain) for p in payloads]
    for i in infos:
        i.wait_for_publish(5)
    acked = all(i.is_published() for i in infos)
    c.disconnect()
    c.loop_stop()
    return acked


def restart_cycle(sig, label):
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start()
        s = Sub(b.port, "keeper", "q/#")
        s.close()
        time.sleep(0.1)
        ok = publish_qos1(b.port, "r/kept", ["retained"], retain=True)
        ok = publish_qos1(b.port, "q/a", [f"m{i}" for i in range(50)]) and ok
        check(ok, f"{label}: every publish acknowledged")
        b.stop(sig)
        b.start()
        s = Sub(b.port, "keeper", "q/#")
        got = s.wait_count(50)
        s.close()
        check([p for (_, p, _) in got] == [f"m{i}" for i in range(50)],
              f"{label}: the persistent session got its 50 queued QoS 1 messages in order "
              f"(got {len(got)})")
        r = Sub(b.port, "reader", "r/#", 0)
        got = r.wait_count(1)
        r.close()
        check(got == [("r/kept", "retained", True)], f"{label}: the retained message is there")
        # A second round on the store the restarted broker appends to.
        ok = publish_qos1(b.port, "q/b", [f"n{i}" for i in range(10)])
        b.stop(sig)
        b.start()
        s = Sub(b.port, "keeper", "q/#")
        got = s.wait_count(10)
        s.close()
        check(ok and [p for (_, p, _) in got] == [f"n{i}" for i in range(10)],
              f"{label}: after a second restart the session got the 10 messages published "
              f"after the first ({len(got)})")
        b.stop()


def acked_survive_kill(sync, publishers=1):
    """With several publishers, groups of several connections are in flight at once (with
    batch, one syncing while the next ones gather): each connection's output is released by
    the sync that covers it, never by an earlier one."""
    label = f"{sync}, {publishers} publisher(s)"
    with tempfile.TemporaryDirectory() as store:
        # Unbounded queue: beyond max_queued_messages (1,000 by default) the keeper's queue
        # drops messages that were acknowledged, as it may.
        b = Broker(store, sync, "max_queued_messages 0\n").start()
        s = Sub(b.port, "keeper", "a/#")
        s.close()
        time.sleep(0.1)
        acked = []
        lock = threading.Lock()
        clients = []
        mids = {}
        for k in range(publishers):
            c = mqtt.Client(client_id=f"fast{k}", clean_session=True)
            c.max_inflight_messages_set(50)

            def on_publish(cl, u, mid, k=k):
                with lock:
                    acked.append((k, mid))

            c.on_publish = on_publish
            c.connect("127.0.0.1", b.port)
            c.loop_start()
            clients.append(c)
        for i in range(2000):
            for k, c in enumerate(clients):
                info = c.publish("a/x", f"p{k}n{i}", qos=1)
                mids[(k, info.mid)] = f"p{k}n{i}"
        want = 300 * publishers
        deadline = time.time() + 10
        while time.time() < deadline:
            with lock:
                if len(acked) >= want:
                    break
            time.sleep(0.001)
        b.stop(signal.SIGKILL)  # in the middle of the stream
        time.sleep(0.1)
        for c in clients:
            c.loop_stop()
        with lock:
            seen = [mids[m] for m in acked if m in mids]
        check(len(seen) >= want, f"{label}: the publishers saw {len(seen)} PUBACKs before the kill")
        b.start()
        s = Sub(b.port, "keeper", "a/#")
        got = s.wait_count(len(seen), 20)
        s.close()
        payloads = set(p for (_, p, _) in got)
        missing = [p for p in seen if p not in payloads]
        check(not missing, f"{label}: every acknowledged message is there after kill -9 "
                           f"({len(seen)} acknowledged, {len(got)} received, "
                           f"{len(missing)} missing)")
        b.stop()


# ---- raw MQTT 3.1.1 for the QoS 2 case: the test decides when PUBREL goes.

def connect_raw(port, cid):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    payload = struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x00]) + struct.pack("!H", 60)
    payload += struct.pack("!H", len(cid)) + cid.encode()
    s.sendall(bytes([0x10, len(payload)]) + payload)
    ack = recv_packet(s)
    return s, ack


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b


def recv_packet(s):
    first = recv_exact(s, 1)[0]
    mult, length = 1, 0
    while True:
        d = recv_exact(s, 1)[0]
        length += (d & 0x7F) * mult
        mult *= 128
        if not d & 0x80:
            break
    return first, recv_exact(s, length)


def publish_qos2_raw(s, topic, payload, pid, dup=False):
    body = struct.pack("!H", len(topic)) + topic.encode() + struct.pack("!H", pid) + payload
    s.sendall(bytes([0x34 | (0x08 if dup else 0), len(body)]) + body)


def qos2_no_duplicate():
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start()
        s = Sub(b.port, "once", "x/#", 2)
        s.close()
        time.sleep(0.1)
        p, ack = connect_raw(b.port, "p2")
        check(ack == (0x20, bytes([0, 0])), "qos2: publisher connected (clean session 0)")
        publish_qos2_raw(p, "x/1", b"exactly", 5)
        check(recv_packet(p) == (0x50, struct.pack("!H", 5)), "qos2: PUBREC for packet 5")
        b.stop(signal.SIGKILL)  # between PUBREC and PUBREL
        p.close()
        b.start()
        p, ack = connect_raw(b.port, "p2")
        check(ack == (0x20, bytes([1, 0])), "qos2: publisher session present after the restart")
        publish_qos2_raw(p, "x/1", b"exactly", 5, dup=True)  # the client resends (DUP)
        check(recv_packet(p) == (0x50, struct.pack("!H", 5)), "qos2: PUBREC again")
        p.sendall(bytes([0x62, 2]) + struct.pack("!H", 5))
        check(recv_packet(p) == (0x70, struct.pack("!H", 5)), "qos2: PUBCOMP")
        p.close()
        s = Sub(b.port, "once", "x/#", 2)
        got = s.wait_count(2, 3)
        s.close()
        check([x[1] for x in got] == ["exactly"], f"qos2: delivered once, not twice ({got})")
        b.stop()


def damaged_store():
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start()
        s = Sub(b.port, "keeper", "d/#")
        s.close()
        time.sleep(0.1)
        publish_qos1(b.port, "d/x", [f"v{i}" for i in range(20)])
        b.stop(signal.SIGKILL)
        path = shard_file(store, "keeper")
        r = subprocess.run([BROKER, "--check-store", store], capture_output=True, text=True)
        report = shard_report(json.loads(r.stdout), "keeper")
        check(r.returncode == 0 and report["clean"] and report["queued"] == 20 and
              report["sessions"] == 1, f"check-store: intact store, exit 0 ({r.stdout.strip()})")
        data = bytearray(open(path, "rb").read())
        # A byte flipped inside one message record (the payload of v10; a byte at a fixed
        # offset could land in a commit marker, whose loss loses no message), and a torn write
        # at the end: the start of a record whose group was cut short (its acknowledgements
        # never went out; cutting into an acknowledged group would drop that whole group, by
        # design).
        at = data.find(b"v10")
        check(at > 0 and data.count(b"v10") == 1, "damaged store: v10's payload found once")
        data[at + 2] ^= 0xFF
        data += bytes([0x54, 0x72, 1, 8, 0, 0, 0, 40]) + bytes(10)
        open(path, "wb").write(bytes(data))
        r = subprocess.run([BROKER, "--check-store", path], capture_output=True, text=True)
        report = json.loads(r.stdout)
        kinds = sorted(d["kind"] for d in report["damage"])
        check(r.returncode == 1 and kinds == ["corrupt", "torn_tail"],
              f"check-store: damage found, exit 1 ({r.stdout.strip()})")
        b.start()
        log = b.text()
        check("cut off" in log and "skipped" in log, "damaged store: the broker started and "
              "reported what it cut off and skipped")
        s = Sub(b.port, "keeper", "d/#")
        got = s.wait_count(19, 5)
        s.close()
        want = [f"v{i}" for i in range(20) if i != 10]
        check([x[1] for x in got] == want, f"damaged store: the 19 undamaged messages are "
              f"delivered in order, v10 is not ({[x[1] for x in got]})")
        b.stop()
        r = subprocess.run([BROKER, "--check-store", store], capture_output=True, text=True)
        check(r.returncode == 0, "check-store: the store written after recovery is intact")
        check(os.path.exists(path + ".damaged"), "the damaged file is kept as NAME.damaged")
    with tempfile.TemporaryDirectory() as empty:
        r = subprocess.run([BROKER, "--check-store", empty], capture_output=True, text=True)
        check(r.returncode == 0 and json.loads(r.stdout)["exists"] is False,
              "check-store: no store yet is exit 0, exists false")


def pub_json(port, topic, payloads, version="5"):
    """tern-pub -l --json at QoS 1: (exit status, [reason_code per acknowledged message]).
    With threads > 1 its client id is on another shard than the subscriber "offline" of the
    full-store cases: its acknowledgements wait for that shard's store."""
    other = (harness.shard_of("offline", THREADS) + 1) % THREADS
    p = subprocess.run([os.path.join(os.path.dirname(BROKER), "tern-pub"), "-h", "127.0.0.1",
                        "-p", str(port), "-V", version, "-q", "1", "-t", topic, "-l", "--json",
                        "-i", harness.ids_on(other, "full-pub-", THREADS)[0]],
                       input="".join(x + "\n" for x in payloads).encode(), capture_output=True,
                       timeout=60)
    lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
    return p.returncode, {x["seq"]: x.get("reason_code", 0) for x in lines if "seq" in x}


def kill_while_store_failing(version, sync="batch"):
    """A group's write fails (the file reaches its size limit): the PUBACKs held for that group
    are never sent, since their records are not on disk; the connection closes instead
    (5.0: DISCONNECT 0x97). Killed with SIGKILL while the store still cannot be written and
    started again without the limit, the broker delivers every message it acknowledged.
    (When the PUBACKs of the failed group were released, they were lost here.)"""
    name = ("5.0" if version == "5" else "3.1.1") + " " + sync
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, sync).start(preexec_fn=small_files)
        s = Sub(b.port, "offline", "full/#")
        s.close()
        acked, refused, codes = set(), 0, []
        for r in range(8):
            batch = [f"a{r}{i:03d}" + "x" * 1000 for i in range(200)]
            code, got = pub_json(b.port, "full/t", batch, version)
            codes.append(code)
            acked |= {batch[n - 1][:5] for n, rc in got.items() if rc < 0x80}
            refused += sum(1 for rc in got.values() if rc >= 0x80)
            if "QoS 1/2 publishes are refused" in b.text():
                break
        check(b.proc.poll() is None and "QoS 1/2 publishes are refused" in b.text()
              and len(acked) < 200 * len(codes),
              f"{name}: the store over its size limit: {len(acked)} acknowledged, "
              f"{refused} refused, tern-pub exits {codes}")
        b.stop(signal.SIGKILL)
        b.start()
        s = Sub(b.port, "offline", "full/#")
        got = {m[1][:5] for m in s.wait_count(len(acked), 20)}
        s.close()
        b.stop()
        missing = acked - got
        check(not missing, f"{name}: killed while failing, then restarted: all {len(acked)} "
              f"acknowledged messages delivered ({len(missing)} missing: {sorted(missing)[:5]})")


def damaged_store_no_room():
    """A damaged store is written anew at start. When that write finds no room (a 256 KiB
    file size limit, as a full disk), the broker starts all the same with the store failing:
    QoS 1 publishes are not acknowledged, and the damaged file stays the store; killed then
    and started with room, it delivers every message acknowledged before. (Before, the
    damaged file was renamed away first and the start ended with the error, so the next
    start found no store at all.)"""
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start()
        s = Sub(b.port, "offline", "full/#")
        s.close()
        time.sleep(0.1)
        batch = [f"m{i:03d}" + "x" * 1000 for i in range(300)]  # a store over 256 KiB
        publish_qos1(b.port, "full/t", batch)
        b.stop()
        path = shard_file(store, "offline")
        size = os.path.getsize(path)
        with open(path, "ab") as f:
            f.write(bytes([0x54, 0x72, 1, 8, 0, 0, 0, 40]) + bytes(10))  # a torn tail
        try:
            b.start(preexec_fn=small_files)
            started = True
        except RuntimeError as e:
            started = False
            print(f"    {str(e)[-600:]}")
        log = b.text()
        check(started and "cut off" in log and "QoS 1/2 publishes are refused" in log,
              "damaged store, no room to write it anew: the broker starts with the store "
              "failing and says so")
        if started:
            code, got = pub_json(b.port, "full/t", ["not-kept"])
            check(not any(rc < 0x80 for rc in got.values()),
                  f"damaged store, no room: a QoS 1 publish is not acknowledged ({got})")
            check(os.path.getsize(path) > size and os.path.exists(path + ".damaged"),
                  "damaged store, no room: the damaged file stays the store (a copy kept as "
                  "NAME.damaged)")
            b.stop(signal.SIGKILL)
        b.start()
        s = Sub(b.port, "offline", "full/#")
        got = [m[1][:4] for m in s.wait_count(len(batch), 20)]
        s.close()
        b.stop()
        check(got == [x[:4] for x in batch],
              f"damaged store, no room, killed, started with room: all {len(batch)} messages "
              f"delivered in order ({len(got)})")


def store_cannot_write():
    """A store that cannot grow (a 256 KiB file size limit, as a full disk): QoS 1 publishes
    are refused with 0x97 instead of acknowledged without being durable; once the limit is
    lifted the store is written anew and publishes are accepted again; every acknowledged
    message survives a restart."""
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start(preexec_fn=small_files)
        s = Sub(b.port, "offline", "full/#")
        s.close()  # its queue is kept on disk while it is away
        # Rounds of 1 KiB messages until the broker refuses some: the failed write is noticed
        # when its sync completes, so the first round may be acknowledged in full; the round
        # whose write failed ends with DISCONNECT 0x97 (its PUBACKs are never sent), the
        # next one is answered 0x97.
        first, codes, code = [], {}, 0
        for r in range(8):
            batch = [f"a{r}{i:03d}" + "x" * 1000 for i in range(200)]
            code, got = pub_json(b.port, "full/t", batch)
            codes.update({len(first) + n: rc for n, rc in got.items()})
            first += batch
            if any(rc == 0x97 for rc in got.values()):
                break
        refused = [n for n, rc in codes.items() if rc == 0x97]
        check(code == 1 and refused and b.proc.poll() is None,
              f"store over its size limit: tern-pub exit {code}, {len(refused)} of "
              f"{len(codes)} answered 0x97, broker running")
        check("QoS 1/2 publishes are refused (0x97)" in b.text(),
              "the store failure is logged with what it means")
        lifted = subprocess.run(["prlimit", "--pid", str(b.proc.pid), "--fsize=unlimited"],
                                capture_output=True)
        deadline = time.time() + 10
        while time.time() < deadline and "writing works again" not in b.text():
            time.sleep(0.1)
        check(lifted.returncode == 0 and "writing works again" in b.text(),
              "limit lifted: the store is written again within the retry interval"
              + ("" if "writing works again" in b.text() else
                 f"\n    prlimit: {lifted.returncode} {lifted.stderr!r}\n    log: {b.text()[-1500:]}"))
        second = [f"b{i:04d}" for i in range(50)]
        code2, codes2 = pub_json(b.port, "full/t", second)
        check(code2 == 0 and len(codes2) == 50 and all(rc < 0x80 for rc in codes2.values()),
              f"then publishes are accepted again (exit {code2})"
              + ("" if code2 == 0 else f"\n    log: {b.text()[-1500:]}"))
        b.stop()
        acked = {first[n - 1][:5] for n, rc in codes.items() if rc < 0x80}
        acked |= {second[n - 1] for n, rc in codes2.items() if rc < 0x80}
        b.start()
        s = Sub(b.port, "offline", "full/#")
        got = {m[1][:5] for m in s.wait_count(len(acked), 20)}
        s.close()
        b.stop()
        missing = acked - got
        check(not missing, f"after a restart the offline session gets all {len(acked)} "
              f"acknowledged messages ({len(missing)} missing)")


def main():
    restart_cycle(signal.SIGTERM, "graceful restart")
    restart_cycle(signal.SIGKILL, "kill -9")
    acked_survive_kill("always")
    acked_survive_kill("batch")
    acked_survive_kill("batch", 4)
    qos2_no_duplicate()
    damaged_store()
    damaged_store_no_room()
    store_cannot_write()
    kill_while_store_failing("5")
    kill_while_store_failing("311")
    kill_while_store_failing("5", "always")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
