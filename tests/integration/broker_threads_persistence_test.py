#!/usr/bin/python3
"""tern-broker with `threads 2` and persistence, against paho-mqtt (docs/persistence.md,
"Threads"): a store per shard.

Persistent-session subscribers on both shards, QoS 1 and QoS 2 publishers on both shards,
retained messages set from both shards:
- a clean restart (SIGTERM) keeps sessions, queued messages, subscriptions and retained
  messages, and --check-store reports both shards' files;
- SIGKILL during traffic (persistence_sync batch): every acknowledged QoS 1 message arrives
  at least once, every acknowledged QoS 2 message exactly once (no QoS 2 message twice),
  and a retained message set from shard 1 is, after the restart, the last one acknowledged
  or a later one (shard 1 acknowledges only once shard 0, which records the retained
  messages, has synced it);
- a share group with a member on each shard, restarted: each message reaches one member;
- a share group's delivery held up on its way back from the group's home: the publisher's
  acknowledgement waits for it, and nothing acknowledged is lost to a kill;
- a share group's delivery sent back to the home by a member's shard (the member went
  offline) and held up there: the acknowledgement waits for the home's re-pick, and nothing
  acknowledged is lost to a kill;
- a share group's QoS 2 messages held up before the group's home, or on their way from it
  to the member's shard, and a kill: each completed message reaches the member once; and
  killed while they stream: none lost, none twice;
- QoS 2 messages left in shard 0's outbox by a kill are routed at start under the acl_file
  (with the user names the store keeps) and max_queued_bytes, with per_listener_settings
  under the acl_file of the listener each client came through (also when the store was
  written without per_listener_settings), to a bridge's local
  session whatever the acl_file says, and not to a No Local subscription of their
  publisher's client id; nor, while running, when the other shard takes them;
- the threads 2 store restarted with threads 1, then that store with threads 2 again:
  every queued message arrives, none twice, retained messages kept;
- a restored session whose listener the configuration no longer has gets, while the
  broker runs, only what every listener's acl_file allows;
- threads 2 -> 1 with no room for the new file: the broker starts with the store failing
  and the old files untouched; once there is room the new one is written and nothing
  queued is lost;
- a start that stopped while replacing the store files for another number of threads is
  finished by the next (its commit file); without a commit file a NAME.new is not read.

usage: broker_threads_persistence_test.py path/to/tern-broker [PART ...]
       PART: restart, share, replay, threads (default: all, in that order)
exit:  0 passed, 1 failed, 2 unknown part, 77 paho-mqtt missing (skipped)
"""

import collections
import contextlib
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402

try:
    import paho.mqtt.client as mqtt
except ImportError:
    print("SKIP: paho-mqtt is not installed")
    sys.exit(77)
import store_clients  # noqa: E402

BROKER = sys.argv[1]
check = harness.Checks()
# Generous: a loaded CI machine with ASan. Waits end early once the awaited thing happened.
WAIT = 60.0

SUB0, SUB1 = harness.ids_on(0, "keeper", 2)[0], harness.ids_on(1, "keeper", 2)[0]
PUB0, PUB1 = harness.ids_on(0, "pub", 2)[0], harness.ids_on(1, "pub", 2)[0]


def wait_until(cond, timeout=WAIT):
    return store_clients.wait_until(cond, timeout)


class Broker(store_clients.StoreBroker):
    def __init__(self, store, sync="batch", limits="max_queued_messages 0\n", head=""):
        super().__init__(BROKER, store, sync, limits + "sys_interval 0\n", WAIT, head)


class Sub(store_clients.PersistentSub):
    def __init__(self, port, cid, topic="q/#", qos=2, username=None):
        super().__init__(port, cid, topic, qos, check, WAIT, quiet=0.5, username=username)


class Pub:
    """A paho publisher that records which of its messages were acknowledged. `clean` False:
    a persistent session (stored), whose QoS 2 messages to other shards go through the
    outbox; a clean session's wait for the other shards' syncs instead."""

    def __init__(self, port, cid, clean=True):
        self.acked = set()
        self.mids = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(client_id=cid, clean_session=clean)
        self.c.max_inflight_messages_set(20)
        self.c.on_publish = self.on_publish
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def on_publish(self, c, u, mid):
        with self.lock:
            self.acked.add(mid)

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        with self.lock:
            self.mids[info.mid] = payload
        return info

    def acked_payloads(self):
        with self.lock:
            return [self.mids[m] for m in self.acked if m in self.mids]

    def wait_acks_stop(self, quiet=2.0):
        """Until the acknowledgements stop coming (none for `quiet` s), bounded by WAIT."""
        last, since, end = -1, time.monotonic(), time.monotonic() + WAIT
        while time.monotonic() < end and time.monotonic() - since < quiet:
            n = len(self.acked_payloads())
            if n != last:
                last, since = n, time.monotonic()
            time.sleep(0.05)

    def close(self, clean=True):
        if clean:
            self.c.disconnect()
        self.c.loop_stop()


def publish_all(port, cid, items):
    """items: (topic, payload, qos, retain), published in order; True once all are acked."""
    p = Pub(port, cid)
    infos = [p.publish(*it) for it in items]
    ok = wait_until(lambda: all(i.is_published() for i in infos))
    p.close()
    return ok


def payloads(got):
    return [p for (_, p, _) in got]


def check_store(store):
    r = subprocess.run([BROKER, "--check-store", store], capture_output=True, text=True)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, {}


