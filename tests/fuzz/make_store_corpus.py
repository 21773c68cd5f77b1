#!/usr/bin/python3
"""Writes the seed corpus of store_fuzz (tests/fuzz/corpus/store/): store files written by
tern-broker itself. It starts the broker with persistence on loopback, makes state with
paho-mqtt (retained messages, persistent 3.1.1 and 5.0 sessions with subscriptions,
messages queued for them at QoS 1 and 2, a delayed Will, and with `threads 2` the outbox
between the shards), stops it, and keeps each file up to where its records end. Every file
goes in twice, in store_fuzz's two encodings: as it is, and as its list of records (those
of at most 255 bytes). Run it again after changing the store format or store_fuzz.

    tests/fuzz/make_store_corpus.py build/bin/tern-broker
"""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "store")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port, cid, v5, clean):
    if v5:
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else 3600
        c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    else:
        c = mqtt.Client(client_id=cid, clean_session=clean, protocol=mqtt.MQTTv311)
        c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def raw_connect(port, cid):
    """An MQTT 3.1.1 connection with Clean Session 0 over a plain socket, CONNACK read."""
    body = b"\x00\x04MQTT\x04\x00\x00\x3c" + len(cid).to_bytes(2, "big") + cid.encode()
    sock = socket.create_connection(("127.0.0.1", port), 2)
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4)[:1] == b"\x20"
    return sock


def wait(info):
    info.wait_for_publish(5)


def make_state(port, threads):
    # Persistent sessions, subscribed, then offline: what follows is queued for them.
    for cid, v5 in (("keeper311", False), ("keeper5", True)):
        c = client(port, cid, v5, clean=False)
        c.subscribe([("corpus/#", 2), ("other/+", 1)])
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()
    # A session with a delayed Will, dropped without DISCONNECT (the Will waits).
    w = mqtt.Client(client_id="willing", protocol=mqtt.MQTTv5)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 3000
    w.will_set("corpus/will", b"gone", qos=1, retain=False, properties=wp)
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 7200
    w.connect("127.0.0.1", port, clean_start=False, properties=cp)
    w.loop_start()
    time.sleep(0.2)
    w.loop_stop()
    w.socket().close()
    # Messages: retained ones, QoS 1 and 2 for the offline sessions, a v5 one with properties.
    p = client(port, "publisher", True, clean=True)
    wait(p.publish("corpus/retained/a", b"kept", qos=1, retain=True))
    wait(p.publish("corpus/retained/b", b"", qos=0, retain=True))
    for i in range(4):
        wait(p.publish(f"corpus/q/{i}", f"message {i}".encode(), qos=1 + i % 2))
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 600
    props.ContentType = "text/plain"
    props.UserProperty = ("k", "v")
    wait(p.publish("other/x", b"with properties", qos=1, properties=props))
    p.disconnect()
    p.loop_stop()
    # One keeper takes its queue back without acknowledging QoS 1 (in flight) and answers
    # QoS 2 with PUBREC only (in flight, waiting for PUBCOMP); a publisher leaves a QoS 2
    # PUBLISH without its PUBREL (received, awaiting PUBREL).
    k = raw_connect(port, "keeper311")
    deadline = time.time() + 0.5
    k.settimeout(0.1)
    buf = b""
    while time.time() < deadline:
        try:
            buf += k.recv(65536)
        except socket.timeout:
            continue
        while len(buf) >= 2 and len(buf) >= 2 + buf[1]:
            first, body, buf = buf[0], buf[2:2 + buf[1]], buf[2 + buf[1]:]
            if first >> 4 == 3 and (first >> 1) & 3 == 2:
                topic_len = int.from_bytes(body[:2], "big")
                pid = body[2 + topic_len:4 + topic_len]
                k.sendall(bytes([0x50, 2]) + pid)  # PUBREC
    k.close()
    h = raw_connect(port, "halfway")
    h.sendall(bytes([0x34, 2 + 7 + 2 + 4]) + b"\x00\x07corpus/" + b"\x00\x07" + b"half")
    time.sleep(0.2)
    h.close()


def broker_files(broker, threads):
    d = tempfile.mkdtemp(prefix="tern-store-corpus.")
    port = free_port()
    conf = os.path.join(d, "tern.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {d}\npersistence_sync batch\nthreads {threads}\n")
    proc = subprocess.Popen([broker, "-c", conf], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        make_state(port, threads)
        time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(10)
    files = {}
    for path in sorted(glob.glob(os.path.join(d, "tern.db*"))):
        with open(path, "rb") as f:
            data = f.read()
        files[os.path.basename(path)] = data[:records_end(data)]
    shutil.rmtree(d)
    return files


def records_end(data):
    """Where the file's records end: the rest is the zeros of the room made ahead."""
    at = 0
    while at + 12 <= len(data) and data[at:at + 2] == b"Tr":
        at += 12 + int.from_bytes(data[at + 4:at + 8], "big")
    return min(at, len(data))


def as_list(data):
    """The file's records as store_fuzz's list (type, length, payload), or None."""
    out = bytearray()
    at = 0
    while at + 12 <= len(data):
        n = int.from_bytes(data[at + 4:at + 8], "big")
        if n > 255:
            return None
        out += bytes([data[at + 3], n]) + data[at + 12:at + 12 + n]
        at += 12 + n
    return bytes(out)


def main():
    broker = sys.argv[1] if len(sys.argv) > 1 else "build/bin/tern-broker"
    os.makedirs(OUT, exist_ok=True)
    written = 0
    for threads in (1, 2):
        for name, data in broker_files(broker, threads).items():
            tag = f"threads{threads}_{name.replace('.', '_')}"
            with open(os.path.join(OUT, tag + "_raw"), "wb") as f:
                f.write(bytes([0x03]) + data)  # as it is, read in 1 MiB windows
            written += 1
            records = as_list(data)
            if records is not None:
                with open(os.path.join(OUT, tag + "_records"), "wb") as f:
                    f.write(bytes([0x80 | 0x01]) + records)  # framed by store_fuzz, 13-byte windows
                written += 1
    print(f"{written} seeds in {OUT}")


if __name__ == "__main__":
    main()
