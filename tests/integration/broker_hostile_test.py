#!/usr/bin/env python3
"""Hostile clients against tern-broker, in the manner of Mosquitto's packet tests: raw bytes
over loopback sockets, each case for MQTT 3.1.1 and 5.0 where the answer differs.

For every malformed or protocol-violating client: the right reason code (5.0: DISCONNECT
with it, or CONNACK for a bad CONNECT) or a closed connection without an answer (3.1.1),
its Will published when the violation came after a CONNECT with a Will, and afterwards a
normal client still publishes and receives. Then the resource cases: a Remaining Length
that promises 256 MiB, 10,000 filters in one SUBSCRIBE, 1,000 connections that never send
CONNECT (closed at connect_timeout_ms), a subscriber that never reads while a publisher
floods it, and memory_limit and max_publish_rate on brokers of their own.

With --tls the same suite runs over a TLS listener (a CA and a server certificate made with
openssl for the run) with allow_anonymous false, a password file made by `tern-broker passwd`
and an acl_file: every client logs in, and the secured path adds its own cases (anonymous
and wrong passwords refused, a SUBSCRIBE the ACL refuses, publishes and deliveries the ACL
denies, a plaintext client and TLS garbage on the TLS port, connections that never finish the
TLS handshake).

    broker_hostile_test.py TERN_BROKER [--tls]
"""

import os
import resource
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import re
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import harness  # noqa: E402
from mqtt_wire import (HOST, V5, V311, WAIT, Client, connack_code,  # noqa: E402
                       connect_packet, disconnect_code, packet, publish_packet, s,
                       subscribe_packet)

MALFORMED, PROTOCOL_ERROR = 0x81, 0x82
TOPIC_NAME_INVALID, TOPIC_ALIAS_INVALID, PACKET_TOO_LARGE = 0x90, 0x94, 0x95
QUOTA_EXCEEDED, NOT_AUTHORIZED, BAD_CREDENTIALS = 0x97, 0x87, 0x86


# ---- how clients reach the broker -----------------------------------------------------------