def retained_of(port, topics):
    c = mqtt.Client(client_id="", clean_session=True)
    got = {}
    lock = threading.Lock()
    done = threading.Event()

    def on_message(cl, u, m):
        with lock:
            got[m.topic] = m.payload.decode()
            if all(t in got for t in topics):
                done.set()

    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc: cl.subscribe("r/#", 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(WAIT)
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()
    with lock:
        return dict(got)


def clean_restart():
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start(2)
        for s in (Sub(b.port, SUB0), Sub(b.port, SUB1)):
            s.close()
        ok = True
        for cid in (PUB0, PUB1):
            ok = publish_all(b.port, cid,
                             [("q/" + cid, f"{cid}-q1-{i}", 1, False) for i in range(20)] +
                             [("q/" + cid, f"{cid}-q2-{i}", 2, False) for i in range(20)] +
                             [("r/" + cid, f"{cid}-kept", 1, True)]) and ok
        ok = publish_all(b.port, PUB0, [("r/both", "from shard 0", 1, True)]) and ok
        ok = publish_all(b.port, PUB1, [("r/both", "from shard 1", 2, True)]) and ok
        check(ok, "clean restart: every publish on both shards acknowledged")
        check(b.stop() == 0, "clean restart: SIGTERM, exit 0")
        rc, rep = check_store(store)
        shards = rep.get("shards", [])
        check(rc == 0 and rep.get("sessions") == 1 and rep.get("retained") == 3 and
              len(shards) == 1 and shards[0].get("sessions") == 1 and
              shards[0].get("retained") == 0 and shards[0]["file"].endswith("tern.db.shard1") and
              rep.get("queued") == 80 and shards[0].get("queued") == 80,
              f"clean restart: --check-store reports both shards' files ({rep})")
        b.start(2)
        want = [f"{c}-q{q}-{i}" for c in (PUB0, PUB1) for q in (1, 2) for i in range(20)]
        for cid in (SUB0, SUB1):
            s = Sub(b.port, cid)
            got = payloads(s.wait_count(len(want)))
            for c in (PUB0, PUB1):
                mine = [p for p in got if p.startswith(c + "-")]
                check(mine == [p for p in want if p.startswith(c + "-")],
                      f"clean restart: {cid} (shard {harness.shard_of(cid, 2)}) got the 40 "
                      f"messages of {c} (shard {harness.shard_of(c, 2)}) in order ({len(mine)})")
            s.close()
        r = retained_of(b.port, ["r/" + PUB0, "r/" + PUB1, "r/both"])
        check(r == {"r/" + PUB0: PUB0 + "-kept", "r/" + PUB1: PUB1 + "-kept",
                    "r/both": "from shard 1"},
              f"clean restart: the retained messages set from both shards are there ({r})")
        # The subscriptions were kept: a new message reaches both sessions while offline.
        ok = publish_all(b.port, PUB1, [("q/after", "after", 1, False)])
        b.stop()
        b.start(2)
        for cid in (SUB0, SUB1):
            s = Sub(b.port, cid)
            got = payloads(s.wait_count(1))
            s.close()
            check(ok and got == ["after"],
                  f"clean restart: {cid}'s subscription was kept over two restarts ({got})")
        b.stop()


def kill_during_traffic():
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start(2)
        for s in (Sub(b.port, SUB0), Sub(b.port, SUB1)):
            s.close()
        pubs = {cid: Pub(b.port, cid) for cid in (PUB0, PUB1)}
        qos_of = {}
        retained = []  # (index, info) of r/last set from shard 1's publisher
        for i in range(3000):
            for cid, p in pubs.items():
                q = 1 + (i % 2)
                payload = f"{cid}-{i}"
                qos_of[payload] = q
                p.publish("q/" + cid, payload, q)
            if i % 10 == 0:
                retained.append((i, pubs[PUB1].publish("r/last", f"{i}", 1, True)))
        # Killed once both have had a good share acknowledged, well before the end.
        progress = wait_until(lambda: all(len(p.acked) >= 400 for p in pubs.values()))
        b.stop(signal.SIGKILL)
        for p in pubs.values():
            p.close(clean=False)
        acked = [x for p in pubs.values() for x in p.acked_payloads() if x in qos_of]
        check(progress and len(acked) < 2 * 3000 + 300,
              f"kill -9: killed during traffic, {len(acked)} messages acknowledged before")
        last_retained = max([i for (i, info) in retained if info.is_published()], default=-1)
        b.start(2)
        for cid in (SUB0, SUB1):
            s = Sub(b.port, cid)
            got = payloads(s.wait_count(len(acked)))
            s.close()
            have = {}
            for p in got:
                have[p] = have.get(p, 0) + 1
            missing = [p for p in acked if p not in have]
            twice = [p for p, n in have.items() if n > 1 and qos_of.get(p) == 2]
            check(not missing and not twice,
                  f"kill -9: {cid} (shard {harness.shard_of(cid, 2)}) has every acknowledged "
                  f"message ({len(acked)} acknowledged, {len(got)} received, {len(missing)} "
                  f"missing, {len(twice)} QoS 2 twice)")
        r = retained_of(b.port, ["r/last"])
        value = int(r.get("r/last", "-1"))
        check(last_retained >= 0 and value >= last_retained,
              f"kill -9: the retained message set from shard 1 is the last acknowledged one "
              f"or later ({value} >= {last_retained})")
        b.stop()


def raw_stalled_subscriber(port, cid, topic="q/#"):
    """A 3.1.1 client (Keep Alive 0, clean session) subscribed to `topic` at QoS 1 that
    never reads again."""
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    body = struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x02]) + struct.pack("!H", 0)
    body += struct.pack("!H", len(cid)) + cid.encode()
    s.sendall(bytes([0x10, len(body)]) + body)
    s.recv(4)  # CONNACK
    sub = struct.pack("!H", 1) + struct.pack("!H", len(topic)) + topic.encode() + bytes([1])
    s.sendall(bytes([0x82, len(sub)]) + sub)
    s.recv(5)  # SUBACK
    return s


@contextlib.contextmanager
def held_up(b, shard, prefix, kill=True):
    """Shard `shard` holds up the channel from the other shard: a subscriber there that never
    reads (`<prefix>slow`, hold/#) is congested by 200 QoS 1 messages to hold/x from a
    publisher on the other shard (`<prefix>fill`). The body publishes what is to wait in that
    channel (or in the outbox before it); after it the broker is killed (SIGKILL) and both
    clients are closed, or without `kill` the subscriber goes (its session ends, the channel
    flows again) and the publisher disconnects."""
    slow = raw_stalled_subscriber(b.port, harness.ids_on(shard, prefix + "slow", 2)[0], "hold/#")
    filler = Pub(b.port, harness.ids_on(1 - shard, prefix + "fill", 2)[0])
    for i in range(200):
        filler.publish("hold/x", f"h{i}", 1)
    time.sleep(1.0)
    yield
    if not kill:
        slow.close()
        filler.close()
        return
    b.stop(signal.SIGKILL)
    filler.close(clean=False)
    slow.close()


def after_restart(b, subscriber, acked, timeout=None):
    """Restarts the killed broker on its store, lets `subscriber()` collect, stops it again:
    (the acknowledged payloads that did not arrive, the payloads that arrived twice)."""
    b.start(2)
    s = subscriber()
    got = payloads(s.wait_count(len(acked)) if timeout is None
                   else s.wait_count(len(acked), timeout=timeout))
    s.close()
    b.stop()
    counts = collections.Counter(got)
    return [x for x in acked if x not in counts], sorted(x for x, n in counts.items() if n > 1)


def missing_after_restart(b, subscriber, acked):
    """after_restart(), the acknowledged payloads that did not arrive only."""
    return after_restart(b, subscriber, acked)[0]


