#!/usr/bin/python3
"""Packet-level tests of tern-broker: exact bytes in, exact bytes expected back, numbered by
area (01 connect, 02 subscribe, 03 publish, 04 retain, 05 session, 06 will, 07 keep-alive,
08 properties, 09 shared, 10 alias, 11 flow control), each case run for MQTT 3.1.1 and 5.0
where it applies. The broker runs with its defaults
(`-p 0`; with TERN_BROKER_THREADS=N also `threads N`, which CTest sets to 1 or 2), so every
reply, properties included, is known to the byte.

    packet_suite.py TERN_BROKER AREA [AREA...]     e.g. packet_suite.py build/bin/tern-broker 01 02

Prints one PASS/FAIL line per case and version, exits 1 when one failed.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from mqtt_wire import (V5, V311, PINGREQ, PINGRESP, Client, ack_packet,  # noqa: E402
                       connect_packet, disconnect_packet, packet, prop_pair, prop_str,
                       prop_u16, prop_u32, prop_u8, prop_vbi, publish_packet, s,
                       subscribe_packet, u16, unsubscribe_packet)

NAMES = {V311: "3.1.1", V5: "5.0", 3: "3.1"}
AREAS = {"01": "connect", "02": "subscribe", "03": "publish", "04": "retain", "05": "session",
         "06": "will", "07": "keep-alive", "08": "properties", "09": "shared", "10": "alias",
         "11": "flow control"}
CASES = []  # (number, title, function, versions)

# With TERN_BROKER_THREADS=N (CTest's packets.threads2.*, every area) the replies are the
# same bytes as with one thread, but for NO_MATCH below.
# The broker's CONNACK for an accepted 5.0 CONNECT that names its client id, with the
# defaults: Receive Maximum 100, Topic Alias Maximum 10, Maximum Packet Size 1 MiB.
CONNACK5_PROPS = bytes.fromhex("0b21006422000a2700100000")
# One difference: a 5.0 PUBACK/PUBREC says 0x10 (no matching subscribers) with one thread
# only; with more, a shard does not know another's subscribers and says 0x00.
# Unset, the broker runs its default: one thread per core it may run on.
THREADS = int(os.environ.get("TERN_BROKER_THREADS") or len(os.sched_getaffinity(0)))
NO_MATCH = 0x10 if THREADS <= 1 else 0


def connack(v, code=0, present=False):
    if v == V5:
        return packet(0x20, bytes([int(present), code]) + CONNACK5_PROPS)
    return packet(0x20, bytes([int(present), code]))


def puback(v, pid, kind=0x40, reason=0):
    """An acknowledgement as the broker writes it: 5.0 adds the reason code unless 0."""
    if v == V5 and reason != 0:
        return packet(kind, u16(pid) + bytes([reason]))
    return packet(kind, u16(pid))


def suback(v, pid, codes):
    return packet(0x90, u16(pid) + (b"\x00" if v == V5 else b"") + bytes(codes))


def case(number, title, versions=(V311, V5)):
    def register(fn):
        CASES.append((number, title, fn, versions))
        return fn
    return register


class Run:
    """What a case uses: clients it opens (closed after it), and exact comparisons."""

    def __init__(self, port, check, label):
        self.port, self.check, self.label = port, check, label
        self.clients = []

    def client(self, v=None, cid=None, clean=True, keep_alive=30, **kw):
        """A raw connection; with v and cid also CONNECTed (and the CONNACK checked)."""
        c = Client(self.port)
        self.clients.append(c)
        if v is not None:
            c.send(connect_packet(v, cid, clean=clean, keep_alive=keep_alive, **kw))
            got = c.raw()
            if not (isinstance(got, bytes) and got[0] == 0x20 and got[3] == 0):
                raise AssertionError(f"CONNECT {cid} not accepted: {got!r}")
        return c

    def expect(self, c, want, what, timeout=5.0):
        got = c.raw(timeout)
        ok = got == want
        shown = got.hex(" ") if isinstance(got, bytes) else repr(got)
        return self.check(ok, f"{self.label}: {what}" + ("" if ok else
                                                         f" (want {want.hex(' ')}, got {shown})"))

    def expect_closed(self, c, what):
        return self.check(c.closed(), f"{self.label}: {what}")

    def expect_nothing(self, c, what, timeout=0.5):
        got = c.raw(timeout)
        shown = got.hex(" ") if isinstance(got, bytes) else repr(got)
        return self.check(got is None, f"{self.label}: {what}" + ("" if got is None else
                                                                  f" (got {shown})"))

    def subscribe(self, c, v, pid, filters):
        c.send(subscribe_packet(v, pid, filters))
        return self.expect(c, suback(v, pid, [o & 3 for _, o in filters]),
                           f"SUBACK for {[f for f, _ in filters]}")

    def close(self):
        for c in self.clients:
            c.close()


# ---- 01 connect -----------------------------------------------------------------------------

@case("01-01", "CONNECT with a client id and Clean Session/Start is accepted")
def connect_accepted(t, v):
    c = t.client()
    c.send(connect_packet(v, f"c0101-{v}"))
    t.expect(c, connack(v), "CONNACK success, session present 0")


@case("01-02", "MQTT 3.1 (MQIsdp, level 3) is accepted", versions=(3,))
def connect_mqtt31(t, v):
    c = t.client()
    c.send(connect_packet(3, "c0102"))
    t.expect(c, packet(0x20, b"\x00\x00"), "CONNACK 0 in the 3.1 form")


@case("01-03", "an unsupported protocol level is refused: CONNACK 0x84, then closed",
      versions=(V5,))
def connect_level6(t, v):
    c = t.client()
    c.send(connect_packet(6, "c0103"))
    t.expect(c, packet(0x20, b"\x00\x84\x00"), "CONNACK 0x84 Unsupported Protocol Version")
    t.expect_closed(c, "closed after it (MQTT-3.1.2-2)")


@case("01-04", "the reserved CONNECT flag set: refused (MQTT-3.1.2-3)")
def connect_reserved_flag(t, v):
    c = t.client()
    body = s("MQTT") + bytes([v, 0x03]) + u16(30) + (b"\x00" if v == V5 else b"") + s("c0104")
    c.send(packet(0x10, body))
    if v == V5:
        t.expect(c, packet(0x20, b"\x00\x81\x00"), "CONNACK 0x81 Malformed Packet")
    t.expect_closed(c, "closed")


@case("01-05", "an empty client id with Clean Session 0: 3.1.1 refuses (0x02), 5.0 assigns one")
def connect_empty_id(t, v):
    c = t.client()
    c.send(connect_packet(v, "", clean=False))
    if v == V311:
        t.expect(c, packet(0x20, b"\x00\x02"), "CONNACK 0x02 Identifier Rejected (MQTT-3.1.3-8)")
        t.expect_closed(c, "closed")
    else:
        got = c.raw()
        ok = isinstance(got, bytes) and got[:4] == bytes([0x20, 0x26, 0, 0]) and b"\x12\x00\x15tern-" in got
        t.check(ok, f"{t.label}: CONNACK success with an Assigned Client Identifier "
                    f"(MQTT-3.1.3-7) ({got!r})")


@case("01-06", "a second CONNECT is a protocol violation (MQTT-3.1.0-2)")
def connect_twice(t, v):
    c = t.client(v, f"c0106-{v}")
    c.send(connect_packet(v, f"c0106-{v}"))
    if v == V5:
        t.expect(c, packet(0xE0, b"\x82"), "DISCONNECT 0x82 Protocol Error")
    t.expect_closed(c, "closed")


@case("01-07", "a password without a user name: closed in 3.1.1 (MQTT-3.1.2-22), allowed in 5.0")
def connect_password_only(t, v):
    c = t.client()
    c.send(connect_packet(v, f"c0107-{v}", password="secret"))
    if v == V311:
        t.expect_closed(c, "closed without CONNACK")
    else:
        t.expect(c, connack(v), "CONNACK success")


@case("01-08", "the same client id again takes the session over; the old connection is closed")
def connect_takeover(t, v):
    a = t.client(v, f"c0108-{v}")
    t.client(v, f"c0108-{v}")
    if v == V5:
        t.expect(a, packet(0xE0, b"\x8e"), "the first gets DISCONNECT 0x8E Session taken over")
    t.expect_closed(a, "the first connection is closed (MQTT-3.1.4-3)")


@case("01-09", "a packet before CONNECT closes the connection (MQTT-3.1.0-1)")
def connect_not_first(t, v):
    c = t.client()
    c.send(PINGREQ)
    t.expect_closed(c, "closed, no PINGRESP")


@case("01-10", "a bridge (level 0x84, the top bit of 3.1.1's level) is accepted; its "
      "subscriptions get No Local and Retain As Published", versions=(V311,))
def connect_bridge(t, v):
    b = t.client()
    b.send(connect_packet(0x80 | v, "c0110-bridge"))
    t.expect(b, connack(v), "CONNACK 0 to level 0x84")
    t.subscribe(b, v, 1, [("br/#", 0)])
    o = t.client(v, "c0110-o")
    t.subscribe(o, v, 1, [("br/#", 0)])
    b.send(publish_packet(v, "br/a", b"forwarded"))
    t.expect(o, publish_packet(v, "br/a", b"forwarded"), "an ordinary client gets it")
    t.expect_nothing(b, "not sent back to the bridge that forwarded it (No Local)")
    p = t.client(v, "c0110-p")
    p.send(publish_packet(v, "br/r", b"kept", retain=True))
    t.expect(b, publish_packet(v, "br/r", b"kept", retain=True),
             "RETAIN 1 on a live delivery to the bridge (Retain As Published)")
    t.expect(o, publish_packet(v, "br/r", b"kept"), "RETAIN 0 to an ordinary 3.1.1 client")
    p.send(publish_packet(v, "br/r", b"", retain=True))


# ---- 02 subscribe ---------------------------------------------------------------------------

@case("02-01", "SUBSCRIBE at QoS 0, 1 and 2: SUBACK grants each, in order")
def subscribe_granted(t, v):
    c = t.client(v, f"c0201-{v}")
    c.send(subscribe_packet(v, 1, [("s/0", 0), ("s/1", 1), ("s/2", 2)]))
    t.expect(c, suback(v, 1, [0, 1, 2]), "SUBACK 0, 1, 2 (MQTT-3.8.4-5)")


@case("02-02", "an invalid filter fails alone: 0x80 (3.1.1) / 0x8F (5.0), the others granted")
def subscribe_invalid_filter(t, v):
    c = t.client(v, f"c0202-{v}")
    c.send(subscribe_packet(v, 1, [("a/#/b", 0), ("a/b", 1)]))
    t.expect(c, suback(v, 1, [0x80 if v == V311 else 0x8F, 1]), "SUBACK failure, then 1")


@case("02-03", "SUBSCRIBE with reserved header flags 0000 is malformed (MQTT-3.8.1-1)")
def subscribe_bad_flags(t, v):
    c = t.client(v, f"c0203-{v}")
    c.send(packet(0x80, u16(1) + (b"\x00" if v == V5 else b"") + s("a") + b"\x00"))
    if v == V5:
        t.expect(c, packet(0xE0, b"\x81"), "DISCONNECT 0x81 Malformed Packet")
    t.expect_closed(c, "closed")


@case("02-04", "UNSUBSCRIBE: UNSUBACK with its packet id; 5.0 says 0x11 for no subscription")
def unsubscribe(t, v):
    c = t.client(v, f"c0204-{v}")
    t.subscribe(c, v, 1, [("u/a", 1)])
    c.send(unsubscribe_packet(v, 2, ["u/a", "u/none"]))
    want = packet(0xB0, u16(2) + b"\x00\x00\x11") if v == V5 else packet(0xB0, u16(2))
    t.expect(c, want, "UNSUBACK (MQTT-3.10.4-4)")
    p = t.client(v, f"c0204p-{v}")
    p.send(publish_packet(v, "u/a", b"gone"))
    t.expect_nothing(c, "no delivery after UNSUBSCRIBE")


@case("02-05", "+ and # match levels as the specification says (4.7.1)")
def wildcards(t, v):
    c = t.client(v, f"c0205-{v}")
    t.subscribe(c, v, 1, [("w/+/x", 0), ("w/a/#", 0)])
    p = t.client(v, f"c0205p-{v}")
    for topic in ("w/b/x", "w/a", "w/b/y", "w/b/x/y"):
        p.send(publish_packet(v, topic, b"1"))
    t.expect(c, publish_packet(v, "w/b/x", b"1"), "w/b/x matches w/+/x")
    t.expect(c, publish_packet(v, "w/a", b"1"), "w/a matches w/a/# (the parent level)")
    t.expect_nothing(c, "w/b/y and w/b/x/y match nothing")


@case("02-06", "topics starting with $ are not matched by # or +/... (MQTT-4.7.2-1)")
def dollar_topics(t, v):
    c = t.client(v, f"c0206-{v}")
    t.subscribe(c, v, 1, [("#", 0), ("+/d", 0)])
    d = t.client(v, f"c0206d-{v}")
    t.subscribe(d, v, 1, [("$x/#", 0)])
    p = t.client(v, f"c0206p-{v}")
    p.send(publish_packet(v, "$x/d", b"1"))
    t.expect(d, publish_packet(v, "$x/d", b"1"), "$x/# receives $x/d")
    t.expect_nothing(c, "# and +/d do not")


# ---- 03 publish -----------------------------------------------------------------------------

@case("03-01", "QoS 0 reaches a subscriber byte for byte")
def publish_qos0(t, v):
    c = t.client(v, f"c0301-{v}")
    t.subscribe(c, v, 1, [("p/0", 0)])
    p = t.client(v, f"c0301p-{v}")
    p.send(publish_packet(v, "p/0", b"\x00\xffpayload"))
    t.expect(c, publish_packet(v, "p/0", b"\x00\xffpayload"), "the same PUBLISH")


@case("03-02", "QoS 1: PUBACK to the publisher; the subscriber gets QoS 1 with a packet id")
def publish_qos1(t, v):
    c = t.client(v, f"c0302-{v}")
    t.subscribe(c, v, 1, [("p/1", 1)])
    p = t.client(v, f"c0302p-{v}")
    p.send(publish_packet(v, "p/1", b"m", qos=1, pid=0x1234))
    t.expect(p, puback(v, 0x1234), "PUBACK with the publisher's id (MQTT-4.3.2-4)")
    t.expect(c, publish_packet(v, "p/1", b"m", qos=1, pid=1), "QoS 1 PUBLISH, id 1, DUP 0")
    c.send(ack_packet(0x40, 1))
    t.expect_nothing(c, "acknowledged: not sent again")


@case("03-03", "QoS 2: PUBREC, PUBREL, PUBCOMP both ways; a resent PUBLISH is not routed twice")
def publish_qos2(t, v):
    c = t.client(v, f"c0303-{v}")
    t.subscribe(c, v, 1, [("p/2", 2)])
    p = t.client(v, f"c0303p-{v}")
    p.send(publish_packet(v, "p/2", b"once", qos=2, pid=7))
    t.expect(p, puback(v, 7, 0x50), "PUBREC")
    p.send(publish_packet(v, "p/2", b"once", qos=2, pid=7, dup=True))
    t.expect(p, puback(v, 7, 0x50), "PUBREC again for the DUP resend (MQTT-4.3.3-10)")
    p.send(ack_packet(0x62, 7))
    t.expect(p, puback(v, 7, 0x70), "PUBCOMP")
    t.expect(c, publish_packet(v, "p/2", b"once", qos=2, pid=1), "one QoS 2 PUBLISH")
    c.send(ack_packet(0x50, 1))
    t.expect(c, puback(v, 1, 0x62), "PUBREL from the broker (MQTT-4.3.3-4)")
    c.send(ack_packet(0x70, 1))
    t.expect_nothing(c, "no second copy")


@case("03-04", "delivery at the lower of the message's and the subscription's QoS")
def publish_downgrade(t, v):
    c = t.client(v, f"c0304-{v}")
    t.subscribe(c, v, 1, [("p/d", 0)])
    p = t.client(v, f"c0304p-{v}")
    p.send(publish_packet(v, "p/d", b"m", qos=2, pid=3))
    t.expect(p, puback(v, 3, 0x50), "PUBREC")
    t.expect(c, publish_packet(v, "p/d", b"m"), "the subscriber gets QoS 0")


@case("03-05", "PUBLISH with QoS 3 is malformed (MQTT-3.3.1-4)")
def publish_qos3(t, v):
    c = t.client(v, f"c0305-{v}")
    c.send(packet(0x36, s("t") + u16(1) + (b"\x00" if v == V5 else b"") + b"x"))
    if v == V5:
        t.expect(c, packet(0xE0, b"\x81"), "DISCONNECT 0x81")
    t.expect_closed(c, "closed")


@case("03-06", "a client may not publish to $SYS: acknowledged but not routed", versions=(V5,))
def publish_sys(t, v):
    c = t.client(v, f"c0306-{v}")
    t.subscribe(c, v, 1, [("$SYS/test/#", 0)])
    p = t.client(v, f"c0306p-{v}")
    p.send(publish_packet(v, "$SYS/test/x", b"m", qos=1, pid=4))
    t.expect(p, puback(v, 4, 0x40, 0x87), "PUBACK 0x87 Not authorized")
    t.expect_nothing(c, "nothing delivered")


# ---- 04 retain ------------------------------------------------------------------------------

@case("04-01", "a retained message goes to a later subscriber with RETAIN 1 (MQTT-3.3.1-6)")
def retain_later(t, v):
    p = t.client(v, f"c0401p-{v}")
    p.send(publish_packet(v, f"r/1/{v}", b"kept", qos=1, pid=1, retain=True))
    t.expect(p, puback(v, 1, reason=NO_MATCH if v == V5 else 0), "PUBACK (no subscriber yet)")
    c = t.client(v, f"c0401-{v}")
    t.subscribe(c, v, 1, [(f"r/1/{v}", 0)])
    t.expect(c, publish_packet(v, f"r/1/{v}", b"kept", retain=True), "RETAIN 1")


@case("04-02", "an empty retained message clears it and is not stored (MQTT-3.3.1-10/11)")
def retain_clear(t, v):
    p = t.client(v, f"c0402p-{v}")
    p.send(publish_packet(v, f"r/2/{v}", b"old", retain=True))
    p.send(publish_packet(v, f"r/2/{v}", b"", retain=True))
    p.send(PINGREQ)
    t.expect(p, PINGRESP, "both handled")
    c = t.client(v, f"c0402-{v}")
    t.subscribe(c, v, 1, [(f"r/2/{v}", 0)])
    t.expect_nothing(c, "no retained message")


@case("04-03", "to an existing subscription a retained message goes with RETAIN 0 "
      "(MQTT-3.3.1-9); 5.0 Retain As Published keeps it (MQTT-3.8.3-4)")
def retain_live(t, v):
    c = t.client(v, f"c0403-{v}")
    t.subscribe(c, v, 1, [(f"r/3/{v}", 0)])
    p = t.client(v, f"c0403p-{v}")
    p.send(publish_packet(v, f"r/3/{v}", b"live", retain=True))
    t.expect(c, publish_packet(v, f"r/3/{v}", b"live"), "RETAIN 0 on a live delivery")
    if v == V5:
        k = t.client(v, f"c0403k-{v}")
        t.subscribe(k, v, 1, [(f"r/3k/{v}", 0x08)])
        p.send(publish_packet(v, f"r/3k/{v}", b"live", retain=True))
        t.expect(k, publish_packet(v, f"r/3k/{v}", b"live", retain=True),
                 "RETAIN 1 with Retain As Published")


@case("04-04", "Retain Handling 1 sends retained messages only for a new subscription, "
      "2 never (MQTT-3.3.1-10)", versions=(V5,))
def retain_handling(t, v):
    p = t.client(v, f"c0404p-{v}")
    p.send(publish_packet(v, "r/4", b"kept", retain=True))
    p.send(PINGREQ)
    t.expect(p, PINGRESP, "retained")
    c = t.client(v, f"c0404-{v}")
    c.send(subscribe_packet(v, 1, [("r/4", 0x20)]))
    t.expect(c, suback(v, 1, [0]), "SUBACK, Retain Handling 2")
    t.expect_nothing(c, "nothing with Retain Handling 2")
    c.send(subscribe_packet(v, 2, [("r/+", 0x10)]))
    t.expect(c, suback(v, 2, [0]), "SUBACK, Retain Handling 1, new subscription")
    t.expect(c, publish_packet(v, "r/4", b"kept", retain=True), "the retained message")
    c.send(subscribe_packet(v, 3, [("r/+", 0x10)]))
    t.expect(c, suback(v, 3, [0]), "SUBACK, the same subscription again")
    t.expect_nothing(c, "not again for an existing subscription")


# ---- 05 session -----------------------------------------------------------------------------

def durable(v):
    """CONNECT arguments for a session that outlives the connection."""
    return {"clean": False, "props": prop_u32(0x11, 300)} if v == V5 else {"clean": False}


@case("05-01", "a stored session is resumed: session present 1, QoS 1 messages sent meanwhile "
      "arrive (MQTT-3.1.2-4/5)")
def session_resume(t, v):
    cid = f"c0501-{v}"
    c = t.client(v, cid, **durable(v))
    t.subscribe(c, v, 1, [(f"se/1/{v}", 1)])
    c.send(disconnect_packet())
    t.expect_closed(c, "DISCONNECT")
    p = t.client(v, f"c0501p-{v}")
    p.send(publish_packet(v, f"se/1/{v}", b"queued", qos=1, pid=1))
    t.expect(p, puback(v, 1), "PUBACK (the offline session counts as a subscriber)")
    r = t.client()
    r.send(connect_packet(v, cid, **durable(v)))
    t.expect(r, connack(v, present=True), "CONNACK session present 1")
    t.expect(r, publish_packet(v, f"se/1/{v}", b"queued", qos=1, pid=1), "the queued message")


@case("05-02", "Clean Session/Start 1 discards the stored session: present 0, no messages")
def session_clean(t, v):
    cid = f"c0502-{v}"
    c = t.client(v, cid, **durable(v))
    t.subscribe(c, v, 1, [(f"se/2/{v}", 1)])
    c.send(disconnect_packet())
    t.expect_closed(c, "DISCONNECT")
    r = t.client()
    r.send(connect_packet(v, cid, clean=True))
    t.expect(r, connack(v, present=False), "CONNACK session present 0 (MQTT-3.1.2-6)")
    p = t.client(v, f"c0502p-{v}")
    p.send(publish_packet(v, f"se/2/{v}", b"m"))
    t.expect_nothing(r, "the old subscription is gone")


@case("05-03", "Session Expiry Interval 0 ends the session with the connection", versions=(V5,))
def session_expiry_zero(t, v):
    cid = f"c0503-{v}"
    c = t.client(v, cid, clean=False)
    c.send(disconnect_packet())
    t.expect_closed(c, "DISCONNECT")
    r = t.client()
    r.send(connect_packet(v, cid, clean=False))
    t.expect(r, connack(v, present=False), "CONNACK session present 0")


# ---- 06 will --------------------------------------------------------------------------------

def watcher(t, v, topic):
    w = t.client(v, f"w-{topic.replace('/', '-')}")
    t.subscribe(w, v, 1, [(topic, 0)])
    return w


@case("06-01", "the Will goes out when the connection is lost (MQTT-3.1.2-8)")
def will_on_loss(t, v):
    w = watcher(t, v, f"wl/1/{v}")
    c = t.client(v, f"c0601-{v}", will=f"wl/1/{v}", will_payload=b"lost")
    c.close()
    t.expect(w, publish_packet(v, f"wl/1/{v}", b"lost"), "the Will")


@case("06-02", "a normal DISCONNECT discards the Will (MQTT-3.1.2-10)")
def will_discarded(t, v):
    w = watcher(t, v, f"wl/2/{v}")
    c = t.client(v, f"c0602-{v}", will=f"wl/2/{v}")
    c.send(disconnect_packet())
    t.expect_closed(c, "DISCONNECT")
    t.expect_nothing(w, "no Will", timeout=1.0)


@case("06-03", "DISCONNECT 0x04 asks for the Will", versions=(V5,))
def will_on_request(t, v):
    w = watcher(t, v, "wl/3")
    c = t.client(v, "c0603", will="wl/3", will_payload=b"asked")
    c.send(disconnect_packet(V5, 0x04))
    t.expect(w, publish_packet(v, "wl/3", b"asked"), "the Will")


@case("06-04", "a Will with Will Retain is retained (MQTT-3.1.2-17)")
def will_retained(t, v):
    c = t.client(v, f"c0604-{v}", will=f"wl/4/{v}", will_payload=b"kept", will_retain=True)
    c.close()
    time.sleep(0.3)
    w = t.client(v, f"c0604w-{v}")
    t.subscribe(w, v, 1, [(f"wl/4/{v}", 0)])
    t.expect(w, publish_packet(v, f"wl/4/{v}", b"kept", retain=True), "retained Will")


@case("06-05", "a Will Delay Interval: the Will waits for it, and a reconnect in time "
      "cancels it (MQTT-3.1.3-9)", versions=(V5,))
def will_delay(t, v):
    w = watcher(t, v, "wl/5")
    c = t.client(v, "c0605", will="wl/5", clean=False, props=prop_u32(0x11, 60),
                 will_props=prop_u32(0x18, 1))
    c.close()
    t.expect_nothing(w, "nothing at once", timeout=0.4)
    t.client(v, "c0605", clean=False, props=prop_u32(0x11, 60))
    t.expect_nothing(w, "no Will after the reconnect", timeout=1.5)
    # Without the reconnect the Will goes out once the delay has passed.
    w2 = watcher(t, v, "wl/5b")
    c2 = t.client(v, "c0605b", will="wl/5b", will_payload=b"late", clean=False,
                  props=prop_u32(0x11, 60), will_props=prop_u32(0x18, 1))
    c2.close()
    t.expect_nothing(w2, "not at once", timeout=0.4)
    t.expect(w2, publish_packet(v, "wl/5b", b"late"), "the Will after its 1 s delay")


# ---- 07 keep-alive --------------------------------------------------------------------------

@case("07-01", "PINGREQ gets PINGRESP (MQTT-3.12.4-1)")
def ping(t, v):
    c = t.client(v, f"c0701-{v}")
    c.send(PINGREQ)
    t.expect(c, PINGRESP, "PINGRESP")


@case("07-02", "silence past 1.5 times the keep-alive closes the connection (MQTT-3.1.2-24) "
      "and sends the Will")
def keep_alive_expiry(t, v):
    w = watcher(t, v, f"ka/{v}")
    c = t.client(v, f"c0702-{v}", keep_alive=1, will=f"ka/{v}", will_payload=b"timeout")
    start = time.monotonic()
    closed = c.closed(5.0)
    took = time.monotonic() - start
    t.check(closed and 1.0 <= took <= 3.0,
            f"{t.label}: closed after {took:.2f} s (keep-alive 1 s: between 1.5 and 2.5)")
    t.expect(w, publish_packet(v, f"ka/{v}", b"timeout"), "the Will")


@case("07-03", "keep-alive 0 turns the mechanism off (MQTT-3.1.2-23 ff.)", versions=(V5,))
def keep_alive_zero(t, v):
    c = t.client(v, "c0703", keep_alive=0)
    t.expect_nothing(c, "open and silent after 2 s", timeout=2.0)
    c.send(PINGREQ)
    t.expect(c, PINGRESP, "still served")


# ---- 08 properties (5.0) ----------------------------------------------------------------------

@case("08-01", "PUBLISH properties reach the subscriber unchanged, User Properties in order, "
      "with the Subscription Identifier (MQTT-3.3.2-17/18, MQTT-3.3.4-3)", versions=(V5,))
def properties_passed(t, v):
    c = t.client(v, "c0801")
    c.send(subscribe_packet(v, 1, [("pp/#", 1)], props=prop_vbi(0x0B, 5)))
    t.expect(c, suback(v, 1, [1]), "SUBACK")
    p = t.client(v, "c0801p")
    common = (prop_str(0x03, "text/plain") + prop_str(0x08, "resp/x") + prop_str(0x09, "corr") +
              prop_pair(0x26, "k", "v1") + prop_pair(0x26, "k", "v2"))
    sent = prop_u8(0x01, 1) + common + prop_u32(0x02, 60)
    p.send(publish_packet(v, "pp/a", b"hi", props=sent))
    want = prop_vbi(0x0B, 5) + sent
    t.expect(c, publish_packet(v, "pp/a", b"hi", props=want),
             "the same properties in the order sent, after the Subscription Identifier")


@case("08-02", "Message Expiry: a queued message past its interval is dropped, one within "
      "it goes with the interval reduced (MQTT-3.3.2-5/6)", versions=(V5,))
def message_expiry(t, v):
    c = t.client(v, "c0802", **durable(v))
    t.subscribe(c, v, 1, [("pe/#", 1)])
    c.send(disconnect_packet())
    t.expect_closed(c, "DISCONNECT")
    p = t.client(v, "c0802p")
    p.send(publish_packet(v, "pe/short", b"s", qos=1, pid=1, props=prop_u32(0x02, 1)))
    t.expect(p, puback(v, 1), "PUBACK")
    p.send(publish_packet(v, "pe/long", b"l", qos=1, pid=2, props=prop_u32(0x02, 60)))
    t.expect(p, puback(v, 2), "PUBACK")
    time.sleep(2.2)
    r = t.client()
    r.send(connect_packet(v, "c0802", **durable(v)))
    t.expect(r, connack(v, present=True), "CONNACK session present 1")
    got = r.raw()
    head = publish_packet(v, "pe/long", b"l", qos=1, pid=1, props=prop_u32(0x02, 0))[:-6]
    left = int.from_bytes(got[-5:-1], "big") if isinstance(got, bytes) else -1
    t.check(isinstance(got, bytes) and got[:-6] == head and got[-6] == 0x02 and 56 <= left <= 58,
            f"{t.label}: only pe/long arrives, its interval now {left} s of 60 ({got!r})")


@case("08-03", "No Local: a client does not get its own messages back (MQTT-3.8.3-3)",
      versions=(V5,))
def no_local(t, v):
    c = t.client(v, "c0803")
    c.send(subscribe_packet(v, 1, [("nl/t", 0x04)]))
    t.expect(c, suback(v, 1, [0]), "SUBACK")
    o = t.client(v, "c0803o")
    t.subscribe(o, v, 1, [("nl/t", 0)])
    c.send(publish_packet(v, "nl/t", b"own"))
    t.expect(o, publish_packet(v, "nl/t", b"own"), "another client gets it")
    t.expect_nothing(c, "not sent back to its publisher")


@case("08-04", "Maximum Packet Size from the client: a larger message is not sent to it "
      "(MQTT-3.1.2-25)", versions=(V5,))
def client_max_packet(t, v):
    c = t.client(v, "c0804", props=prop_u32(0x27, 30))
    t.subscribe(c, v, 1, [("pm", 0)])
    p = t.client(v, "c0804p")
    p.send(publish_packet(v, "pm", b"x" * 40))
    p.send(publish_packet(v, "pm", b"small"))
    t.expect(c, publish_packet(v, "pm", b"small"), "only the message that fits")


# ---- 09 shared subscriptions ------------------------------------------------------------------

@case("09-01", "$share/group/filter: each message goes to one member, in turn (4.8.2)")
def shared_turns(t, v):
    a = t.client(v, f"c0901a-{v}")
    b = t.client(v, f"c0901b-{v}")
    t.subscribe(a, v, 1, [(f"$share/g/sh/{v}", 0)])
    t.subscribe(b, v, 1, [(f"$share/g/sh/{v}", 0)])
    p = t.client(v, f"c0901p-{v}")
    for i in range(4):
        p.send(publish_packet(v, f"sh/{v}", str(i).encode()))
    t.expect(a, publish_packet(v, f"sh/{v}", b"0"), "member a gets 0")
    t.expect(b, publish_packet(v, f"sh/{v}", b"1"), "member b gets 1")
    t.expect(a, publish_packet(v, f"sh/{v}", b"2"), "member a gets 2")
    t.expect(b, publish_packet(v, f"sh/{v}", b"3"), "member b gets 3")
    t.expect_nothing(a, "nothing twice")


@case("09-02", "No Local on a shared subscription is a protocol error (MQTT-3.8.3-4)",
      versions=(V5,))
def shared_no_local(t, v):
    c = t.client(v, "c0902")
    c.send(subscribe_packet(v, 1, [("$share/g/x", 0x04)]))
    t.expect(c, packet(0xE0, b"\x82"), "DISCONNECT 0x82 Protocol Error")
    t.expect_closed(c, "closed")


@case("09-03", "a member at its Receive Maximum is passed over while another can send (4.8.2)",
      versions=(V5,))
def shared_receive_maximum(t, v):
    a_id = "c0903a"
    # With threads > 1 a group homed on another shard than a's: the busy/ready notes between
    # shards are what is tested then.
    name = next(f"g{i}" for i in range(100)
                if THREADS <= 1 or harness.shard_of(f"$share/g{i}/rm", THREADS) !=
                harness.shard_of(a_id, THREADS))
    group = f"$share/{name}/rm"
    settle = 0.3 if THREADS > 1 else 0  # a note from a's shard reaching the group's home
    a = t.client(v, a_id, props=prop_u16(0x21, 1))  # Receive Maximum 1
    b = t.client(v, "c0903b")
    t.subscribe(a, v, 1, [(group, 1)])
    t.subscribe(b, v, 1, [(group, 1)])
    time.sleep(settle)
    p = t.client(v, "c0903p")

    def publish(i):
        p.send(publish_packet(v, "rm", str(i).encode(), qos=1, pid=i + 1))
        t.expect(p, puback(v, i + 1), f"PUBACK {i}")

    publish(0)
    t.expect(a, publish_packet(v, "rm", b"0", qos=1, pid=1), "a gets 0 and does not acknowledge it")
    time.sleep(settle)
    for i in (1, 2, 3):
        publish(i)
        t.expect(b, publish_packet(v, "rm", str(i).encode(), qos=1, pid=i),
                 f"b gets {i}: a is at its Receive Maximum")
    t.expect_nothing(a, "a gets nothing more while 0 is unacknowledged")
    a.send(ack_packet(0x40, 1, v))
    time.sleep(settle)
    publish(4)
    t.expect(a, publish_packet(v, "rm", b"4", qos=1, pid=2), "a acknowledged: its turn again")
    t.expect_nothing(b, "b does not get 4 too")


# ---- 10 topic aliases (5.0) -------------------------------------------------------------------

@case("10-01", "a Topic Alias from the client: set with the topic, then used alone (3.3.2.3.4)",
      versions=(V5,))
def alias_inbound(t, v):
    c = t.client(v, "c1001")
    t.subscribe(c, v, 1, [("al/#", 0)])
    p = t.client(v, "c1001p")
    p.send(publish_packet(v, "al/b", b"a1", props=prop_u16(0x23, 3)))
    p.send(publish_packet(v, "", b"a2", props=prop_u16(0x23, 3)))
    t.expect(c, publish_packet(v, "al/b", b"a1"), "delivered by name")
    t.expect(c, publish_packet(v, "al/b", b"a2"), "the alias alone names al/b")


@case("10-02", "an alias above the broker's Topic Alias Maximum (10): DISCONNECT 0x94 "
      "(MQTT-3.3.2-9)", versions=(V5,))
def alias_too_big(t, v):
    p = t.client(v, "c1002")
    p.send(publish_packet(v, "al/c", b"x", props=prop_u16(0x23, 11)))
    t.expect(p, packet(0xE0, b"\x94"), "DISCONNECT 0x94 Topic Alias invalid")
    t.expect_closed(p, "closed")


@case("10-03", "aliases towards a client that allows them: the topic once, then the alias "
      "alone (MQTT-3.3.2-11)", versions=(V5,))
def alias_outbound(t, v):
    c = t.client(v, "c1003", props=prop_u16(0x22, 5))
    t.subscribe(c, v, 1, [("aq/#", 0)])
    p = t.client(v, "c1003p")
    p.send(publish_packet(v, "aq/abcd", b"1"))
    p.send(publish_packet(v, "aq/abcd", b"2"))
    t.expect(c, publish_packet(v, "aq/abcd", b"1", props=prop_u16(0x23, 1)), "topic and alias 1")
    t.expect(c, publish_packet(v, "", b"2", props=prop_u16(0x23, 1)), "alias 1 alone")


# ---- 11 flow control --------------------------------------------------------------------------

@case("11-01", "the client's Receive Maximum bounds unacknowledged QoS 1 deliveries "
      "(MQTT-3.3.4-9)", versions=(V5,))
def receive_maximum(t, v):
    c = t.client(v, "c1101", props=prop_u16(0x21, 2))
    t.subscribe(c, v, 1, [("fc", 1)])
    p = t.client(v, "c1101p")
    for i in range(3):
        p.send(publish_packet(v, "fc", str(i).encode(), qos=1, pid=10 + i))
    t.expect(c, publish_packet(v, "fc", b"0", qos=1, pid=1), "first")
    t.expect(c, publish_packet(v, "fc", b"1", qos=1, pid=2), "second")
    t.expect_nothing(c, "the third waits")
    c.send(ack_packet(0x40, 1))
    t.expect(c, publish_packet(v, "fc", b"2", qos=1, pid=3), "the third after a PUBACK")


@case("11-02", "more QoS 2 messages awaiting PUBREL than the broker's Receive Maximum (100): "
      "DISCONNECT 0x93 (MQTT-3.3.4-8)", versions=(V5,))
def receive_maximum_exceeded(t, v):
    p = t.client(v, "c1102")
    p.send(b"".join(publish_packet(v, "fq", b"x", qos=2, pid=i) for i in range(1, 102)))
    recs = 0
    while True:
        got = p.raw()
        if not (isinstance(got, bytes) and got[0] == 0x50):
            break
        recs += 1
    t.check(recs == 100 and got == packet(0xE0, b"\x93"),
            f"{t.label}: 100 PUBREC, then DISCONNECT 0x93 ({recs} PUBREC, then {got!r})")
    t.expect_closed(p, "closed")


@case("11-03", "a 3.1.1 subscriber gets at most the broker's in-flight window (100) of "
      "unacknowledged QoS 1 messages", versions=(V311,))
def inflight_window(t, v):
    c = t.client(v, "c1103")
    t.subscribe(c, v, 1, [("fw", 1)])
    p = t.client(v, "c1103p")
    p.send(b"".join(publish_packet(v, "fw", b"m", qos=1, pid=i) for i in range(1, 106)))
    got = 0
    while isinstance(c.raw(1.0), bytes):
        got += 1
    t.check(got == 100, f"{t.label}: {got} PUBLISH before any PUBACK (want 100)")
    c.send(ack_packet(0x40, 1))
    t.expect(c, publish_packet(v, "fw", b"m", qos=1, pid=101), "one more after a PUBACK")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, areas = sys.argv[1], sys.argv[2:]
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        sys.exit(f"unknown area(s) {unknown}; known: {AREAS}")
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-packets-")
    broker = harness.start_tern_broker(binary, work)
    try:
        for number, title, fn, versions in CASES:
            if number[:2] not in areas:
                continue
            for v in versions:
                label = f"{number} [{NAMES[v]}]"
                print(f"--- {label} {title}", flush=True)
                t = Run(broker.port, check, label)
                try:
                    fn(t, v)
                except (AssertionError, OSError) as e:
                    check(False, f"{label}: {e}")
                finally:
                    t.close()
        check(broker.running(), "the broker is still running")
    finally:
        broker.stop()
    if check.failures:
        print(f"broker log: {broker.log()[-3000:]}")
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
