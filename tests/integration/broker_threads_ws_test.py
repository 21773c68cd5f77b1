#!/usr/bin/python3
"""tern-broker with `threads 2` and WebSocket listeners, ws and wss (docs/broker.md,
"Threading"): shard 0 does the (TLS and) HTTP upgrade and reads frames until the CONNECT is
whole, then the connection (its descriptor, the TLS state with wss, the framing state and
what was read but not decoded) moves to the shard of its client id. The cases of
broker_threads_test.py that cross shards run here over ws and over wss (client ids picked on
each shard with the broker's own rule): publishes from one shard to the other both ways at
QoS 0, 1 and 2, retained messages, takeover (0x8E) and a resumed session, hostile first
packets; a 200 KiB payload across shards. Hostile frames get a close frame with the code
RFC 6455 asks for, then the end of the connection, both before the CONNECT is whole (on
shard 0) and after the move (on either shard): an unmasked frame (1002), a text frame
(1003), a frame announcing more than max_packet_size (1009), after the move a close frame
whose reason is not UTF-8 (1007); a ping is answered by a pong on
either shard; a normal client is served after each.

    broker_threads_ws_test.py TERN_BROKER
"""

import base64
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import mqtt_wire  # noqa: E402
import broker_threads_test as bt  # noqa: E402
from mqtt_wire import V5, V311, connect_packet, publish_packet  # noqa: E402

WAIT = 10.0


class WsSocket:
    """The socket interface mqtt_wire.Client uses (sendall, recv, settimeout, close) over a
    WebSocket: every sendall is one masked binary frame, recv returns the payload of the
    broker's frames. A close frame from the broker is kept in close_code, then reads as EOF."""

    def __init__(self, raw, host, path="/"):
        self.raw = raw
        self.inbuf = b""
        self.close_code = None
        self.pongs = []
        key = base64.b64encode(os.urandom(16)).decode()
        raw.settimeout(WAIT)
        raw.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
        head = b""
        end = time.monotonic() + WAIT
        while b"\r\n\r\n" not in head and time.monotonic() < end:
            chunk = raw.recv(4096)
            if not chunk:
                break
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"WebSocket upgrade refused: {head[:200]!r}")
        if b"sec-websocket-protocol: mqtt" not in status.lower():
            raise AssertionError(f"subprotocol mqtt not selected: {status!r}")
        self.inbuf = rest

    @staticmethod
    def frame(b0, payload, masked=True, length=None):
        n = len(payload) if length is None else length
        m = 0x80 if masked else 0
        if n < 126:
            head = bytes([b0, m | n])
        elif n <= 0xFFFF:
            head = bytes([b0, m | 126]) + struct.pack(">H", n)
        else:
            head = bytes([b0, m | 127]) + struct.pack(">Q", n)
        if not masked:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def send_raw(self, data):
        self.raw.sendall(data)

    def sendall(self, data):
        self.raw.sendall(self.frame(0x82, data))

    def settimeout(self, t):
        self.raw.settimeout(t)

    def fileno(self):
        return self.raw.fileno()

    def _frame(self):
        """(opcode, payload) of the next whole frame in inbuf, or None."""
        b = self.inbuf
        if len(b) < 2:
            return None
        n, at = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack(">Q", b[2:10])[0], 10
        if b[1] & 0x80:
            raise AssertionError("a masked frame from the server")
        if len(b) < at + n:
            return None
        self.inbuf = b[at + n:]
        return b[0], b[at:at + n]

    def recv(self, _n):
        while True:
            f = self._frame()
            if f is not None:
                b0, payload = f
                op = b0 & 0x0F
                if op == 0x8:
                    self.close_code = struct.unpack(">H", payload[:2])[0] if payload else 0
                    return b""
                if op == 0xA:
                    self.pongs.append(payload)
                    continue
                if op in (0x0, 0x2) and payload:
                    return payload
                if op in (0x0, 0x2):
                    continue
                raise AssertionError(f"unexpected frame {b0:#x} from the server")
            chunk = self.raw.recv(65536)
            if not chunk:
                return b""
            self.inbuf += chunk

    def close(self):
        try:
            self.raw.close()
        except OSError:
            pass