def stalled_shard():
    """Shard 1 stops taking shard 0's messages (a congested subscriber there holds up the
    channel): shard 0 must not acknowledge what shard 1 has not recorded for its offline
    persistent session. Without the wait the publisher got every PUBACK at once, and a kill
    lost the messages still in the channel for that session."""
    limits = "max_queued_messages 100\nmax_inflight_messages 10\nbackpressure_timeout_ms 600000\n"
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, limits=limits).start(2)
        Sub(b.port, SUB1).close()
        slow = raw_stalled_subscriber(b.port, harness.ids_on(1, "slow", 2)[0])
        p = Pub(b.port, PUB0)
        for i in range(90):
            p.publish("q/s", f"s{i}", 1)
        p.wait_acks_stop()
        b.stop(signal.SIGKILL)
        p.close(clean=False)
        slow.close()
        acked = p.acked_payloads()
        check(0 < len(acked) < 90,
              f"stalled shard: shard 0 acknowledged {len(acked)} of 90 while shard 1 held up "
              f"its channel")
        missing = missing_after_restart(b, lambda: Sub(b.port, SUB1), acked)
        check(not missing, f"stalled shard, kill -9: {SUB1} (shard 1) has every message shard 0 "
                           f"acknowledged ({len(acked)} acknowledged, {len(missing)} missing)")


def qos2_clean_publisher(clean):
    """QoS 2 from shard 0 to an offline persistent session on shard 1 while shard 1 holds up
    the channel. A persistent publisher's messages go through shard 0's outbox: each PUBREC
    waits for shard 0's sync only, so all 30 complete. A clean session's packet ids are not
    stored and it resends nothing after a crash, so its messages skip the outbox: a PUBREC
    waits for shard 1's sync, as a QoS 1 PUBACK does, and the completions stop while shard 1
    takes nothing. Either way, after a kill every completed message reaches the subscriber
    once."""
    limits = "max_queued_messages 100\nmax_inflight_messages 10\nbackpressure_timeout_ms 600000\n"
    what = f"QoS 2 across shards, {'clean' if clean else 'persistent'} publisher"
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, limits=limits).start(2)
        Sub(b.port, SUB1).close()
        with held_up(b, 1, "c2" if clean else "p2"):
            p = Pub(b.port, harness.ids_on(0, "c2pub" if clean else "p2pub", 2)[0], clean=clean)
            for i in range(30):
                p.publish("q/c", f"c{i}", 2)
            p.wait_acks_stop()
            acked = p.acked_payloads()
        p.close(clean=False)
        if clean:
            check(len(acked) < 30, f"{what}: {len(acked)} of 30 completed while shard 1 held "
                                   f"up its channel (the PUBRECs wait for shard 1)")
        else:
            check(len(acked) == 30, f"{what}: all 30 completed while shard 1 held up its "
                                    f"channel ({len(acked)}; the outbox holds them)")
        missing, twice = after_restart(b, lambda: Sub(b.port, SUB1), acked, timeout=5.0)
        check(not missing and not twice,
              f"{what}, kill -9: {SUB1} (shard 1) has every completed message once "
              f"({len(acked)} completed, {len(missing)} missing, {len(twice)} twice)")


def stalled_share_member():
    """A share group homed on shard 1 whose only member is an offline persistent session on
    shard 0, and a publisher on shard 0: each message goes to shard 1, which picks the
    member and sends it back to shard 0. Shard 0 takes nothing from shard 1 for a while (a
    congested subscriber there holds up that channel): the publisher must not get its
    acknowledgements while the deliveries wait in that channel, unrecorded. Without the
    wait shard 1 confirmed the messages after its own sync (it records nothing for them),
    all 20 were acknowledged, and a kill lost every one."""
    limits = "max_queued_messages 100\nmax_inflight_messages 10\nbackpressure_timeout_ms 600000\n"
    group = next(g for g in (f"$share/ss{i}/ss/#" for i in range(100))
                 if harness.shard_of(g, 2) == 1)
    member = harness.ids_on(0, "ssm", 2)[0]
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, limits=limits).start(2)
        Sub(b.port, member, topic=group, qos=1).close()
        # Shard 1's messages congest a subscriber on shard 0, which then holds up the
        # channel from shard 1.
        slow = raw_stalled_subscriber(b.port, harness.ids_on(0, "ssslow", 2)[0], "hold/#")
        filler = Pub(b.port, PUB1)
        for i in range(200):
            filler.publish("hold/x", f"h{i}", 1)
        time.sleep(1.0)
        p = Pub(b.port, PUB0)
        for i in range(20):
            p.publish("ss/t", f"s{i}", 1)
        time.sleep(2.0)
        held = len(p.acked_payloads())
        check(held == 0, f"stalled share member: none of 20 acknowledged while their deliveries "
                         f"wait in the held channel ({held})")
        slow.close()  # its session ends, the channel flows again
        check(wait_until(lambda: len(p.acked_payloads()) == 20),
              f"stalled share member: all 20 acknowledged once it flows "
              f"({len(p.acked_payloads())})")
        acked = p.acked_payloads()
        b.stop(signal.SIGKILL)
        p.close(clean=False)
        filler.close(clean=False)
        missing = missing_after_restart(b, lambda: Sub(b.port, member, topic=group, qos=1), acked)
        check(not missing, f"stalled share member, kill -9: the member has every acknowledged "
                           f"message ({len(acked)} acknowledged, {len(missing)} missing)")


def share_again(kill_while_held):
    """A share group homed on shard 1 whose only member, on shard 0, disconnects while the
    channel from shard 0 to shard 1 is held up (a congested subscriber on shard 1): the home
    does not hear that the member went offline and picks it for each message of a publisher
    on shard 1; shard 0 sends every delivery back (share_op::again) into the held channel.
    The publisher must not get its acknowledgements before the home has the re-picks: before,
    shard 0 confirmed each delivery once it had synced (nothing, having sent it back), all 20
    were acknowledged at once, and a kill lost every one. With kill_while_held the broker is
    killed while the agains wait; otherwise once they flow and all are acknowledged."""
    limits = "max_queued_messages 100\nmax_inflight_messages 10\nbackpressure_timeout_ms 600000\n"
    group = next(g for g in (f"$share/ag{i}/ag/#" for i in range(100))
                 if harness.shard_of(g, 2) == 1)
    member = harness.ids_on(0, "agm", 2)[0]
    what = "share again" + (", killed while held" if kill_while_held else "")
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, limits=limits).start(2)
        m = Sub(b.port, member, topic=group, qos=1)
        time.sleep(0.5)  # the join reaches the group's home
        # Shard 0's messages congest a subscriber on shard 1, which then holds up the
        # channel from shard 0: the member's offline note and its agains wait there.
        slow = raw_stalled_subscriber(b.port, harness.ids_on(1, "agslow", 2)[0], "hold/#")
        filler = Pub(b.port, PUB0)
        for i in range(200):
            filler.publish("hold/x", f"h{i}", 1)
        time.sleep(1.0)
        m.close()
        time.sleep(0.5)
        p = Pub(b.port, PUB1)
        for i in range(20):
            p.publish("ag/t", f"a{i}", 1)
        time.sleep(2.0)
        held = len(p.acked_payloads())
        check(held == 0, f"{what}: none of 20 acknowledged while the agains wait in the held "
                         f"channel ({held})")
        if not kill_while_held:
            slow.close()  # its session ends, the channel flows again
            check(wait_until(lambda: len(p.acked_payloads()) == 20),
                  f"{what}: all 20 acknowledged once it flows ({len(p.acked_payloads())})")
        acked = p.acked_payloads()
        b.stop(signal.SIGKILL)
        p.close(clean=False)
        filler.close(clean=False)
        slow.close()
        missing = missing_after_restart(b, lambda: Sub(b.port, member, topic=group, qos=1), acked)
        check(not missing, f"{what}, kill -9: the member has every acknowledged message "
                           f"({len(acked)} acknowledged, {len(missing)} missing)")


