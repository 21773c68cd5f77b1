#!/usr/bin/env python3
"""Writes the seed corpus of broker_fuzz (tests/fuzz/corpus/broker/): valid CONNECT,
SUBSCRIBE, PUBLISH, acknowledgement and DISCONNECT sequences for MQTT 3.1.1 and 5.0 over
three connections, in broker_fuzz's step encoding, some with the store recorder (knob 64). Run it again after changing either."""
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "broker")
FEED, TIME, DRAIN, LOSE = 0, 2, 3, 4


def vbi(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    b = text.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + vbi(len(body)) + body


def connect(v5, cid, clean=True, will=None):
    flags = 0x02 if clean else 0
    payload = s(cid)
    if will:
        flags |= 0x04 | 0x08  # will, QoS 1
        payload += (b"\x00" if v5 else b"") + s(will) + s("gone")
    body = s("MQTT") + bytes([5 if v5 else 4, flags]) + (30).to_bytes(2, "big")
    body += (b"\x00" if v5 else b"") + payload
    return packet(0x10, body)


def subscribe(v5, pid, *filters):
    body = pid.to_bytes(2, "big") + (b"\x00" if v5 else b"")
    for f, q in filters:
        body += s(f) + bytes([q])
    return packet(0x82, body)


def publish(v5, topic, payload, qos=0, pid=1, retain=False):
    body = s(topic) + (pid.to_bytes(2, "big") if qos else b"") + (b"\x00" if v5 else b"")
    return packet(0x30 | (qos << 1) | int(retain), body + payload)


def ack(kind, pid):
    return packet(kind, pid.to_bytes(2, "big"))


def feed(conn, data):
    out = bytearray()
    for i in range(0, len(data), 63):
        chunk = data[i:i + 63]
        out += bytes([conn + 3 * FEED, len(chunk)]) + chunk
    return bytes(out)


def op(conn, action, arg=None):
    return bytes([conn + 3 * action]) + (bytes([arg]) if arg is not None else b"")


def scenario(v5, knobs=0):
    out = bytes([knobs])
    out += feed(0, connect(v5, "sub", will="w/sub") + subscribe(v5, 1, ("t/#", 2), ("public/#", 1)))
    out += op(0, DRAIN)
    out += feed(1, connect(v5, "pub") + publish(v5, "t/a", b"hello", 1, 7)
                + publish(v5, "t/b", b"two", 2, 8) + publish(v5, "r", b"kept", 0, retain=True)
                + publish(v5, "public/news", b"n", 1, 9))
    out += op(1, DRAIN) + op(0, DRAIN)
    out += feed(0, ack(0x40, 1) + ack(0x50, 2) + ack(0x70, 2))
    out += feed(1, ack(0x62, 8)) + op(1, DRAIN)
    out += feed(2, connect(v5, "late", clean=False) + subscribe(v5, 3, ("r", 1), ("+/+", 0)))
    out += op(2, DRAIN) + op(0, TIME, 200) + op(0, LOSE) + op(2, DRAIN)
    out += feed(1, packet(0xC0, b"") + packet(0xE0, b"")) + op(1, DRAIN)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "sequence_311": scenario(False),
        "sequence_5": scenario(True),
        "sequence_5_acl_rate": scenario(True, knobs=1 | 32),
        "sequence_311_qos0_queue": scenario(False, knobs=2 | 4),
        # With the store recorder (and its compaction) behind the engine.
        "sequence_311_store": scenario(False, knobs=64),
        "sequence_5_store": scenario(True, knobs=64),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