def ws_client_class(host, port_for, ctx=None, path="/"):
    """mqtt_wire.Client over ws (or wss with `ctx`), for the functions of broker_threads_test
    (which pass the ws port, replaced by port_for(port) when the listener differs)."""
    class WsClient(mqtt_wire.Client):
        def __init__(self, port, host_=None, tls=None, credentials=None):
            raw = socket.create_connection((host, port_for(port)), timeout=WAIT)
            try:
                if ctx is not None:
                    raw = ctx.wrap_socket(raw, server_hostname=host)
                self.sock = WsSocket(raw, host, path)
            except BaseException:
                raw.close()
                raise
            self.credentials = credentials
            self.buf = b""
    return WsClient


def closed_with(c, code, what, check):
    """The broker sends a close frame with `code`, then ends the connection."""
    got_eof = c.closed(WAIT)
    check(got_eof and c.sock.close_code == code,
          f"{what}: close frame {c.sock.close_code} (want {code}), then closed")
    # After the close frame the TCP connection ends too.
    end = time.monotonic() + WAIT
    ended = False
    while time.monotonic() < end:
        c.sock.raw.settimeout(max(0.05, end - time.monotonic()))
        try:
            if c.sock.raw.recv(4096) == b"":
                ended = True
                break
        except socket.timeout:
            break
        except (OSError, ssl.SSLError):
            ended = True
            break
    check(ended, f"{what}: the connection ends after the close frame")
    c.close()


def healthy(check, what):
    try:
        c, _ = bt.connect(0, V311, bt.ids_on(1, "healthy-")[0])
        bt.subscribe(c, V311, "healthy", 0)
        c.send(publish_packet(V311, "healthy", b"ok"))
        p = c.packet()
        ok = isinstance(p, tuple) and bt.parse_publish(p, V311)[1] == b"ok"
        c.close()
    except (OSError, AssertionError, ssl.SSLError) as e:
        ok, what = False, f"{what} ({e})"
    check(ok, f"after {what}: a normal client connects and is served")


def hostile_frames(check, name):
    W = WsSocket
    half = connect_packet(V5, bt.ids_on(1, "half-")[0])
    # Before the CONNECT is whole: on shard 0, before the move.
    for what, data, code in (
            ("an unmasked frame", W.frame(0x82, half[5:], masked=False), 1002),
            ("a text frame", W.frame(0x81, b"hello"), 1003),
            ("a frame announcing 2^40 bytes", W.frame(0x82, b"", length=1 << 40), 1009)):
        c = bt.Client(0)
        c.send(half[:5])
        c.sock.send_raw(data)
        closed_with(c, code, f"[{name}] {what} in the middle of the CONNECT", check)
    healthy(check, f"[{name}] hostile frames before the CONNECT")
    # After the move, on either shard.
    for shard in (0, 1):
        for what, data, code in (
                ("an unmasked frame", W.frame(0x82, b"\xc0\x00", masked=False), 1002),
                ("a text frame", W.frame(0x81, b"hello"), 1003),
                ("a frame announcing 2^40 bytes", W.frame(0x82, b"", length=1 << 40), 1009),
                ("a fragmented ping", W.frame(0x09, b"x"), 1002),
                ("a close frame whose reason is not UTF-8",
                 W.frame(0x88, struct.pack(">H", 1000) + b"bye\xff"), 1007)):
            c, _ = bt.connect(0, V5, bt.ids_on(shard, f"hostile-{code}-")[0])
            c.sock.send_raw(data)
            closed_with(c, code, f"[{name}] {what} on shard {shard} after CONNECT", check)
        # A ping is answered there, and the peer's close frame is echoed.
        c, _ = bt.connect(0, V5, bt.ids_on(shard, "ping-")[0])
        c.sock.send_raw(W.frame(0x89, b"are you there"))
        c.send(bytes([0xC0, 0x00]))  # PINGREQ: its PINGRESP comes after the pong
        p = c.packet()
        check(isinstance(p, tuple) and p[0] == 0xD0 and c.sock.pongs == [b"are you there"],
              f"[{name}] a ping on shard {shard}: pong with its payload ({c.sock.pongs!r})")
        c.sock.send_raw(W.frame(0x88, struct.pack(">H", 1000)))
        closed_with(c, 1000, f"[{name}] the client's close frame on shard {shard}: echoed", check)
        healthy(check, f"[{name}] hostile frames on shard {shard}")


