"""MQTT packets as exact bytes, and a raw client that reads whole packets with bounded waits:
the pieces of the packet-level tests (tests/packets) and the hostile-client suite.

Builders return bytes; `v` is the protocol level (V311 = 4, V5 = 5). Properties are passed as
the encoded properties without their length (concatenated prop_* results); the builder adds
the length, so a test states exactly what goes on the wire.
"""

import socket
import struct
import time

HOST = "127.0.0.1"
WAIT = 5.0  # the longest any single answer may take
V311, V5 = 4, 5


# ---- encoding ---------------------------------------------------------------------------

def vbi(n):
    """Variable Byte Integer."""
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    """UTF-8 string or binary data with its two-byte length."""
    b = text if isinstance(text, bytes) else text.encode()
    return struct.pack(">H", len(b)) + b


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def packet(first, body):
    return bytes([first]) + vbi(len(body)) + body


def prop_u8(ident, n):
    return bytes([ident, n])


def prop_u16(ident, n):
    return bytes([ident]) + u16(n)


def prop_u32(ident, n):
    return bytes([ident]) + u32(n)


def prop_vbi(ident, n):
    return bytes([ident]) + vbi(n)


def prop_str(ident, text):
    return bytes([ident]) + s(text)


def prop_pair(ident, key, value):
    return bytes([ident]) + s(key) + s(value)


# Property identifiers (MQTT 5.0 section 2.2.2.2).
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE = 0x01, 0x02, 0x03
RESPONSE_TOPIC, CORRELATION_DATA, SUBSCRIPTION_ID = 0x08, 0x09, 0x0B
SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x11, 0x12, 0x13
REASON_STRING, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS = 0x1F, 0x21, 0x22, 0x23
MAXIMUM_QOS, RETAIN_AVAILABLE, USER_PROPERTY, MAXIMUM_PACKET_SIZE = 0x24, 0x25, 0x26, 0x27
WILL_DELAY = 0x18


def connect_packet(v, cid, will=None, clean=True, keep_alive=30, props=b"",
                   will_qos=0, will_retain=False, will_payload=b"gone", will_props=b"",
                   username=None, password=None, protocol_name="MQTT"):
    """CONNECT. With v == 3 the protocol name is MQIsdp (MQTT 3.1)."""
    flags = 0x02 if clean else 0x00
    payload = s(cid)
    if will is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        if v == V5:
            payload += vbi(len(will_props)) + will_props
        payload += s(will) + s(will_payload)
    if username is not None:
        flags |= 0x80
        payload += s(username)
    if password is not None:
        flags |= 0x40
        payload += s(password)
    name = "MQIsdp" if v == 3 else protocol_name
    body = s(name) + bytes([v, flags]) + u16(keep_alive)
    if v == V5:
        body += vbi(len(props)) + props
    return packet(0x10, body + payload)


def publish_packet(v, topic, payload=b"x", qos=0, pid=1, retain=False, props=b"", dup=False):
    body = s(topic) + (u16(pid) if qos else b"")
    if v == V5:
        body += vbi(len(props)) + props
    payload = payload if isinstance(payload, bytes) else payload.encode()
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1) | int(retain), body + payload)


def subscribe_packet(v, pid, filters, props=b""):
    """filters: (filter, options byte) pairs; the options byte is the QoS below 5.0."""
    body = u16(pid) + (vbi(len(props)) + props if v == V5 else b"")
    for f, opts in filters:
        body += s(f) + bytes([opts])
    return packet(0x82, body)


def unsubscribe_packet(v, pid, filters):
    body = u16(pid) + (b"\x00" if v == V5 else b"")
    for f in filters:
        body += s(f)
    return packet(0xA2, body)


def ack_packet(kind, pid, v=V311, reason=None):
    """PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70; a 5.0 reason code if given."""
    body = u16(pid)
    if v == V5 and reason is not None:
        body += bytes([reason])
    return packet(kind, body)


def disconnect_packet(v=V311, reason=None, props=b""):
    if v == V5 and (reason is not None or props):
        return packet(0xE0, bytes([reason or 0]) + (vbi(len(props)) + props if props else b""))
    return b"\xe0\x00"


PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"


# ---- reading ----------------------------------------------------------------------------

def split_packet(buf):
    """(whole packet bytes, rest) when buf starts with a whole packet, else None."""
    n, mult, i = 0, 1, 1
    while i < len(buf) and i <= 4:
        b = buf[i]
        n += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            if len(buf) >= i + n:
                return buf[:i + n], buf[i + n:]
            return None
    return None


class Client:
    """One raw MQTT connection with bounded reads. With `tls` (an ssl.SSLContext) the TLS
    handshake is done here, within WAIT; `credentials` (user name, password) go into the
    CONNECT of connect()."""

    def __init__(self, port, host=HOST, tls=None, credentials=None):
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except BaseException:
                self.sock.close()
                raise
        self.credentials = credentials
        self.buf = b""

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.sock.settimeout(left)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            return b""

    def raw(self, timeout=WAIT):
        """The next whole packet as bytes; None on timeout; 'closed' at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            whole = split_packet(self.buf)
            if whole:
                p, self.buf = whole
                return p
            chunk = self._fill(deadline)
            if chunk is None:
                return None
            if chunk == b"":
                return "closed"
            self.buf += chunk

    def packet(self, timeout=WAIT):
        """(first byte, body) of the next packet; None on timeout; 'closed' at EOF."""
        p = self.raw(timeout)
        if not isinstance(p, bytes):
            return p
        return p[0], p[header_length(p):]

    def closed(self, timeout=WAIT):
        """True when the broker closes the connection (any packets before it are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.raw(deadline - time.monotonic())
            if p == "closed":
                return True
            if p is None:
                return False
        return False

    def nothing(self, timeout=0.5):
        """True when no packet arrives within `timeout` (and the connection stays open)."""
        return self.raw(timeout) is None

    def connect(self, v, cid, will=None, clean=True, keep_alive=30):
        user, password = self.credentials or (None, None)
        self.send(connect_packet(v, cid, will, clean, keep_alive, username=user,
                                 password=password))
        p = self.packet()
        return isinstance(p, tuple) and p[0] == 0x20 and p[1][1] == 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def header_length(p):
    """Bytes of the fixed header of the whole packet p."""
    i = 1
    while p[i] & 0x80:
        i += 1
    return i + 1


def connack_code(p):
    return p[1][1] if isinstance(p, tuple) and p[0] == 0x20 else None


def disconnect_code(p):
    if isinstance(p, tuple) and p[0] == 0xE0:
        return p[1][0] if p[1] else 0
    return None