def qos2_share_replay(member_shard, held=1):
    """A share group homed on shard 1 whose only member is an offline persistent session on
    `member_shard`, and a QoS 2 publisher on shard 0, whose messages go to shard 1 through
    shard 0's outbox: its PUBREC waits only for shard 0's sync (the outbox item is there,
    with the packet id). Shard `held` takes nothing from the other shard for a while (a
    congested subscriber there holds up the channel): with 1, shard 0's messages wait
    before the group's home; with 0 (member on shard 0), the home's deliveries to the member
    wait. The broker is killed; each acknowledged message must reach the member once. Before,
    the start did not route shard 0's outbox items to share groups, and the home sent its
    deliveries to the member's shard directly, unrecorded: all 20 were lost each way."""
    limits = "max_queued_messages 100\nmax_inflight_messages 10\nbackpressure_timeout_ms 600000\n"
    group = next(g for g in (f"$share/oq{i}/oq/#" for i in range(100))
                 if harness.shard_of(g, 2) == 1)
    member = harness.ids_on(member_shard, "oqm", 2)[0]
    what = f"QoS 2 share replay, member on shard {member_shard}, shard {held} held"
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, limits=limits).start(2)
        Sub(b.port, member, topic=group, qos=2).close()
        with held_up(b, held, "oq"):
            p = Pub(b.port, harness.ids_on(0, "oqpub", 2)[0], clean=False)
            for i in range(20):
                p.publish("oq/t", f"o{i}", 2)
            check(wait_until(lambda: len(p.acked_payloads()) == 20),
                  f"{what}: all 20 completed (PUBCOMP) ({len(p.acked_payloads())})")
            time.sleep(0.5)  # the home takes them (held 0) and sends them on
            acked = p.acked_payloads()
        p.close(clean=False)
        missing, twice = after_restart(b, lambda: Sub(b.port, member, topic=group, qos=2),
                                       acked, timeout=5.0)
        check(not missing and not twice,
              f"{what}, kill -9: the member has every acknowledged message once "
              f"({len(acked)} acknowledged, {len(missing)} missing, {len(twice)} twice)")


def replay_checks():
    """Shard 0's QoS 2 messages wait in its outbox for shard 1, which holds up the channel,
    and the broker is killed: the start routes them into shard 1's store as the engine
    would have, under the acl_file and max_queued_bytes. alice may read them, bob (his user
    name kept in his session record) may not; 200 bytes hold 8 of them (24 bytes each:
    topic and payload). Before, the start applied neither: bob got all 20, alice too."""
    limits = ("max_queued_messages 100\nmax_inflight_messages 10\n"
              "backpressure_timeout_ms 600000\nmax_queued_bytes 200\n")
    alice, bob = harness.ids_on(1, "rpa", 2)[0], harness.ids_on(1, "rpb", 2)[0]
    what = "replay at start under acl_file and max_queued_bytes"
    with tempfile.TemporaryDirectory() as store:
        acl = os.path.join(store, "acl")
        with open(acl, "w") as f:
            f.write("topic readwrite #\n"      # anonymous: the publishers, the slow one
                    "user alice\ntopic read rp/#\n"
                    "user bob\ntopic read bobs/#\n")
        b = Broker(store, limits=limits + f"acl_file {acl}\n").start(2)
        Sub(b.port, alice, topic="rp/#", qos=2, username="alice").close()
        Sub(b.port, bob, topic="#", qos=2, username="bob").close()  # granted: bobs/#
        with held_up(b, 1, "rp"):
            p = Pub(b.port, harness.ids_on(0, "rppub", 2)[0], clean=False)
            sent = [f"r{i:02}" + "." * 17 for i in range(20)]
            for x in sent:
                p.publish("rp/t", x, 2)
            check(wait_until(lambda: len(p.acked_payloads()) == 20),
                  f"{what}: all 20 completed (PUBCOMP) ({len(p.acked_payloads())})")
        p.close(clean=False)
        b.start(2)
        a = Sub(b.port, alice, topic="rp/#", qos=2, username="alice")
        got_a = payloads(a.wait_count(8, timeout=10.0))
        bb = Sub(b.port, bob, topic="#", qos=2, username="bob")
        got_b = payloads(bb.wait_count(1, timeout=3.0))
        a.close()
        bb.close()
        b.stop()
        check(got_a == sent[:8],
              f"{what}: alice gets the first 8 (200 bytes), in order ({len(got_a)}: {got_a})")
        check(not got_b, f"{what}: bob, who may not read rp/t, gets none ({len(got_b)})")
        check("may not read the topic (acl_file)" in b.log and
              "(max_queued_messages, max_queued_bytes)" in b.log,
              f"{what}: the start logs what each bound dropped")