def connect_then_close(check, name):
    """A CONNECT and a close frame in one write: the connection cannot move to the client
    id's shard with its input ended, so it is closed unanswered, and the id's persistent
    session stays on its own shard: the next CONNECT resumes it there with its queued
    messages. (Served on shard 0 instead, it left a session of that id on shard 0, which
    then took the id's later connections: the queued messages were never delivered.)"""
    W = WsSocket
    cid = bt.ids_on(1, "ended-")[0]
    c, _ = bt.connect(0, V311, cid, clean=False)
    bt.subscribe(c, V311, "ended/#", 1)
    c.close()
    time.sleep(0.2)  # its shard sees the end: the session is offline
    p, _ = bt.connect(0, V311, bt.ids_on(0, "ended-pub-")[0])
    for i in range(3):
        p.send(publish_packet(V311, "ended/x", b"m%d" % i, qos=1, pid=i + 1))
        p.packet()  # PUBACK
    p.close()
    raw = bt.Client(0)
    raw.sock.send_raw(W.frame(0x82, connect_packet(V311, cid, clean=False)) +
                      W.frame(0x88, struct.pack(">H", 1000)))
    check(raw.closed(WAIT), f"[{name}] a CONNECT and a close frame in one write: closed")
    raw.close()
    c, ack = bt.connect(0, V311, cid, clean=False)
    got = []
    for _ in range(3):
        q = c.packet()
        if not (isinstance(q, tuple) and q[0] & 0xF0 == 0x30):
            break
        got.append(bt.parse_publish(q, V311)[1])
    c.close()
    check(ack[1][0] == 1 and got == [b"m0", b"m1", b"m2"],
          f"[{name}] then the session on shard 1 is resumed with its 3 queued messages "
          f"(session present {ack[1][0]}, got {got!r})")


def big_payload(port, check):
    v = V5
    sub, _ = bt.connect(port, v, bt.ids_on(1, "bigsub-")[0])
    bt.subscribe(sub, v, "big", 1)
    pub, _ = bt.connect(port, v, bt.ids_on(0, "bigpub-")[0])
    payload = bytes(range(256)) * 800  # 200 KiB: a 64-bit frame length each way
    bt.publish_all(pub, v, "big", [payload], 1)
    got = bt.receive(sub, v, 1, check, "200 KiB payload")
    check(got == [payload], "a 200 KiB payload from shard 0 reaches a subscriber on shard 1 whole")
    sub.close()
    pub.close()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    if subprocess.run(["openssl", "version"], capture_output=True).returncode != 0:
        print("SKIP: openssl not installed")
        return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-threads-ws-")
    certs = os.path.join(work, "certs")
    subprocess.run(["bash", os.path.join(HERE, "..", "interop", "tls_certs.sh"), certs],
                   check=True, timeout=120, stdout=subprocess.DEVNULL)
    conf = os.path.join(work, "threads.conf")
    with open(conf, "w") as f:
        f.write("threads 2\nsys_interval 0\nconnect_timeout_ms 500\nbackpressure_timeout_ms 0\n"
                "allow_anonymous true\nmax_packet_size 300000\n"
                "listener 0 127.0.0.1\nprotocol websockets\n"
                "listener 0 127.0.0.2\nprotocol websockets\nwebsockets_path /mqtt\n"
                "certfile {c}/server.crt\nkeyfile {c}/server.key\n".format(c=certs))
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    # A broker per transport: the cases leave retained messages behind.
    for name in ("ws", "wss"):
        broker = harness.start_tern_broker(binary, work, ["-c", conf])
        try:
            first = broker.log().splitlines()[0]
            ws_port = int(re.search(r"127\.0\.0\.1:(\d+)", first).group(1))
            wss_port = int(re.search(r"127\.0\.0\.2:(\d+)", first).group(1))
            if name == "ws":
                bt.Client = ws_client_class("127.0.0.1", lambda p: ws_port)
            else:
                bt.Client = ws_client_class("127.0.0.2", lambda p: wss_port, ctx, "/mqtt")
            for fn in (bt.order_across_shards, bt.retained_across_shards, bt.sessions,
                       bt.hostile_first_packets, big_payload):
                print(f"--- {fn.__name__} over {name}", flush=True)
                try:
                    fn(0, check)
                except (AssertionError, OSError) as e:
                    check(False, f"{fn.__name__} over {name}: {e}")
            print(f"--- hostile frames over {name}", flush=True)
            try:
                hostile_frames(check, name)
                connect_then_close(check, name)
            except (AssertionError, OSError) as e:
                check(False, f"hostile frames over {name}: {e}")
            check(broker.running(), f"[{name}] the broker is still running")
        finally:
            status = broker.stop()
        check(status == 0, f"[{name}] the broker exits with 0 on SIGTERM (got {status})")
    if check.failures:
        print(f"broker log: {broker.log()[-3000:]}")
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