class Net:
    """Plain TCP with anonymous clients, or (secure) TLS with user names and passwords: the
    listener block of every broker of the run and the clients that connect to it."""

    ACL = ("# Rules before any user line: anonymous clients (refused anyway).\n"
           "topic read nothing/#\n"
           "user hostile\n"
           "topic deny secret/#\n"
           "topic readwrite #\n"
           "user observer\n"
           "topic readwrite #\n"
           "topic read $SYS/#\n")

    def __init__(self, binary, work, secure):
        self.secure = secure
        self.tls = None
        self.passwords = {"hostile": "h0stile-pw", "observer": "0bserver-pw"}
        if not secure:
            return
        d = os.path.join(work, "secure")
        os.mkdir(d)
        self.files = {k: os.path.join(d, k) for k in ("ca.crt", "ca.key", "server.crt",
                                                       "server.key", "server.csr", "pw", "acl")}
        f = self.files
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl", *a], check=True, timeout=30,  # noqa: E731
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run("req", "-x509", *ec, "-keyout", f["ca.key"], "-out", f["ca.crt"], "-days", "2",
            "-subj", "/CN=Tern Hostile Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
        run("req", "-new", *ec, "-keyout", f["server.key"], "-out", f["server.csr"],
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
        run("x509", "-req", "-in", f["server.csr"], "-CA", f["ca.crt"], "-CAkey", f["ca.key"],
            "-CAcreateserial", "-out", f["server.crt"], "-days", "2", "-copy_extensions", "copy")
        for i, (user, pw) in enumerate(self.passwords.items()):
            subprocess.run([binary, "passwd", *(["-c"] if i == 0 else []), "--stdin", f["pw"],
                            user], input=pw + "\n", text=True, check=True, timeout=30)
        with open(f["acl"], "w") as out:
            out.write(self.ACL)
        self.tls = ssl.create_default_context(cafile=f["ca.crt"])

    def listener(self):
        """The listener block of a broker of the run (port 0, loopback)."""
        if not self.secure:
            return "listener 0 127.0.0.1\nallow_anonymous true\n"
        f = self.files
        return ("listener 0 127.0.0.1\ncertfile %s\nkeyfile %s\nallow_anonymous false\n"
                "password_file %s\nacl_file %s\n"
                % (f["server.crt"], f["server.key"], f["pw"], f["acl"]))

    def credentials(self, user="hostile"):
        return (user, self.passwords[user]) if self.secure else None

    def login(self, user="hostile"):
        """The user name and password arguments of connect_packet (none when plain)."""
        c = self.credentials(user)
        return {"username": c[0], "password": c[1]} if c else {}

    def client(self, port, user="hostile"):
        return Client(port, tls=self.tls, credentials=self.credentials(user))


NET = None  # set by main()


# ---- the suite ------------------------------------------------------------------------------

class Suite:
    def __init__(self, port, broker, check):
        self.port, self.broker, self.check = port, broker, check
        # Sees every Will and every probe message for the whole run.
        self.observer = NET.client(port, "observer")
        assert self.observer.connect(V5, "observer", keep_alive=0)
        self.observer.send(subscribe_packet(V5, 1, [("will/#", 1), ("probe/#", 1),
                                                    ("secret/#", 1)]))
        p = self.observer.packet()
        assert isinstance(p, tuple) and p[0] == 0x90, p
        self.probes = 0
        self.clients = 0

    def publishes_seen(self, timeout, until=None):
        """Topics of the PUBLISH packets the observer gets within `timeout` (acked), or up
        to the topic `until`."""
        topics = []
        deadline = time.monotonic() + timeout
        while until is None or until not in topics:
            p = self.observer.packet(max(0.0, deadline - time.monotonic()))
            if not isinstance(p, tuple):
                return topics
            if p[0] & 0xF0 == 0x30:
                tlen = struct.unpack(">H", p[1][:2])[0]
                topics.append(p[1][2:2 + tlen].decode())
                if (p[0] >> 1) & 3:
                    pid = p[1][2 + tlen:4 + tlen]
                    self.observer.send(packet(0x40, pid))
        return topics

    def will_seen(self, name, timeout=2.0):
        return ("will/" + name) in self.publishes_seen(timeout, until="will/" + name)

    def healthy(self, what):
        """A new client publishes QoS 1 and the observer receives it."""
        self.probes += 1
        c = NET.client(self.port)
        ok = c.connect(V311, "probe%d" % self.probes)
        topic = "probe/%d" % self.probes
        c.send(publish_packet(V311, topic, b"ok", qos=1, pid=1))
        ack = c.packet()
        ok = ok and isinstance(ack, tuple) and ack[0] == 0x40
        ok = ok and topic in self.publishes_seen(2.0 if ok else 0.1, until=topic)
        c.close()
        self.check(ok and self.broker.running(), "after %s: a normal client publishes and receives"
                   % what)

    # A client that sends `data` after a CONNECT (with a Will): 5.0 gets DISCONNECT `code`,
    # 3.1.1 is closed without an answer; the Will is published either way.
    def violation(self, name, v, data, code=None, will=True):
        c = NET.client(self.port)
        self.clients += 1
        cid = "hostile%d-%d" % (self.clients, v)
        if not c.connect(v, cid, will=("will/" + cid) if will else None):
            self.check(False, "%s (%d): connected" % (name, v))
            return
        c.send(data)
        p = c.packet()
        if v == V5 and code is not None:
            self.check(disconnect_code(p) == code,
                       "%s (5.0): DISCONNECT 0x%02X (got %r)" % (name, code, p))
            p = c.packet()
        self.check(p == "closed", "%s (%s): connection closed" % (name, "5.0" if v == V5 else "3.1.1"))
        if will:
            self.check(self.will_seen(cid), "%s (%d): Will published" % (name, v))
        c.close()

    # A CONNECT that is itself bad: 5.0 CONNACK `code` then close when given, else closed.
    def bad_connect(self, name, data, connack=None):
        c = NET.client(self.port)
        c.send(data)
        p = c.packet()
        if connack is not None:
            self.check(connack_code(p) == connack,
                       "%s: CONNACK 0x%02X (got %r)" % (name, connack, p))
            p = c.packet()
        self.check(p == "closed", "%s: connection closed" % name)
        c.close()


def malformed_cases(t):
    """Every malformed-packet rule of the protocol core, after a CONNECT."""
    for v in (V311, V5):
        vp = b"\x00" if v == V5 else b""
        cases = [
            ("qos 3 (MQTT-3.3.1-4)", packet(0x36, s("t") + b"\x00\x01" + vp + b"x"), MALFORMED),
            ("dup on qos 0 (MQTT-3.3.1-2)", packet(0x38, s("t") + vp + b"x"), MALFORMED),
            ("publish topic with + (MQTT-3.3.2-2)", publish_packet(v, "a/+/b"), TOPIC_NAME_INVALID),
            ("publish topic with # (MQTT-3.3.2-2)", publish_packet(v, "a/#", qos=1), TOPIC_NAME_INVALID),
            ("invalid utf-8 in topic (MQTT-1.5.4-1)", packet(0x30, s(b"a\xc0\xafb") + vp), MALFORMED),
            ("U+0000 in topic (MQTT-1.5.4-2)", packet(0x30, s(b"a\x00b") + vp), MALFORMED),
            ("packet id 0 (MQTT-2.2.1-3)", publish_packet(v, "t", qos=1, pid=0), PROTOCOL_ERROR),
            ("subscribe flags 0x80 (MQTT-3.8.1-1)", packet(0x80, b"\x00\x01" + vp + s("t") + b"\x00"), MALFORMED),
            ("subscribe without filters (MQTT-3.8.3-3)", packet(0x82, b"\x00\x01" + vp), PROTOCOL_ERROR),
            ("subscribe reserved option bits (MQTT-3.8.3-5)", packet(0x82, b"\x00\x01" + vp + s("t") + b"\xc0"), MALFORMED),
            ("unsubscribe without filters (MQTT-3.10.3-2)", packet(0xA2, b"\x00\x01" + vp), PROTOCOL_ERROR),
            ("pingreq with a body", packet(0xC0, b"\x00"), MALFORMED),
            ("remaining length of 5 bytes (MQTT-2.2.3)", b"\x30\xff\xff\xff\xff\x01", MALFORMED),
            ("reserved packet type 0", packet(0x00, b""), MALFORMED),
            ("connack from a client", packet(0x20, b"\x00\x00" + vp), PROTOCOL_ERROR),
            ("second CONNECT (MQTT-3.1.0-2)", connect_packet(v, "again", **NET.login()), PROTOCOL_ERROR),
        ]
        if v == V5:
            cases += [
                ("topic alias 0 (MQTT-3.3.2-8)", publish_packet(v, "t", props=b"\x23\x00\x00"),
                 TOPIC_ALIAS_INVALID),
                ("topic alias over the maximum (MQTT-3.3.2-9)",
                 publish_packet(v, "t", props=b"\x23\xff\xff"), TOPIC_ALIAS_INVALID),
                ("unknown property", publish_packet(v, "t", props=b"\x7f\x00"), MALFORMED),
                ("retain handling 3", packet(0x82, b"\x00\x01\x00" + s("t") + b"\x30"), PROTOCOL_ERROR),
                ("AUTH without a method", packet(0xF0, b"\x00\x00"), PROTOCOL_ERROR),
            ]
        else:
            cases.append(("AUTH in 3.1.1 (reserved type 15)", packet(0xF0, b""), MALFORMED))
        for name, data, code in cases:
            t.violation(name, v, data, code)
    t.healthy("the malformed packets")


def connect_cases(t):
    t.bad_connect("a PUBLISH before CONNECT (MQTT-3.1.0-1)", publish_packet(V311, "t"))
    t.bad_connect("a PINGREQ before CONNECT", packet(0xC0, b""))
    t.bad_connect("protocol name MQTX (MQTT-3.1.2-1)",
                  packet(0x10, s("MQTX") + b"\x04\x02\x00\x1e" + s("c")))
    t.bad_connect("protocol level 9: 5.0 CONNACK 0x84", packet(0x10, s("MQTT") + b"\x09\x02\x00\x1e" + s("c")), 0x84)
    t.bad_connect("protocol level 3 with name MQTT: 3.1.1 CONNACK 1",
                  packet(0x10, s("MQTT") + b"\x03\x02\x00\x1e" + s("c")), 0x01)
    t.bad_connect("3.1.1 reserved connect flag (MQTT-3.1.2-3)",
                  packet(0x10, s("MQTT") + b"\x04\x03\x00\x1e" + s("c")))
    t.bad_connect("5.0 reserved connect flag: CONNACK 0x81",
                  packet(0x10, s("MQTT") + b"\x05\x03\x00\x1e\x00" + s("c")), MALFORMED)
    t.bad_connect("3.1.1 will QoS 3 (MQTT-3.1.2-14)",
                  packet(0x10, s("MQTT") + b"\x04\x1e\x00\x1e" + s("c") + s("w") + s("m")))
    t.bad_connect("3.1.1 password without user name (MQTT-3.1.2-22)",
                  packet(0x10, s("MQTT") + b"\x04\x42\x00\x1e" + s("c") + s("pw")))
    t.bad_connect("3.1.1 empty client id with clean session 0 (MQTT-3.1.3-8): CONNACK 2",
                  connect_packet(V311, "", clean=False, **NET.login()), 0x02)
    t.bad_connect("client id over max_client_id_length: CONNACK 0x85",
                  connect_packet(V5, "c" * 300, **NET.login()), 0x85)
    t.bad_connect("3.1.1 client id over max_client_id_length: CONNACK 2",
                  connect_packet(V311, "c" * 300, **NET.login()), 0x02)
    t.bad_connect("5.0 Will topic over max_topic_levels: CONNACK 0x90",
                  connect_packet(V5, "deepwill", will="/".join(["l"] * 40),
                                 **NET.login()), TOPIC_NAME_INVALID)
    t.healthy("the bad CONNECT packets")


def packet_id_cases(t):
    """Reused packet ids: a QoS 2 PUBLISH sent again before PUBREL is acknowledged and not
    delivered twice (MQTT-4.3.3); a QoS 1 id may be reused once acknowledged."""
    for v in (V311, V5):
        c = NET.client(t.port)
        c.connect(v, "reuse-%d" % v)
        topic = "probe/reuse%d" % v
        for _ in range(3):
            c.send(publish_packet(v, topic, b"q2", qos=2, pid=9))
            p = c.packet()
            t.check(isinstance(p, tuple) and p[0] == 0x50, "qos 2 id 9 (%d): PUBREC" % v)
        c.send(packet(0x62, b"\x00\x09"))
        p = c.packet()
        t.check(isinstance(p, tuple) and p[0] == 0x70, "qos 2 id 9 (%d): PUBCOMP" % v)
        for _ in range(2):
            c.send(publish_packet(v, topic + "q1", b"q1", qos=1, pid=9))
        got = t.publishes_seen(1.0)
        t.check(got.count(topic) == 1, "qos 2 sent three times (%d): delivered once (%r)" % (v, got))
        t.check(got.count(topic + "q1") == 2, "qos 1 id reused (%d): both delivered" % v)
        c.send(packet(0xE0, b""))
        c.close()
    t.healthy("reused packet ids")


def topic_limit_case(t):
    """A PUBLISH topic over max_topic_levels (32): 5.0 PUBACK 0x90 and the client stays, 3.1.1
    QoS 1 closed unacknowledged; both counted in /metrics and $SYS/broker/limits/topic/refused."""
    deep = "/".join(["d"] * 40)
    c = NET.client(t.port)
    c.connect(V5, "deep5")
    c.send(publish_packet(V5, deep, b"x", qos=1, pid=4))
    p = c.packet()
    t.check(isinstance(p, tuple) and p[0] == 0x40 and p[1][2:3] == bytes([TOPIC_NAME_INVALID]),
            "topic over max_topic_levels (5.0): PUBACK 0x90 (got %r)" % (p,))
    c.send(packet(0xC0, b""))
    t.check(c.packet() == (0xD0, b""), "topic over max_topic_levels (5.0): still connected")
    c.close()
    c = NET.client(t.port)
    c.connect(V311, "deep311")
    c.send(publish_packet(V311, deep, b"x", qos=1, pid=4))
    t.check(c.closed(), "topic over max_topic_levels (3.1.1): closed without PUBACK")
    c.close()
    refused = metrics(t.broker).get('tern_messages_dropped_total{reason="topic_limit"}', -1)
    t.check(refused == 2, "/metrics: 2 PUBLISH refused for topic_limit (%d)" % refused)
    values = sys_limits(t.port, lambda v: v.get("limits/topic/refused", 0) >= 2)
    t.check(values.get("limits/topic/refused") == 2,
            "$SYS/broker/limits/topic/refused 2 (%r)" % values)
    t.healthy("topics over max_topic_levels")


def huge_remaining_length(t):
    """A Remaining Length of 268,435,455 (256 MiB): refused from the fixed header, nothing
    allocated for it."""
    rss_before = rss_kib(t.broker.proc.pid)
    for v in (V311, V5):
        t.violation("256 MiB remaining length", v, b"\x30\xff\xff\xff\x7f" + b"\x00" * 1024,
                    PACKET_TOO_LARGE)
    conns = []
    for i in range(20):
        c = NET.client(t.port)
        c.connect(V311, "big%d" % i)
        c.send(b"\x30\xff\xff\xff\x7f" + b"\x00" * 4096)
        conns.append(c)
    closed = sum(1 for c in conns if c.closed())
    for c in conns:
        c.close()
    t.check(closed == 20, "20 more promises of 256 MiB: all closed (%d)" % closed)
    grown = rss_kib(t.broker.proc.pid) - rss_before
    t.check(grown < 32 * 1024, "broker memory grew %d KiB (under 32 MiB)" % grown)
    t.healthy("256 MiB remaining lengths")


def many_filters(t):
    """10,000 filters in one SUBSCRIBE: one SUBACK with 10,000 codes, within bounded time;
    then max_subscriptions (10,000) refuses the next filter."""
    for v in (V311, V5):
        c = NET.client(t.port)
        c.connect(v, "filters-%d" % v)
        filters = [("f/%d/+" % i, 1) for i in range(10000)]
        start = time.monotonic()
        c.send(subscribe_packet(v, 7, filters))
        p = c.packet(timeout=20)
        took = time.monotonic() - start
        ok = isinstance(p, tuple) and p[0] == 0x90
        codes = p[1][3 if v == V5 else 2:] if ok else b""
        t.check(ok and len(codes) == 10000 and set(codes) == {1},
                "10,000 filters (%d): SUBACK with 10,000 grants in %.2f s" % (v, took))
        c.send(subscribe_packet(v, 8, [("over/limit", 0)]))
        p = c.packet()
        want = QUOTA_EXCEEDED if v == V5 else 0x80
        got = p[1][-1] if isinstance(p, tuple) and p[0] == 0x90 else None
        t.check(got == want, "filter 10,001 (%d): SUBACK 0x%02X (got %r)" % (v, want, got))
        c.send(packet(0xE0, b""))
        c.close()
    t.healthy("10,000 filters")


def idle_connections(t, connect_timeout):
    """1,000 connections that never send CONNECT: all closed at connect_timeout_ms, while a
    normal client keeps working. Over TLS 900 of them never even start the TLS handshake and
    100 finish it and then send nothing: the CONNECT deadline counts from the accept."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    start = time.monotonic()
    socks = []
    for i in range(1000):
        sk = socket.create_connection((HOST, t.port), timeout=WAIT)
        if NET.tls is not None and i >= 900:
            sk = NET.tls.wrap_socket(sk, server_hostname=HOST)
        socks.append(sk)
    t.healthy("1,000 idle connections open")
    sel = selectors.DefaultSelector()
    for sk in socks:
        sk.setblocking(False)
        sel.register(sk, selectors.EVENT_READ)
    open_ = set(socks)
    deadline = start + connect_timeout + 10
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            try:
                data = key.fileobj.recv(16)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except OSError:
                data = b""
            if data == b"":
                sel.unregister(key.fileobj)
                open_.discard(key.fileobj)
    took = time.monotonic() - start
    for sk in socks:
        sk.close()
    t.check(not open_, "1,000 connections without CONNECT: all closed (%d left) after %.1f s"
            % (len(open_), took))
    t.check(took >= connect_timeout * 0.9, "not before connect_timeout_ms (%.1f s)" % took)
    t.check(took < connect_timeout + 4, "closed within about connect_timeout_ms of the accept "
            "(%.1f s; a TLS handshake is part of that time)" % took)
    t.healthy("1,000 connections closed at the CONNECT deadline")


def never_reads(t):
    """A subscriber that never reads while 64 MiB are published to it: the broker's memory
    stays bounded (its queue and output are) and a normal client keeps working."""
    slow = NET.client(t.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(V311, "never-reads")
    slow.send(subscribe_packet(V311, 1, [("flood/#", 1)]))
    time.sleep(0.2)  # its SUBACK arrives; it is never read
    rss_before = rss_kib(t.broker.proc.pid)
    pub = NET.client(t.port)
    pub.connect(V311, "flooder")
    payload = b"p" * 16384
    chunk = b"".join(publish_packet(V311, "flood/x", payload) for _ in range(64))
    pub.sock.settimeout(WAIT)
    sent = 0
    try:
        for _ in range(64):
            pub.sock.sendall(chunk)  # 64 x 1 MiB at QoS 0
            sent += len(chunk)
        for i in range(200):  # QoS 1: queued up to max_queued_messages, then dropped
            pub.sock.sendall(publish_packet(V311, "flood/q1", payload, qos=1, pid=i + 1))
    except OSError:
        pass
    t.check(sent >= 32 * 1024 * 1024, "flooder sent %d MiB" % (sent >> 20))
    t.healthy("a flood to a client that never reads")
    grown = rss_kib(t.broker.proc.pid) - rss_before
    if sanitized(t.broker.proc.pid):
        # ASan keeps freed memory in quarantine (256 MiB by default): the 64 MiB that went
        # through show up as growth. The normal build checks the bound.
        print("note: broker memory grew %d KiB (AddressSanitizer build: not checked)" % grown)
    else:
        t.check(grown < 48 * 1024, "broker memory grew %d KiB for a client that never reads "
                "(under 48 MiB)" % grown)
    slow.close()
    pub.close()
    t.healthy("the client that never read left")


def secured_cases(t):
    """Only on the secured listener: who may not log in, what the ACL denies, and what is not
    TLS at all."""
    # Anonymous and a wrong password, 3.1.1 and 5.0 at once (each waits out the refusal
    # delay): CONNACK 5 in 3.1.1; in 5.0 0x87 Not authorized for the anonymous client, 0x86
    # Bad User Name or Password for the others; then closed.
    tries = []
    for v in (V311, V5):
        for name, login in (("anonymous", {}),
                            ("wrong password", {"username": "hostile", "password": "guess"}),
                            ("unknown user", {"username": "nobody", "password": "x"})):
            c = Client(t.port, tls=NET.tls)
            c.send(connect_packet(v, "login-%s-%d" % (name.replace(" ", "-"), v), **login))
            tries.append((name, v, c))
    for name, v, c in tries:
        want = 0x05 if v != V5 else NOT_AUTHORIZED if name == "anonymous" else BAD_CREDENTIALS
        p = c.packet()
        t.check(connack_code(p) == want, "%s (%d): CONNACK 0x%02X (got %r)" % (name, v, want, p))
        t.check(c.closed(), "%s (%d): connection closed" % (name, v))
        c.close()
    # The ACL: hostile may not write secret/#; 5.0 gets PUBACK 0x87, 3.1.1 a PUBACK and the
    # message is dropped. Nobody receives them (the observer reads secret/#).
    for v in (V311, V5):
        c = NET.client(t.port)
        t.check(c.connect(v, "acl-writer-%d" % v), "acl writer (%d) logs in" % v)
        c.send(publish_packet(v, "secret/w%d" % v, b"no", qos=1, pid=3))
        p = c.packet()
        code = (p[1][2] if len(p[1]) > 2 else 0) if isinstance(p, tuple) and p[0] == 0x40 else None
        t.check(code == (NOT_AUTHORIZED if v == V5 else 0),
                "publish the ACL denies (%d): PUBACK 0x%02X (got %r)"
                % (v, NOT_AUTHORIZED if v == V5 else 0, p))
        c.send(packet(0xC0, b""))
        t.check(c.packet() == (0xD0, b""), "publish the ACL denies (%d): still connected" % v)
        c.close()
    # Reading: hostile's SUBSCRIBE to secret/# is refused (0x87: wholly inside its deny rule);
    # +/r is granted (it may read most of it) but gets nothing of what the observer publishes
    # to secret/r; the observer's own subscription shows it was routed.
    reader = NET.client(t.port)
    reader.connect(V5, "acl-reader")
    reader.send(subscribe_packet(V5, 1, [("+/r", 1), ("secret/#", 1)]))
    p = reader.packet()
    t.check(isinstance(p, tuple) and p[0] == 0x90 and p[1][3:] == bytes([1, NOT_AUTHORIZED]),
            "acl reader: SUBACK 1 for +/r, 0x87 for secret/# (got %r)" % (p,))
    t.observer.send(publish_packet(V5, "secret/r", b"for observer only", qos=1, pid=77))
    got = t.publishes_seen(2.0, until="secret/r")
    t.check("secret/r" in got and "secret/w4" not in got and "secret/w5" not in got,
            "the observer gets its own secret/r and none of the denied publishes (%r)" % got)
    t.check(reader.nothing(0.5), "a delivery the ACL denies is not sent")
    reader.close()
    # Not TLS: a plaintext CONNECT, and bytes that look like a TLS record but are not one.
    for name, data in (("plaintext CONNECT on the TLS port", connect_packet(V311, "plain")),
                       ("a broken TLS record", b"\x16\x03\x01\x00\x05" + b"\xff" * 64)):
        sk = socket.create_connection((HOST, t.port), timeout=WAIT)
        sk.sendall(data)
        answer, eof = b"", False
        try:
            while len(answer) < 65536:
                more = sk.recv(4096)
                if not more:
                    eof = True
                    break
                answer += more
        except socket.timeout:
            pass
        except OSError:
            eof = True  # reset
        sk.close()
        t.check(eof and not answer.startswith(b"\x20"),
                "%s: closed without an MQTT answer (%r)" % (name, answer[:8]))
    t.healthy("the secured-listener cases")


def memory_limit_case(binary, work, check):
    """memory_limit on a broker of its own: an offline subscriber's queue fills the held
    bytes; then 5.0 PUBACK 0x97 and a 3.1.1 QoS 1 PUBLISH closes the connection."""
    conf = os.path.join(work, "memory.conf")
    with open(conf, "w") as f:
        f.write(NET.listener() + "memory_limit 262144\n"
                "max_queued_bytes 0\nmax_queued_messages 0\n")
    broker = harness.start_tern_broker(binary, work, ["-c", conf])
    try:
        sub = NET.client(broker.port)
        sub.send(connect_packet(V5, "offline", clean=False, props=b"\x11\xff\xff\xff\xff",
                                **NET.login()))
        sub.packet()
        sub.send(subscribe_packet(V5, 1, [("m/#", 1)]))
        sub.packet()
        sub.send(packet(0xE0, b""))
        sub.close()
        pub = NET.client(broker.port)
        pub.connect(V5, "pub5")
        codes = []
        for i in range(40):  # 40 x 16 KiB > 256 KiB
            pub.send(publish_packet(V5, "m/x", b"m" * 16384, qos=1, pid=i + 1))
            p = pub.packet()
            codes.append(p[1][2] if isinstance(p, tuple) and len(p[1]) > 2 else 0)
        check(codes[0] == 0 and codes[-1] == QUOTA_EXCEEDED and codes.count(QUOTA_EXCEEDED) >= 20,
              "memory_limit (5.0): PUBACK 0x00 first, 0x97 once full (%r)" % codes)
        c3 = NET.client(broker.port)
        c3.connect(V311, "pub311")
        c3.send(publish_packet(V311, "m/x", b"m", qos=0))
        c3.send(publish_packet(V311, "m/x", b"m", qos=1, pid=1))
        check(c3.closed(), "memory_limit (3.1.1): QoS 1 PUBLISH closes without PUBACK")
        # The subscriber comes back clean: its queue is gone and publishing works again.
        sub = NET.client(broker.port)
        sub.connect(V5, "offline", clean=True)
        sub.send(subscribe_packet(V5, 2, [("m/#", 1)]))
        sub.packet()
        pub.send(publish_packet(V5, "m/x", b"again", qos=1, pid=99))
        p = pub.packet()
        check(isinstance(p, tuple) and p[0] == 0x40 and (len(p[1]) == 2 or p[1][2] == 0),
              "memory_limit: accepted again once the queue is gone (%r)" % (p,))
        check(broker.running(), "memory_limit broker still running")
    finally:
        broker.stop()


def output_memory_case(binary, work, check):
    """memory_limit counts the bytes waiting in connection output buffers: 40 subscribers that
    never read get 4,000-byte messages (copied into each one's output) until the publisher is
    refused with 5.0 PUBACK 0x97. The broker's memory stays near memory_limit (16 MiB) where
    40 x max_outbound_bytes (4 MiB) and as much again in writes could otherwise wait; a client
    that reads keeps being served; once the silent subscribers are gone the memory is given
    back and a publish is accepted and delivered again."""
    conf = os.path.join(work, "output.conf")
    limit = 16 << 20
    with open(conf, "w") as f:
        f.write(NET.listener() + "memory_limit %d\nsys_interval 1\n"
                "metrics_listener 0 127.0.0.1\n" % limit)
    broker = harness.start_tern_broker(binary, work, ["-c", conf])
    try:
        silent = []
        for i in range(40):
            c = NET.client(broker.port)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(V311, "silent%d" % i)
            c.send(subscribe_packet(V311, 1, [("out/#", 0)]))
            silent.append(c)
        reader = NET.client(broker.port)
        reader.connect(V5, "reader", keep_alive=0)
        reader.send(subscribe_packet(V5, 1, [("ok/#", 1)]))
        check(isinstance(reader.packet(), tuple), "output memory: the reader subscribed")
        time.sleep(0.3)  # the silent ones' SUBACKs are out; they are never read
        rss_before = rss_kib(broker.proc.pid)
        pub = NET.client(broker.port)
        pub.connect(V5, "out-pub")
        payload = b"o" * 4000  # under output_batch::share_threshold: copied for each
        accepted, refused, m = 0, 0, {}
        for _ in range(100):  # at most 5,000 messages, 50 at a time
            pub.send(b"".join(publish_packet(V5, "out/x", payload, qos=1, pid=i + 1)
                              for i in range(50)))
            for _ in range(50):
                p = pub.packet()
                if not (isinstance(p, tuple) and p[0] == 0x40):
                    break
                if len(p[1]) > 2 and p[1][2] == QUOTA_EXCEEDED:
                    refused += 1
                else:
                    accepted += 1
            if refused:
                # What the limit did, in /metrics (while the output still waits). With
                # threads > 1 the output can have gone on into the kernel's socket buffers
                # (outside memory_limit) since the refusal: then publish on until they are
                # full too.
                m = metrics(broker)
                if m.get('tern_memory_bytes{kind="output"}', 0) > 0:
                    break
        grown = rss_kib(broker.proc.pid) - rss_before
        dropped = m.get('tern_messages_dropped_total{reason="memory_limit"}', -1)
        output = m.get('tern_memory_bytes{kind="output"}', -1)
        check(dropped >= refused > 0 and output > 0 and
              m.get("tern_memory_limit_bytes") == limit,
              "output memory: /metrics counts %d refused (%d seen), %d bytes of output waiting"
              % (dropped, refused, output))
        # The limit holds with threads > 1 too: no shard takes messages from the others
        # once the memory without them is full (their fan-out is many times their size).
        check(0 < output <= limit + (2 << 20), "output memory: %d bytes of output waiting "
              "for memory_limit %d" % (output, limit))
        sys_values = sys_limits(broker.port,
                                lambda v: v.get("limits/memory/refused", 0) >= refused)
        check(sys_values.get("limits/memory/refused", 0) >= refused and
              "limits/memory/output" in sys_values and  # drained into the kernel by now?
              sys_values.get("limits/memory/bytes", 0) >= sys_values.get("limits/memory/output"),
              "output memory: $SYS/broker/limits/memory/... %r" % sys_values)
        check(refused > 0, "output memory: 5.0 PUBACK 0x97 once the silent subscribers' output "
              "reaches memory_limit (%d accepted, %d refused)" % (accepted, refused))
        if sanitized(broker.proc.pid):
            print("note: broker memory grew %d KiB (AddressSanitizer build: not checked)" % grown)
        else:
            check(grown < (limit >> 10) + 24 * 1024, "output memory: the broker grew %d KiB "
                  "(memory_limit 16 MiB + 24 MiB)" % grown)
        # Full, the broker still serves: a ping, a new connection, a subscription.
        reader.send(packet(0xC0, b""))
        check(reader.packet() == (0xD0, b""), "output memory: the reader's PINGREQ answered")
        late = NET.client(broker.port)
        check(late.connect(V311, "late"), "output memory: a new client connects while full")
        late.send(subscribe_packet(V311, 1, [("ok/#", 0)]))
        p = late.packet()
        check(isinstance(p, tuple) and p[0] == 0x90, "output memory: and subscribes (%r)" % (p,))
        late.close()
        # The silent subscribers go: their output is given back, publishing works again.
        for c in silent:
            c.close()
        ok, deadline, pid = False, time.monotonic() + 10, 100
        while not ok and time.monotonic() < deadline:
            pid += 1
            pub.send(publish_packet(V5, "ok/x", b"again", qos=1, pid=pid))
            p = pub.packet()
            ok = isinstance(p, tuple) and p[0] == 0x40 and (len(p[1]) == 2 or p[1][2] == 0)
            if not ok:
                time.sleep(0.1)
        check(ok, "output memory: accepted again once the silent subscribers are gone")
        got = None
        while ok:
            got = reader.packet()
            if not (isinstance(got, tuple) and got[0] & 0xF0 == 0x30 and b"again" not in got[1]):
                break
        check(isinstance(got, tuple) and got[0] & 0xF0 == 0x30 and got[1].endswith(b"again"),
              "output memory: the reader receives it (%r)" % (got,))
        check(broker.running(), "output memory: broker still running")
    finally:
        broker.stop()


def rate_limit_case(binary, work, check):
    """max_publish_rate 10 on a broker of its own: 40 PUBLISH packets written at once take
    about 3 s to get through (a burst of 10, then 10 a second), none is lost, the connection
    stays (its keep-alive of 2 s is not charged for the pauses), and another client is not
    slowed down."""
    conf = os.path.join(work, "rate.conf")
    with open(conf, "w") as f:
        f.write(NET.listener() + "max_publish_rate 10\nsys_interval 1\n"
                "metrics_listener 0 127.0.0.1\n")
    broker = harness.start_tern_broker(binary, work, ["-c", conf])
    try:
        sub = NET.client(broker.port)
        sub.connect(V311, "rate-sub", keep_alive=0)
        sub.send(subscribe_packet(V311, 1, [("rate/#", 0)]))
        sub.packet()
        fast = NET.client(broker.port)
        fast.connect(V311, "rate-fast", keep_alive=2)
        start = time.monotonic()
        fast.send(b"".join(publish_packet(V311, "rate/fast", b"%d" % i) for i in range(40)))
        other = NET.client(broker.port)
        other.connect(V311, "rate-other")
        other.send(publish_packet(V311, "rate/other", b"o", qos=1, pid=1))
        p = other.packet()
        other_took = time.monotonic() - start
        check(isinstance(p, tuple) and p[0] == 0x40 and other_took < 1.0,
              "max_publish_rate: another client's PUBACK in %.2f s" % other_took)
        got = 0
        deadline = time.monotonic() + 15
        while got < 40 and time.monotonic() < deadline:
            q = sub.packet(max(0.0, deadline - time.monotonic()))
            if not isinstance(q, tuple):
                break
            if q[0] & 0xF0 == 0x30 and q[1][2:11] == b"rate/fast":
                got += 1
        took = time.monotonic() - start
        check(got == 40, "max_publish_rate: all 40 messages delivered (%d)" % got)
        check(2.5 <= took <= 8.0, "max_publish_rate 10: 40 messages took %.2f s (about 3)" % took)
        fast.send(packet(0xC0, b""))
        p = fast.packet()
        check(isinstance(p, tuple) and p[0] == 0xD0, "max_publish_rate: the fast client is "
              "still connected (PINGRESP)")
        paused = metrics(broker).get("tern_rate_limited_total", -1)
        check(paused >= 1, "max_publish_rate: /metrics tern_rate_limited_total %d" % paused)
        sys_values = sys_limits(broker.port, lambda v: v.get("limits/rate/paused", 0) >= paused)
        check(sys_values.get("limits/rate/paused") == paused,
              "max_publish_rate: $SYS/broker/limits/rate/paused %r" % sys_values)
    finally:
        broker.stop()


def metrics(broker):
    """{sample: value} of the broker's /metrics (its metrics_listener on port 0)."""
    m = None
    end = time.monotonic() + WAIT
    while m is None and time.monotonic() < end:
        m = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", broker.log())
        if m is None:
            time.sleep(0.05)
    if m is None:
        return {}
    with urllib.request.urlopen(m.group(1), timeout=WAIT) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def sys_limits(port, want):
    """The retained $SYS/broker/limits/... values once `want(values)` holds (sys_interval 1),
    or the last ones seen within a few seconds. The observer's client id is one of shard 0,
    which publishes $SYS: with threads > 1, what goes to the other shards waits in their
    channels while memory_limit is reached."""
    c = NET.client(port, "observer")
    # Unset (broker_hostile_tls), the broker runs its default: one loop per core.
    shards = int(os.environ.get("TERN_BROKER_THREADS") or len(os.sched_getaffinity(0)))
    c.connect(V311, harness.ids_on(0, "sys-watch-%d-" % time.monotonic_ns(), shards)[0])
    c.send(subscribe_packet(V311, 1, [("$SYS/broker/limits/#", 0)]))
    values = {}
    end = time.monotonic() + 4
    while time.monotonic() < end and not want(values):
        p = c.packet(max(0.0, end - time.monotonic()))
        if not isinstance(p, tuple):
            break
        if p[0] & 0xF0 == 0x30:
            tlen = struct.unpack(">H", p[1][:2])[0]
            topic = p[1][2:2 + tlen].decode()
            values[topic[len("$SYS/broker/"):]] = int(p[1][2 + tlen:])
    c.close()
    return values


def sanitized(pid):
    """Whether the broker runs with AddressSanitizer (its runtime is mapped)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    global NET
    binary = sys.argv[1]
    secure = "--tls" in sys.argv[2:]
    check = harness.Checks()
    connect_timeout = 1.5
    if secure and subprocess.run(["openssl", "version"], capture_output=True).returncode != 0:
        print("SKIP: openssl not installed")
        return 77
    with tempfile.TemporaryDirectory() as work:
        NET = Net(binary, work, secure)
        conf = os.path.join(work, "tern.conf")
        with open(conf, "w") as f:
            f.write(NET.listener() + "max_connections 2000\n"
                    "connect_timeout_ms %d\nmax_topic_levels 32\nsys_interval 1\n"
                    "metrics_listener 0 127.0.0.1\n" % int(connect_timeout * 1000))
        broker = harness.start_tern_broker(binary, work, ["-c", conf])
        try:
            t = Suite(broker.port, broker, check)
            if secure:
                secured_cases(t)
            connect_cases(t)
            malformed_cases(t)
            packet_id_cases(t)
            topic_limit_case(t)
            huge_remaining_length(t)
            many_filters(t)
            never_reads(t)
            idle_connections(t, connect_timeout)
            t.healthy("everything")
        finally:
            status = broker.stop()
            check(status == 0, "broker exits 0 on SIGTERM (status %r)" % status)
        memory_limit_case(binary, work, check)
        output_memory_case(binary, work, check)
        rate_limit_case(binary, work, check)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