def replay_listener_acl(written_with_policies=True):
    """per_listener_settings: the first listener's acl_file lets alice read rp/#, the
    second's does not let her read rp/t. Two sessions of alice's on shard 1, one through
    each listener; shard 0's QoS 2 messages to rp/t wait in its outbox (shard 1 holds up the
    channel) and the broker is killed. The start routes them under the acl_file of the
    listener each client came through (the store keeps it): the first gets them, the second
    not; and a message published after the start, while both are offline, goes the same
    way (a restored session has its listener's acl_file). Before, both checks used the
    broker-wide acl_file (none here): the second got all of them.
    `written_with_policies` False: the store is written by a broker with the same two
    listeners and no per_listener_settings (no acl_file at all), and the restart adds them;
    the store still names each session's listener, so the same holds. Before, a session
    record named its listener only when that listener had a policy of its own, and the
    second session got all 21."""
    limits = ("max_queued_messages 100\nmax_inflight_messages 10\n"
              "backpressure_timeout_ms 600000\n")
    tag = "ls" if written_with_policies else "lp"
    via_a, via_b = harness.ids_on(1, tag + "a", 2)[0], harness.ids_on(1, tag + "b", 2)[0]
    what = ("replay at start under the listener's acl_file" +
            ("" if written_with_policies else ", store written without per_listener_settings"))
    port_b = harness.free_port()
    with tempfile.TemporaryDirectory() as store:
        acl_a, acl_b = os.path.join(store, "acl_a"), os.path.join(store, "acl_b")
        with open(acl_a, "w") as f:
            f.write("topic readwrite #\nuser alice\ntopic read rp/#\n")
        with open(acl_b, "w") as f:
            f.write("user alice\ntopic read rp/#\ntopic deny rp/t\n")
        policies = dict(limits=limits + f"acl_file {acl_a}\nlistener {port_b} 127.0.0.1\n"
                        f"allow_anonymous true\nacl_file {acl_b}\n",
                        head="per_listener_settings true\n")
        if written_with_policies:
            b = Broker(store, **policies).start(2)
        else:
            b = Broker(store, limits=limits + f"listener {port_b} 127.0.0.1\n").start(2)
        Sub(b.port, via_a, topic="rp/#", qos=2, username="alice").close()
        Sub(port_b, via_b, topic="rp/#", qos=2, username="alice").close()
        with held_up(b, 1, tag):
            p = Pub(b.port, harness.ids_on(0, tag + "pub", 2)[0], clean=False)
            sent = [f"l{i:02}" for i in range(20)]
            for x in sent:
                p.publish("rp/t", x, 2)
            check(wait_until(lambda: len(p.acked_payloads()) == 20),
                  f"{what}: all 20 completed (PUBCOMP) ({len(p.acked_payloads())})")
        p.close(clean=False)
        if not written_with_policies:
            b.extra, b.head = policies["limits"] + "sys_interval 0\n", policies["head"]
        b.start(2)
        check(publish_all(b.port, harness.ids_on(0, tag + "pub", 2)[0],
                          [("rp/t", "live", 2, False)]),
              f"{what}: a message to both offline sessions after the start")
        a = Sub(b.port, via_a, topic="rp/#", qos=2, username="alice")
        got_a = payloads(a.wait_count(21, timeout=10.0))
        bb = Sub(port_b, via_b, topic="rp/#", qos=2, username="alice")
        got_b = payloads(bb.wait_count(1, timeout=3.0))
        a.close()
        bb.close()
        b.stop()
        check(got_a == sent + ["live"],
              f"{what}: through the first listener, all 21 in order ({len(got_a)}: {got_a})")
        check(not got_b, f"{what}: through the second, none ({len(got_b)}: {got_b})")
        check("may not read the topic (acl_file)" in b.log,
              f"{what}: the start logs the deliveries the acl_file dropped")


def listener_gone_acl():
    """per_listener_settings: alice's session is made through a second listener (no
    acl_file), which the next start's configuration no longer has; the first listener's
    acl_file lets her read gl/# but not gl/t, the broker-wide policy has none. While that
    start runs, with her offline, gl/t and gl/u are published: her session, whose listener
    is gone, gets only what every policy allows (gl/u), as a replay at start would decide.
    The listener back at the next start, she comes through it and finds only gl/u queued.
    Before, the restored session was checked against the broker-wide policy alone (no
    acl_file: she got both)."""
    what = "a restored session whose listener is gone"
    cid = harness.ids_on(1, "gl", 2)[0]
    port_b = harness.free_port()
    with tempfile.TemporaryDirectory() as store:
        acl_a = os.path.join(store, "acl_a")
        with open(acl_a, "w") as f:
            f.write("topic readwrite #\nuser alice\ntopic read gl/#\ntopic deny gl/t\n")
        second = f"listener {port_b} 127.0.0.1\nallow_anonymous true\n"
        b = Broker(store, limits="max_queued_messages 100\n" + second,
                   head="per_listener_settings true\n").start(2)
        Sub(port_b, cid, topic="gl/#", qos=1, username="alice").close()
        b.stop()
        b.extra = f"max_queued_messages 100\nacl_file {acl_a}\nsys_interval 0\n"
        b.start(2)
        ok = publish_all(b.port, harness.ids_on(0, "glpub", 2)[0],
                         [("gl/t", "t1", 1, False), ("gl/u", "u1", 1, False)])
        b.stop()
        b.extra = f"max_queued_messages 100\nacl_file {acl_a}\n{second}sys_interval 0\n"
        b.start(2)
        s = Sub(port_b, cid, topic="gl/#", qos=1, username="alice")
        got = payloads(s.wait_count(2, timeout=3.0))
        s.close()
        b.stop()
        check(ok and got == ["u1"],
              f"{what}: offline, it got only what every policy's acl_file allows ({got})")


def replay_bridge_exempt():
    """A bridge's local session is not subject to the acl_file, at a replay either. The
    bridge (`connection` block, cleansession false) forwards br/# to a second broker; its
    local session lives on shard 0. A publisher on shard 1 sends 10 QoS 2 messages to br/t,
    which wait in shard 1's outbox while shard 0 holds up the channel, and the broker is
    killed. The acl_file lets anonymous clients write br/# but read only hold/#: the start
    must still route them into the bridge's session, which forwards them once it is back.
    Checked against the broker-wide acl_file, the bridge's session (no user name) would get
    none."""
    limits = ("max_queued_messages 100\nmax_inflight_messages 10\n"
              "backpressure_timeout_ms 600000\n")
    what = "replay at start, a bridge's local session and the acl_file"
    with tempfile.TemporaryDirectory() as store, tempfile.TemporaryDirectory() as far_store:
        far = Broker(far_store).start(1)
        got = []
        fc = mqtt.Client(client_id="far-sub", clean_session=True)
        subscribed = threading.Event()
        fc.on_subscribe = lambda *a: subscribed.set()
        fc.on_message = lambda c, u, m: got.append(m.payload.decode())
        fc.connect("127.0.0.1", far.port)
        fc.loop_start()
        fc.subscribe("br/#", 2)
        check(subscribed.wait(WAIT), f"{what}: subscribed at the far broker")
        acl = os.path.join(store, "acl")
        with open(acl, "w") as f:
            f.write("topic readwrite hold/#\ntopic write br/#\n")
        bridge = (f"connection up\naddress 127.0.0.1:{far.port}\ntopic br/# out 2\n"
                  "local_clientid bridge-local\nremote_clientid bridge-remote\n"
                  "cleansession false\n")
        b = Broker(store, limits=limits + f"acl_file {acl}\n" + bridge).start(2)
        check(wait_until(lambda: "bridge connected" in b.text()),
              f"{what}: the bridge connected")
        with held_up(b, 0, "br"):
            p = Pub(b.port, harness.ids_on(1, "brpub", 2)[0], clean=False)
            sent = [f"b{i}" for i in range(10)]
            for x in sent:
                p.publish("br/t", x, 2)
            check(wait_until(lambda: len(p.acked_payloads()) == 10),
                  f"{what}: all 10 completed (PUBCOMP) ({len(p.acked_payloads())})")
            time.sleep(0.5)
            early = list(got)
        p.close(clean=False)
        b.start(2)
        wait_until(lambda: len(got) >= 10, 15.0)
        time.sleep(0.5)
        b.stop()
        fc.disconnect()
        fc.loop_stop()
        far.stop()
        check(not early, f"{what}: nothing forwarded before the kill (held up: {early})")
        check(got == sent, f"{what}: the far broker gets the 10, in order, after the start "
                           f"({got})")
        check("may not read the topic (acl_file)" not in b.log,
              f"{what}: the start drops nothing for the acl_file")


