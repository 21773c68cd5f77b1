#!/usr/bin/env python3
"""Bridges (`connection` blocks) and an MQTT-SN listener in tern-broker with `threads 2`
(docs/broker.md, "Threading": both run on shard 0, their sessions live there).

    broker_threads_bridge_test.py BIN_DIR

Mosquitto on a free loopback port as the remote broker; tern-broker with `threads 2`, a TCP
and an MQTT-SN listener and a bridge to it. The client ids are picked with the broker's own
rule (FNV-1a 64 of the id, mixed, modulo 2) so that every case has clients on both shards:
- the bridge at QoS 1 both ways: publishers on shard 0 and shard 1 reach a subscriber at
  Mosquitto, a publisher at Mosquitto reaches subscribers on both shards; counts exact,
  in order per publisher;
- an MQTT-SN client (its id on shard 1, its session on shard 0) publishing QoS 1 to
  subscribers on both shards and receiving from publishers on both shards; a shared
  subscription whose group lives on shard 1 with the MQTT-SN client and a TCP client on
  shard 1 as members, each message to exactly one of them;
- a TCP client that connects with the id of an MQTT-SN session (id on shard 1) resumes that
  session (CONNACK session present, its subscription);
- a second tern-broker with `threads 2` and no bridge: SIGHUP adds one (publishers on both
  shards, counts exact), SIGHUP removes it;
- SIGTERM: exit 0."""

import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from bridge_support import (HOST, WORK, Broker, Client, ConfiguredBroker, check,  # noqa: E402
                            done, stop, wait_for)
from mqttsn import Client as SnClient  # noqa: E402
import harness  # noqa: E402

BIN = sys.argv[1]
SHARDS = 2
N = 100


def shard_of(key):
    return harness.shard_of(key, SHARDS)


def id_on(shard, prefix):
    return harness.ids_on(shard, prefix, SHARDS)[0]


def tern_conf(extra=""):
    return ("threads 2\nallow_anonymous true\nmetrics_listener 0 127.0.0.1\n"
            "listener 0 127.0.0.1\nprotocol mqttsn\nlistener 0 127.0.0.1\n" + extra)


def bridge_block(name, port, rules, local_id):
    return (f"connection {name}\naddress {HOST}:{port}\n{rules}"
            f"remote_clientid tern-{name}\nlocal_clientid {local_id}\n"
            "restart_timeout 1 2\nbridge_protocol_version mqttv311\n")


def received(client, topic):
    return [p.decode() for t, p, _, _, _ in list(client.got) if t == topic]


def exact(name, client, topic, want, seconds=20):
    """`client` gets exactly `want` on `topic`, in order (a pause after, for duplicates)."""
    wait_for(lambda: len(received(client, topic)) >= len(want), seconds)
    time.sleep(0.5)
    got = received(client, topic)
    check(name, got == want, f"got {len(got)} of {len(want)}: head {got[:3]} tail {got[-3:]}")


def publish_all(client, topic, payloads):
    for p in payloads:
        info = client.publish(topic, p, qos=1)
        if not info.is_published():
            check(f"PUBACK for {topic} {p}", False, "no PUBACK in 10 s")
            return


# ---- MQTT-SN: datagrams as bytes (MQTT-SN 1.2; one-octet lengths, every test packet < 256)

def sn_packet(kind, body):
    return bytes([len(body) + 2, kind]) + body


def sn_connect(cid, clean=True):
    return sn_packet(0x04, bytes([0x04 if clean else 0x00, 0x01, 0x00, 0x3C]) + cid.encode())


def sn_recv(c, timeout=10.0):
    h = c.recv(timeout)
    return None if h is None else bytes.fromhex(h)


def sn_exchange(c, data):
    c.send(data.hex())
    return sn_recv(c)


def sn_subscribe(c, msg_id, name):
    """SUBSCRIBE QoS 1 to a topic name: the SUBACK's topic id, or None if refused."""
    r = sn_exchange(c, sn_packet(0x12, bytes([0x20]) + msg_id.to_bytes(2, "big") + name.encode()))
    if r is None or r[1] != 0x13 or r[7] != 0:
        return None
    return int.from_bytes(r[3:5], "big")