def v5_client(port, cid, clean_start, expiry, got=None):
    """A connected paho 5.0 client with Session Expiry Interval `expiry`; what it gets is
    appended to `got`."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    if got is not None:
        c.on_message = lambda cl, u, m: got.append(m.payload.decode())
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", port, clean_start=clean_start, properties=props)
    c.loop_start()
    check(connected.wait(WAIT), f"{cid} connected (5.0)")
    return c


def v5_disconnect_ending(c):
    """DISCONNECT with Session Expiry Interval 0: the session ends with the connection."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    c.disconnect(properties=props)
    c.loop_stop()


def v5_subscribe(c, topic):
    """Subscribes with No Local, QoS 2; True once the SUBACK came."""
    from paho.mqtt.subscribeoptions import SubscribeOptions
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.subscribe(topic, options=SubscribeOptions(qos=2, noLocal=True))
    return done.wait(WAIT)


def replay_no_local(kill=True):
    """No Local at a replay. `x`, whose id belongs on shard 1, has a session on shard 0
    (stored with threads 1, kept there with threads 2): it publishes 10 QoS 2 messages
    there, which wait in shard 0's outbox for shard 1 (holding up the channel); its session
    ends, and its next one, on shard 1, subscribes to them with No Local, as does `y`. The
    broker is killed: the start routes the messages into shard 1's store, to y and not to
    their publisher. Before, x got its own 10 messages back.
    Without `kill`, the same while running: the hold ends and shard 1 takes the messages,
    which carry their publisher's client id; y gets them, x not. Before, x got its own 10
    messages back here too (they reached shard 1 without their publisher)."""
    limits = "max_queued_messages 100\nmax_inflight_messages 10\nbackpressure_timeout_ms 600000\n"
    x, y = harness.ids_on(1, "nlx", 2)[0], harness.ids_on(1, "nly", 2)[0]
    what = "replay at start, No Local" if kill else "running, No Local, the session moved"
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store, limits=limits).start(1)
        v5_client(b.port, x, False, 3600).disconnect()
        b.stop()
        b.start(2)
        cy = v5_client(b.port, y, True, 3600)
        check(v5_subscribe(cy, "nl/#"), f"{what}: {y} subscribed")
        cy.disconnect()
        cy.loop_stop()
        with held_up(b, 1, "nl", kill):
            # On shard 0 (its session is there): a new session, stored (so its QoS 2
            # messages go through the outbox), ended by its DISCONNECT.
            cx = v5_client(b.port, x, True, 3600)
            infos = [cx.publish("nl/t", f"n{i}", qos=2) for i in range(10)]
            check(wait_until(lambda: all(i.is_published() for i in infos)),
                  f"{what}: all 10 completed (PUBCOMP)")
            v5_disconnect_ending(cx)
            time.sleep(0.3)
            # Now on shard 1, the shard of its id: a session of its own, No Local.
            cx = v5_client(b.port, x, True, 3600)
            check(v5_subscribe(cx, "nl/#"), f"{what}: {x} subscribed on shard 1")
            cx.disconnect()
            cx.loop_stop()
            time.sleep(0.3)
        if kill:
            b.start(2)
        got_x, got_y = [], []
        cx = v5_client(b.port, x, False, 3600, got_x)
        cy = v5_client(b.port, y, False, 3600, got_y)
        wait_until(lambda: len(got_y) >= 10, 10.0)
        time.sleep(0.5)
        for c in (cx, cy):
            c.disconnect()
            c.loop_stop()
        b.stop()
        check(got_y == [f"n{i}" for i in range(10)],
              f"{what}: {y} gets the 10 messages, in order ({got_y})")
        check(not got_x, f"{what}: their publisher {x}, No Local, gets none ({got_x})")


def qos2_share_kill_stream(rounds=3):
    """QoS 2 messages streamed from shard 0 to a share group homed on shard 1 whose member
    is an offline persistent session on shard 0, killed mid-stream: each completed message
    reaches the member, none twice. A start that routes the home's untaken items to the
    group again must know which ones the member's shard already has: with the home sending
    its deliveries directly (unrecorded) instead of through its outbox, 20 messages arrived
    twice in 4 rounds (a kill between the member's sync and the publisher's shard's)."""
    group = next(g for g in (f"$share/ks{i}/ks/#" for i in range(100))
                 if harness.shard_of(g, 2) == 1)
    member = harness.ids_on(0, "ksm", 2)[0]
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as store:
            b = Broker(store, limits="max_queued_messages 100000\n").start(2)
            Sub(b.port, member, topic=group, qos=2).close()
            p = Pub(b.port, harness.ids_on(0, "kspub", 2)[0], clean=False)
            for i in range(3000):
                p.publish("ks/t", f"k{i}", 2)
            time.sleep(0.3 + 0.2 * r)
            b.stop(signal.SIGKILL)
            acked = p.acked_payloads()
            p.close(clean=False)
            missing, twice = after_restart(
                b, lambda: Sub(b.port, member, topic=group, qos=2), acked, timeout=5.0)
            check(not missing and not twice,
                  f"QoS 2 share stream, kill -9 (round {r}): every completed message once "
                  f"({len(acked)} completed, {len(missing)} missing, {len(twice)} twice)")


def change_threads():
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start(2)
        for s in (Sub(b.port, SUB0), Sub(b.port, SUB1)):
            s.close()
        ok = publish_all(b.port, PUB1, [("q/x", f"a{i}", 2, False) for i in range(10)] +
                         [("r/t", "two", 1, True)])
        ok = publish_all(b.port, PUB0, [("r/z", "zero", 2, True)]) and ok
        b.stop()
        check(ok and os.path.exists(os.path.join(store, "tern.db.shard1")),
              "threads 2 -> 1: the threads 2 store has a file per shard")
        b.start(1)
        log = b.text()
        check("moved to the shard of their client id" in log,
              "threads 2 -> 1: the start says the sessions were moved")
        check(not os.path.exists(os.path.join(store, "tern.db.shard1")),
              "threads 2 -> 1: shard 1's file is gone (its sessions are in tern.db)")
        s = Sub(b.port, SUB0)
        got = payloads(s.wait_count(10))
        s.close()
        check(got == [f"a{i}" for i in range(10)],
              f"threads 2 -> 1: {SUB0} got its 10 QoS 2 messages once ({len(got)})")
        ok = publish_all(b.port, PUB1, [("q/x", f"b{i}", 2, False) for i in range(5)])
        b.stop()
        rc, rep = check_store(store)
        check(rc == 0 and rep.get("sessions") == 2 and rep.get("shards") == [],
              f"threads 2 -> 1: one store with both sessions ({rep})")
        b.start(2)
        s = Sub(b.port, SUB1)
        got = payloads(s.wait_count(15))
        s.close()
        check(ok and got == [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)],
              f"threads 1 -> 2: {SUB1} (its session kept on shard 0) got its 15 QoS 2 "
              f"messages once, in order ({len(got)})")
        s = Sub(b.port, SUB0)
        got = payloads(s.wait_count(5))
        s.close()
        check(got == [f"b{i}" for i in range(5)],
              f"threads 1 -> 2: {SUB0} got the 5 queued with threads 1 once ({len(got)})")
        r = retained_of(b.port, ["r/t", "r/z"])
        check(r == {"r/t": "two", "r/z": "zero"},
              f"threads 2 -> 1 -> 2: the retained messages are kept ({r})")
        # Sessions still work both ways after the changes: a message queued for both, once.
        ok = publish_all(b.port, PUB0, [("q/y", "c", 2, False)])
        b.stop(signal.SIGKILL)
        b.start(2)
        for cid in (SUB0, SUB1):
            s = Sub(b.port, cid)
            got = payloads(s.wait_count(1))
            s.close()
            check(ok and got == ["c"], f"threads 1 -> 2, kill -9: {cid} got one message ({got})")
        b.stop()


def seed_no_room_store(store, big):
    """A threads 2 store of `big` (QoS 1, to q/x) queued for SUB0 and SUB1, and a retained
    message; True if every publish was acknowledged."""
    b = Broker(store).start(2)
    for s in (Sub(b.port, SUB0), Sub(b.port, SUB1)):
        s.close()
    ok = publish_all(b.port, PUB1, [("q/x", x, 1, False) for x in big] +
                     [("r/t", "two", 1, True)])
    b.stop()
    return ok


def change_threads_no_room():
    """threads 2 -> 1 when the new store file finds no room (a 256 KiB file size limit, as
    a full disk): the broker starts all the same, with the store failing (a QoS 1 publish
    is not acknowledged: 3.1.1 no PUBACK, 5.0 0x97) and the threads 2 files left as they
    were, so a kill -9 or a stop then loses nothing. Once there is room (the limit lifted)
    the new set is written within the retry interval, shard 1's file removed, and
    publishes acknowledged again; after a kill -9 the next start finds the store in place
    and every session has its messages once, in order. A stop right after the limit is
    lifted (before or after the retry) leaves the new set in place too."""
    big = [f"a{i:03d}" + "x" * 1000 for i in range(300)]  # over 256 KiB for one file
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store)
        ok = seed_no_room_store(store, big)
        names = ("tern.db", "tern.db.shard1")

        def sizes():
            return [os.path.getsize(os.path.join(store, n)) if
                    os.path.exists(os.path.join(store, n)) else None for n in names]

        before = sizes()
        check(ok and None not in before, f"no room for threads 1: a threads 2 store ({before})")

        b.start(1, preexec_fn=store_clients.small_files)
        log = b.text()
        check("could not be written" in log and "QoS 1/2 publishes are refused" in log,
              "no room for threads 1: the broker starts with the store failing and says so"
              + ("" if "could not be written" in log else f"\n    log: {log[-1500:]}"))
        p = Pub(b.port, PUB0)
        info = p.publish("q/x", "refused", 1)
        time.sleep(2.0)
        acked = info.is_published()
        p.close()
        check(not acked, "no room for threads 1: a QoS 1 publish is not acknowledged")
        r = subprocess.run([os.path.join(os.path.dirname(BROKER), "tern-pub"), "-h",
                            "127.0.0.1", "-p", str(b.port), "-V", "5", "-q", "1", "-t", "q/x",
                            "-m", "refused-5", "--json"], capture_output=True, text=True,
                           timeout=WAIT)
        codes = [json.loads(x).get("reason_code") for x in r.stdout.splitlines()
                 if '"seq"' in x]
        check(r.returncode != 0 and codes == [0x97],
              f"no room for threads 1: a 5.0 QoS 1 publish is answered 0x97 (exit "
              f"{r.returncode}, {codes}, {r.stdout.strip()[:200]})")
        b.stop(signal.SIGKILL)
        check(sizes() == before and
              not os.path.exists(os.path.join(store, "tern.db.commit")),
              f"no room for threads 1, killed: the threads 2 files are as they were ({sizes()})")
        b.start(1, preexec_fn=store_clients.small_files)
        code = b.stop()
        check(code == 0 and "not written at the stop" in b.log and sizes() == before,
              f"no room for threads 1, a graceful stop: exit {code}, no store written alone, "
              f"the threads 2 files as they were ({sizes()})")

        b.start(1, preexec_fn=store_clients.small_files)
        lifted = store_clients.lift_file_limit(b.proc)
        wait_until(lambda: "writing works again" in b.text())
        log = b.text()
        check(lifted and "are written (1 file(s) of the previous number of threads removed)"
              in log and "writing works again" in log,
              "no room for threads 1, then room: the new store is written within the retry "
              "interval" + ("" if "writing works again" in log else f"\n    log: {log[-1500:]}"))
        check(not os.path.exists(os.path.join(store, "tern.db.shard1")) and
              not os.path.exists(os.path.join(store, "tern.db.commit")),
              f"no room for threads 1, then room: shard 1's file is gone ({os.listdir(store)})")
        ok = publish_all(b.port, PUB1, [("q/x", f"b{i}", 1, False) for i in range(5)])
        check(ok, "no room for threads 1, then room: QoS 1 publishes acknowledged again")
        b.stop(signal.SIGKILL)

        b.start(1)
        check("another number of threads" not in b.text(),
              "no room for threads 1, then room, killed: the next start finds the store in "
              "place (no second redistribution)")
        want = [x[:4] for x in big] + [f"b{i}" for i in range(5)]
        for cid in (SUB0, SUB1):
            s = Sub(b.port, cid)
            got = [x[:4] for x in payloads(s.wait_count(len(want)))]
            s.close()
            check(got == want, f"no room for threads 1, then room, killed: {cid} got its "
                  f"{len(want)} messages once, in order ({len(got)})")
        r = retained_of(b.port, ["r/t"])
        check(r == {"r/t": "two"}, f"no room for threads 1: the retained message is kept ({r})")
        b.stop()

    with tempfile.TemporaryDirectory() as store:
        ok = seed_no_room_store(store, big)
        b = Broker(store).start(1, preexec_fn=store_clients.small_files)
        lifted = store_clients.lift_file_limit(b.proc)
        code = b.stop()
        check(ok and lifted and code == 0 and "not written at the stop" not in b.log and
              not os.path.exists(os.path.join(store, "tern.db.shard1")) and
              not os.path.exists(os.path.join(store, "tern.db.commit")),
              f"no room for threads 1, room, then a stop at once: exit {code}, the new set "
              f"in place ({os.listdir(store)})")
        b.start(1)
        check("another number of threads" not in b.text(),
              "no room for threads 1, room, a stop: no second redistribution at the next start")
        for cid in (SUB0, SUB1):
            s = Sub(b.port, cid)
            got = [x[:4] for x in payloads(s.wait_count(len(big)))]
            s.close()
            check(got == [x[:4] for x in big], f"no room for threads 1, room, a stop: {cid} "
                  f"got its {len(big)} messages once, in order ({len(got)})")
        b.stop()