def sn_collect(c, topics, count, seconds=20):
    """PUBLISHes until `count` arrived (REGISTER answered with REGACK, QoS 1 with PUBACK);
    `topics` maps topic ids to names and learns the registered ones. [(topic, payload)]."""
    got = []
    end = time.time() + seconds
    while len(got) < count and time.time() < end:
        d = sn_recv(c, max(0.1, end - time.time()))
        if d is None:
            break
        if d[1] == 0x0A:  # REGISTER: TopicId, MsgId, TopicName
            tid, mid = d[2:4], d[4:6]
            topics[int.from_bytes(tid, "big")] = d[6:].decode()
            c.send(sn_packet(0x0B, tid + mid + b"\x00").hex())
        elif d[1] == 0x0C:  # PUBLISH: Flags, TopicId, MsgId, Data
            tid, mid = d[3:5], d[5:7]
            got.append((topics.get(int.from_bytes(tid, "big"), "?"), d[7:].decode()))
            if (d[2] >> 5) & 3 == 1:
                c.send(sn_packet(0x0D, tid + mid + b"\x00").hex())
    return got


def sn_publish_all(c, topic_id, payloads, first_msg_id):
    """QoS 1, each PUBACK awaited; a congestion answer is tried again."""
    for i, p in enumerate(payloads):
        mid = (first_msg_id + i).to_bytes(2, "big")
        for _ in range(50):
            r = sn_exchange(c, sn_packet(0x0C, bytes([0x20]) + topic_id.to_bytes(2, "big") + mid
                                         + p.encode()))
            if r is not None and r[1] == 0x0D and r[6] == 1:  # rejected: congestion
                time.sleep(0.05)
                continue
            break
        if r is None or r[1] != 0x0D or r[6] != 0:
            check(f"MQTT-SN PUBACK for {p}", False, f"{r!r}")
            return


def bridge_both_ways(tern, mosq):
    p0 = Client(tern.port, "5", id_on(0, "pub-a-"))
    p1 = Client(tern.port, "5", id_on(1, "pub-b-"))
    s0 = Client(tern.port, "5", id_on(0, "sub-a-"))
    s1 = Client(tern.port, "5", id_on(1, "sub-b-"))
    far = Client(mosq.port, "5", "far-sub")
    far_pub = Client(mosq.port, "5", "far-pub")
    check("subscribers at tern-broker (shard 0 and 1) on in/#",
          s0.subscribe("in/#", 1) and s1.subscribe("in/#", 1))
    check("subscriber at Mosquitto on out/#", far.subscribe("out/#", 1))
    time.sleep(0.3)
    out0 = [f"a{i}" for i in range(N)]
    out1 = [f"b{i}" for i in range(N)]
    publish_all(p0, "out/0", out0)
    publish_all(p1, "out/1", out1)
    exact(f"out: {N} QoS 1 from shard 0 at Mosquitto, in order", far, "out/0", out0)
    exact(f"out: {N} QoS 1 from shard 1 at Mosquitto, in order", far, "out/1", out1)
    inn = [f"m{i}" for i in range(N)]
    publish_all(far_pub, "in/m", inn)
    exact(f"in: {N} QoS 1 from Mosquitto at the subscriber on shard 0", s0, "in/m", inn)
    exact(f"in: {N} QoS 1 from Mosquitto at the subscriber on shard 1", s1, "in/m", inn)
    check("nothing else crossed", len(far.got) == 2 * N and len(s0.got) == N and len(s1.got) == N,
          f"{len(far.got)} {len(s0.got)} {len(s1.got)}")
    fwd = (tern.metric("tern_bridge_messages_forwarded_total", bridge="mosq", direction="out"),
           tern.metric("tern_bridge_messages_forwarded_total", bridge="mosq", direction="in"))
    check("tern_bridge_messages_forwarded_total out and in", fwd == (2 * N, N), f"{fwd}")
    for c in (p0, p1, s0, s1, far, far_pub):
        c.close()


def mqttsn_both_ways(tern, sn_port):
    sn_id = id_on(1, "sn-")
    c = SnClient(sn_port)
    check(f"MQTT-SN CONNECT {sn_id} (id on shard 1): accepted",
          sn_exchange(c, sn_connect(sn_id)) == bytes.fromhex("030500"))
    topics = {}
    down = sn_subscribe(c, 1, "sn/down")
    check("MQTT-SN SUBSCRIBE sn/down QoS 1", down is not None)
    topics[down or 0] = "sn/down"
    r = sn_exchange(c, sn_packet(0x0A, b"\x00\x00\x00\x02" + b"sn/up"))
    check("MQTT-SN REGISTER sn/up", r is not None and r[1] == 0x0B and r[6] == 0, f"{r!r}")
    up = int.from_bytes(r[2:4], "big") if r else 0
    s0 = Client(tern.port, "311", id_on(0, "snsub-a-"))
    s1 = Client(tern.port, "311", id_on(1, "snsub-b-"))
    check("TCP subscribers on both shards on sn/up", s0.subscribe("sn/up", 1) and
          s1.subscribe("sn/up", 1))
    time.sleep(0.3)
    msgs = [f"u{i}" for i in range(N)]
    sn_publish_all(c, up, msgs, 10)
    exact(f"MQTT-SN -> shard 0: {N} QoS 1 in order", s0, "sn/up", msgs)
    exact(f"MQTT-SN -> shard 1: {N} QoS 1 in order", s1, "sn/up", msgs)

    p0 = Client(tern.port, "5", id_on(0, "snpub-a-"))
    p1 = Client(tern.port, "5", id_on(1, "snpub-b-"))
    d0 = [f"x{i}" for i in range(N // 2)]
    d1 = [f"y{i}" for i in range(N // 2)]
    publish_all(p0, "sn/down", d0)
    publish_all(p1, "sn/down", d1)
    got = sn_collect(c, topics, N)
    time.sleep(0.3)
    got += sn_collect(c, topics, 1, 0.5)  # anything more is a duplicate
    check(f"shards 0 and 1 -> MQTT-SN: {N} QoS 1, in order per publisher",
          [p for t, p in got if p[0] == "x"] == d0 and [p for t, p in got if p[0] == "y"] == d1
          and len(got) == N and all(t == "sn/down" for t, _ in got),
          f"{len(got)}: {got[:3]} ... {got[-3:]}")

    # A shared subscription whose group's home is shard 1: members MQTT-SN (shard 0) and a
    # TCP client on shard 1; a publisher on shard 0. Each message to exactly one member.
    group = next(f"$share/g{i}/sh/t" for i in range(100) if shard_of(f"$share/g{i}/sh/t") == 1)
    topics_sh = dict(topics)
    sid = sn_subscribe(c, 3, group)
    check(f"MQTT-SN SUBSCRIBE {group}", sid is not None)
    m1 = Client(tern.port, "5", id_on(1, "member-"))
    check(f"TCP member on shard 1 subscribed to {group}", m1.subscribe(group, 1))
    time.sleep(0.3)
    shared = [f"s{i}" for i in range(40)]
    publish_all(p0, "sh/t", shared)
    wait_for(lambda: len(received(m1, "sh/t")) >= 1, 10)
    sn_got = sn_collect(c, topics_sh, 40, 5)
    time.sleep(0.3)
    tcp_got = received(m1, "sh/t")
    both = sorted([p for _, p in sn_got] + tcp_got, key=lambda p: int(p[1:]))
    check("shared: every message to exactly one member, both members served",
          both == shared and sn_got and tcp_got,
          f"MQTT-SN {len(sn_got)}, TCP {len(tcp_got)}, missing/duplicates "
          f"{sorted(set(shared) ^ set(both))[:5]} total {len(both)}")
    check("shared: the MQTT-SN member got them on sh/t", all(t == "sh/t" for t, _ in sn_got),
          f"{sn_got[:3]}")
    check("MQTT-SN DISCONNECT", sn_exchange(c, sn_packet(0x18, b"")) == bytes.fromhex("0218"))
    c.close()
    for x in (s0, s1, p0, p1, m1):
        x.close()


def tcp_resumes_mqttsn_session(tern, sn_port):
    """A TCP client with the id of an MQTT-SN session (shard 0) meets it, whatever the id's
    shard (here 1)."""
    cid = id_on(1, "both-")
    c = SnClient(sn_port)
    check(f"MQTT-SN CONNECT {cid} not clean", sn_exchange(c, sn_connect(cid, clean=False)) ==
          bytes.fromhex("030500"))
    check("MQTT-SN SUBSCRIBE tk/t", sn_subscribe(c, 1, "tk/t") is not None)
    check("MQTT-SN DISCONNECT", sn_exchange(c, sn_packet(0x18, b"")) == bytes.fromhex("0218"))
    c.close()
    import paho.mqtt.client as mqtt
    flags = {}
    t = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, clean_session=False)
    t.on_connect = lambda cl, u, f, rc: flags.update(f, rc=rc)
    got = []
    t.on_message = lambda cl, u, m: got.append(bytes(m.payload))
    t.connect(HOST, tern.port, 30)
    t.loop_start()
    wait_for(lambda: "rc" in flags, 10)
    check(f"TCP CONNECT {cid} (id on shard 1) resumes the MQTT-SN session: session present",
          flags.get("session present") == 1 and flags.get("rc") == 0, f"{flags}")
    pub = Client(tern.port, "5", id_on(1, "tkpub-"))
    publish_all(pub, "tk/t", ["resumed"])
    check("the resumed subscription delivers", wait_for(lambda: got == [b"resumed"], 10), f"{got}")
    t.loop_stop()
    t.disconnect()
    pub.close()


def reload_adds_bridge(mosq):
    conf = os.path.join(WORK, "reload.conf")
    with open(conf, "w") as f:
        f.write(tern_conf())
    tern = ConfiguredBroker(BIN, conf)
    local = id_on(1, "reload-local-")
    with open(conf, "w") as f:
        f.write(tern_conf(bridge_block("late", mosq.port, "topic two/# out 1\n", local)))
    tern.proc.send_signal(signal.SIGHUP)
    check("SIGHUP with threads 2 adds a bridge: it connects",
          wait_for(lambda: tern.metric("tern_bridge_connected", bridge="late",
                                       side="remote") == 1, 20), tern.text()[-2000:])
    check("no refusal logged", "not implemented" not in tern.text(), tern.text()[-2000:])
    check("the added bridge subscribed",
          wait_for(lambda: f"{local} subscribed to two/#" in tern.text(), 10), tern.text()[-2000:])
    far = Client(mosq.port, "5", "far-two")
    check("subscriber at Mosquitto on two/#", far.subscribe("two/#", 1))
    p0 = Client(tern.port, "5", id_on(0, "two-a-"))
    p1 = Client(tern.port, "5", id_on(1, "two-b-"))
    w0 = [f"c{i}" for i in range(N // 2)]
    w1 = [f"d{i}" for i in range(N // 2)]
    publish_all(p0, "two/0", w0)
    publish_all(p1, "two/1", w1)
    exact("after SIGHUP: QoS 1 from shard 0 at Mosquitto", far, "two/0", w0)
    exact("after SIGHUP: QoS 1 from shard 1 at Mosquitto", far, "two/1", w1)
    with open(conf, "w") as f:
        f.write(tern_conf())
    tern.proc.send_signal(signal.SIGHUP)
    check("SIGHUP with threads 2 removes the bridge",
          wait_for(lambda: "bridge reloaded bridge=late action=removed" in tern.text(), 10),
          tern.text()[-2000:])
    check("the removed bridge is gone from /metrics",
          wait_for(lambda: tern.metric("tern_bridge_connected", bridge="late",
                                       side="remote") is None, 10))
    publish_all(p0, "two/0", ["after"])
    time.sleep(0.5)
    check("nothing crosses once it is removed", received(far, "two/0") == w0)
    for c in (far, p0, p1):
        c.close()
    status = tern.stop()
    check("the second tern-broker stops cleanly on SIGTERM", status == 0, f"status {status}")


def main():
    mosq = Broker("mosquitto", BIN)
    conf = os.path.join(WORK, "tern.conf")
    local = id_on(1, "local-")  # a bridge's session is on shard 0 whatever its id's shard
    with open(conf, "w") as f:
        f.write(tern_conf(bridge_block("mosq", mosq.port, "topic out/# out 1\ntopic in/# in 1\n",
                                       local)))
    tern = ConfiguredBroker(BIN, conf)
    m = re.search(r"MQTT-SN 127\.0\.0\.1:(\d+)", tern.text())
    check("tern-broker with threads 2, a bridge and MQTT-SN started", m is not None,
          tern.text()[-2000:])
    check("the bridge connects",
          wait_for(lambda: tern.metric("tern_bridge_connected", bridge="mosq", side="remote") == 1,
                   20), tern.text()[-2000:])
    check("the bridge subscribed at tern-broker",
          wait_for(lambda: f"{local} subscribed to out/#" in tern.text(), 10), tern.text()[-2000:])
    for fn, args in ((bridge_both_ways, (tern, mosq)),
                     (mqttsn_both_ways, (tern, int(m.group(1)) if m else 0)),
                     (tcp_resumes_mqttsn_session, (tern, int(m.group(1)) if m else 0)),
                     (reload_adds_bridge, (mosq,))):
        print(f"--- {fn.__name__}", flush=True)
        try:
            fn(*args)
        except (AssertionError, OSError, RuntimeError, TypeError, IndexError) as e:
            check(f"{fn.__name__}: {e!r}", False)
    check("tern-broker still running", tern.proc.poll() is None)
    status = tern.stop()
    check("tern-broker stops cleanly on SIGTERM", status == 0, f"status {status}")
    stop(mosq.proc)
    done()


if __name__ == "__main__":
    main()