def interrupted_change():
    """The store files of a start with another number of threads are replaced as one set
    (tern.db.commit names the new files, NAME.new, and the ones to remove): a start that
    finds the commit file finishes it; NAME.new files without one are not part of the
    store; an unreadable commit file is kept aside and the files are read as they are."""
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start(2)
        for s in (Sub(b.port, SUB0), Sub(b.port, SUB1)):
            s.close()
        ok = publish_all(b.port, PUB0, [("q/x", f"a{i}", 2, False) for i in range(5)])
        b.stop()
        check(ok and not os.path.exists(os.path.join(store, "tern.db.commit")),
              "interrupted change: 5 messages queued for two sessions, no commit file left")

        def queued_ok(prefix, n, label):
            for cid in (SUB0, SUB1):
                s = Sub(b.port, cid)
                got = payloads(s.wait_count(n))
                s.close()
                check(got == [f"{prefix}{i}" for i in range(n)],
                      f"interrupted change, {label}: {cid} got its {n} messages once ({got})")

        # Stopped after its commit file: the new files are still NAME.new, the old file of
        # a shard past the new number of threads is still there.
        for name in ("tern.db", "tern.db.shard1"):
            os.rename(os.path.join(store, name), os.path.join(store, name + ".new"))
        with open(os.path.join(store, "tern.db.shard2"), "wb") as f:
            f.write(b"an old shard's file the commit removes")
        with open(os.path.join(store, "tern.db.commit"), "w") as f:
            f.write("tern store set 1\nnew tern.db\nnew tern.db.shard1\n"
                    "remove tern.db.shard2\nend\n")
        rc, rep = check_store(store)
        check(rep.get("commit_pending") is True,
              f"interrupted change: --check-store says a commit is pending ({rep})")
        b.start(2)
        log = b.text()
        check("is finished (2 file(s) put in place, 1 removed)" in log,
              "interrupted change, commit file: the start says it finished the set")
        check(not any(os.path.exists(os.path.join(store, n)) for n in
                      ("tern.db.commit", "tern.db.shard2", "tern.db.new", "tern.db.shard1.new")),
              f"interrupted change, commit file: finished, nothing left ({os.listdir(store)})")
        queued_ok("a", 5, "commit file")
        ok = publish_all(b.port, PUB0, [("q/x", f"b{i}", 2, False) for i in range(3)])
        b.stop()
        rc, rep = check_store(store)
        check(rc == 0 and "commit_pending" not in rep,
              f"interrupted change: --check-store, nothing pending after the start ({rep})")

        # Stopped before it: a NAME.new (half written) is not part of the store.
        with open(os.path.join(store, "tern.db.shard1.new"), "wb") as f:
            f.write(b"\x00\x01half a store")
        b.start(2)
        queued_ok("b", 3, "no commit file")
        ok = publish_all(b.port, PUB0, [("q/x", f"c{i}", 2, False) for i in range(2)]) and ok
        b.stop()

        # An unreadable commit file: kept aside, the files read as they are.
        with open(os.path.join(store, "tern.db.commit"), "w") as f:
            f.write("tern store set 1\nnew tern.db.shard1\n")  # cut short: no "end"
        b.start(2)
        log = b.text()
        check("unreadable, kept as" in log and
              os.path.exists(os.path.join(store, "tern.db.commit.damaged")) and
              not os.path.exists(os.path.join(store, "tern.db.commit")),
              "interrupted change, damaged commit file: kept aside and said so")
        queued_ok("c", 2, "damaged commit file")
        b.stop()
        check(ok, "interrupted change: every publish acknowledged")


def shared_restart():
    """A share group with a member on each shard, restarted on the store: each message goes
    to one member, before the restart (queued while both are offline) and after it (the
    member away from the group's home is registered there again, not kept in a second copy
    of the group on its own shard that would serve every message once more)."""
    group = next(g for g in (f"$share/sg{i}/sh/#" for i in range(100))
                 if harness.shard_of(g, 2) == 0)
    members = (harness.ids_on(0, "shm", 2)[0], harness.ids_on(1, "shm", 2)[0])
    with tempfile.TemporaryDirectory() as store:
        b = Broker(store).start(2)
        for cid in members:
            Sub(b.port, cid, topic=group, qos=1).close()
        ok = publish_all(b.port, PUB1, [("sh/x", f"before-{i}", 1, False) for i in range(10)])
        check(ok, "shared restart: 10 messages acknowledged while both members are offline")
        check(b.stop() == 0, "shared restart: SIGTERM, exit 0")
        b.start(2)
        subs = [Sub(b.port, cid, topic=group, qos=1) for cid in members]
        time.sleep(0.5)  # the joins reach the group's home
        ok = publish_all(b.port, PUB1, [("sh/x", f"after-{i}", 1, False) for i in range(10)])
        got = []
        for s in subs:
            got += payloads(s.wait_count(1, timeout=5.0))
        want = [f"before-{i}" for i in range(10)] + [f"after-{i}" for i in range(10)]
        check(ok and sorted(got) == sorted(want),
              f"shared restart: each of the 20 messages reached one member once ({len(got)}: "
              f"{sorted(got)})")
        for s in subs:
            s.close()
        b.stop()


# The scenarios in parts, each its own CTest test (a part runs well inside its timeout on a
# loaded machine under ASan, where all of them in one run did not).
PARTS = {
    "restart": [
        clean_restart,
        shared_restart,
        kill_during_traffic,
        stalled_shard,
        lambda: qos2_clean_publisher(clean=True),
        lambda: qos2_clean_publisher(clean=False),
    ],
    "share": [
        stalled_share_member,
        lambda: share_again(kill_while_held=True),
        lambda: share_again(kill_while_held=False),
        lambda: qos2_share_replay(member_shard=1),
        lambda: qos2_share_replay(member_shard=0),
        lambda: qos2_share_replay(member_shard=0, held=0),
        qos2_share_kill_stream,
    ],
    "replay": [
        replay_checks,
        replay_no_local,
        lambda: replay_no_local(kill=False),
        replay_listener_acl,
        lambda: replay_listener_acl(written_with_policies=False),
        listener_gone_acl,
        replay_bridge_exempt,
    ],
    "threads": [
        change_threads,
        change_threads_no_room,
        interrupted_change,
    ],
}


def main():
    names = sys.argv[2:] or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    for name in names:
        for scenario in PARTS[name]:
            scenario()
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
