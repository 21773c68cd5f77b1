#!/usr/bin/python3
"""tern-broker with `threads 2` and TLS listeners (docs/broker.md, "Threading"): shard 0 does
the TLS handshake and reads the decrypted CONNECT, then the connection (its descriptor and
its OpenSSL state) moves to the shard of its client id. The cases of broker_threads_test.py
that cross shards run here over TLS (client ids picked on each shard with the broker's own
rule): publishes from one shard to the other both ways at QoS 0, 1 and 2, retained messages,
takeover (0x8E) and a resumed session with its queued messages, hostile first packets
(a CONNECT sent one byte per TLS record among them); and a 200 KiB payload across shards.
use_identity_as_username: the certificate's name, taken on shard 0, is the user name the
acl_file sees on either shard, and a takeover by certificate works there. Hostile, with
threads 2: a plaintext client on the TLS port, garbage records after the handshake (before
and after the CONNECT moved the connection), a client that stops in the middle of its
handshake (closed at the handshake deadline), and a normal client after each.

    broker_threads_tls_test.py TERN_BROKER
"""

import os
import re
import socket
import ssl
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

CONNECT_TIMEOUT = 1.5  # connect_timeout_ms: also the bound of the TLS handshake


def tls_client_class(ctx):
    """mqtt_wire.Client over TLS with `ctx`, for the functions of broker_threads_test."""
    class TlsClient(mqtt_wire.Client):
        def __init__(self, port, host=harness.HOST, tls=None, credentials=None):
            super().__init__(port, host=host, tls=tls or ctx, credentials=credentials)
    return TlsClient


def make_certs(work):
    d = os.path.join(work, "certs")
    subprocess.run(["bash", os.path.join(HERE, "..", "interop", "tls_certs.sh"), d], check=True,
                   timeout=120, stdout=subprocess.DEVNULL)
    return d


def healthy(port, ctx, check, what):
    """A normal TLS client still connects and gets its own message back."""
    try:
        c = mqtt_wire.Client(port, tls=ctx)
        c.send(connect_packet(V311, bt.ids_on(1, "healthy-")[0]))
        ack = c.packet()
        bt.subscribe(c, V311, "healthy", 0)
        c.send(publish_packet(V311, "healthy", b"ok"))
        p = c.packet()
        ok = isinstance(ack, tuple) and ack[0] == 0x20 and isinstance(p, tuple) and \
            bt.parse_publish(p, V311)[1] == b"ok"
        c.close()
    except (OSError, AssertionError, ssl.SSLError) as e:
        ok, what = False, f"{what} ({e})"
    check(ok, f"after {what}: a normal TLS client connects and is served")


def closed_raw(sock, timeout):
    """True once the peer closed `sock` (EOF or reset) within `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            return False
        except ssl.SSLError:
            return True
        except OSError:
            return True
    return False


def big_payload(port, check):
    v = V5
    sub, _ = bt.connect(port, v, bt.ids_on(1, "bigsub-")[0])
    bt.subscribe(sub, v, "big", 1)
    pub, _ = bt.connect(port, v, bt.ids_on(0, "bigpub-")[0])
    payload = bytes(range(256)) * 800  # 200 KiB: many TLS records, more than one write chunk
    bt.publish_all(pub, v, "big", [payload], 1)
    got = bt.receive(sub, v, 1, check, "200 KiB payload")
    check(got == [payload], "a 200 KiB payload from shard 0 reaches a subscriber on shard 1 whole")
    sub.close()
    pub.close()


def hostile_tls(broker, ctx, check):
    port = broker.port
    # A plaintext MQTT client on the TLS port.
    s = socket.create_connection((harness.HOST, port), timeout=5)
    s.sendall(connect_packet(V311, "plain"))
    check(closed_raw(s, 5), "a plaintext CONNECT on the TLS port: closed")
    s.close()
    healthy(port, ctx, check, "a plaintext client")
    # Garbage records after the handshake: before any CONNECT (on shard 0), and after the
    # CONNECT moved the connection to each shard.
    garbage = b"\x17\x03\x03\x00\x40" + bytes(range(64)) + b"\xff" * 300
    c = mqtt_wire.Client(port, tls=ctx)
    os.write(c.sock.fileno(), garbage)  # under the TLS layer: not a valid record
    check(closed_raw(c.sock, 5), "garbage records after the handshake, before CONNECT: closed")
    c.close()
    for shard in (0, 1):
        c, _ = bt.connect(port, V5, bt.ids_on(shard, "garbage-")[0])
        os.write(c.sock.fileno(), garbage)
        check(closed_raw(c.sock, 5), f"garbage records on shard {shard} after CONNECT: closed")
        c.close()
    healthy(port, ctx, check, "garbage records")
    # Garbage MQTT inside TLS: a first packet that is no CONNECT.
    c = mqtt_wire.Client(port, tls=ctx)
    c.send(b"\x30\x7f" + b"\x00" * 200)
    check(c.closed(), "a PUBLISH as first packet over TLS: closed")
    healthy(port, ctx, check, "a PUBLISH first")
    # Stops in the middle of the handshake: half a ClientHello, then nothing.
    start = time.monotonic()
    stuck = []
    for _ in range(20):
        s = socket.create_connection((harness.HOST, port), timeout=5)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
        stuck.append(s)
    closed = [closed_raw(s, CONNECT_TIMEOUT + 10) for s in stuck]
    took = time.monotonic() - start
    check(all(closed), f"20 clients stopped mid-handshake: all closed ({sum(closed)}) "
                       f"after {took:.1f} s")
    check(took >= CONNECT_TIMEOUT * 0.9, f"not before the handshake deadline ({took:.1f} s)")
    for s in stuck:
        s.close()
    log = broker.log()
    check("refused: not a TLS handshake (first byte 0x10): a plaintext MQTT client" in log,
          "the log names the plaintext client")
    check(re.search(r"refused: no TLS handshake within \d+ ms", log) is not None,
          "the log names the handshake deadline")
    healthy(port, ctx, check, "clients stuck mid-handshake")


def identity_as_username(broker, certs, check):
    """Port 127.0.0.3: require_certificate and use_identity_as_username; the acl_file lets
    tern-client (the certificate's commonName) write byid/# only."""
    m = re.search(r"127\.0\.0\.3:(\d+)", broker.log().splitlines()[0])
    port = int(m.group(1))
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    ctx.load_cert_chain(os.path.join(certs, "client.crt"), os.path.join(certs, "client.key"))
    v = V5
    for shard in (0, 1):
        cid = bt.ids_on(shard, "cert-")[0]
        c = mqtt_wire.Client(port, host="127.0.0.3", tls=ctx)
        c.send(connect_packet(v, cid, username="mallory", password=b"wrong"))
        ack = c.packet()
        check(isinstance(ack, tuple) and ack[0] == 0x20 and ack[1][1] == 0,
              f"{cid} (shard {shard}) with a client certificate: CONNACK 0 ({ack!r})")
        c.send(publish_packet(v, "other/x", b"denied", qos=1, pid=1))
        p = c.packet()
        check(isinstance(p, tuple) and p[0] == 0x40 and len(p[1]) > 2 and p[1][2] == 0x87,
              f"shard {shard}: the certificate's name, not CONNECT's, meets the ACL: "
              f"other/x refused 0x87 ({p!r})")
        c.send(publish_packet(v, "byid/x", b"allowed", qos=1, pid=2))
        p = c.packet()
        check(isinstance(p, tuple) and p[0] == 0x40 and (len(p[1]) == 2 or p[1][2] < 0x80),
              f"shard {shard}: byid/x accepted ({p!r})")
        # Takeover by the same certificate and client id, on its shard.
        n = mqtt_wire.Client(port, host="127.0.0.3", tls=ctx)
        n.send(connect_packet(v, cid))
        ack = n.packet()
        check(isinstance(ack, tuple) and ack[0] == 0x20 and ack[1][1] == 0 and
              bt.disconnect_code(c.packet()) == 0x8E,
              f"shard {shard}: a second connection of {cid} with the certificate takes over")
        c.close()
        n.close()
    # Without a certificate: refused at the handshake.
    plain_ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    try:
        c = mqtt_wire.Client(port, host="127.0.0.3", tls=plain_ctx)
        c.send(connect_packet(v, "nocert"))
        refused = c.closed()
    except (ssl.SSLError, OSError):
        refused = True
    check(refused, "no client certificate on a require_certificate listener: refused")


def write_conf(conf, work, certs, connect_timeout_ms):
    with open(conf, "w") as f:
        f.write("threads 2\nsys_interval 0\nconnect_timeout_ms %d\nbackpressure_timeout_ms 0\n"
                % connect_timeout_ms +
                "allow_anonymous true\nacl_file {w}/acl\n"
                "listener 0 127.0.0.1\ncertfile {c}/server.crt\nkeyfile {c}/server.key\n"
                "listener 0 127.0.0.3\ncertfile {c}/server.crt\nkeyfile {c}/server.key\n"
                "cafile {c}/ca.crt\nrequire_certificate true\nuse_identity_as_username true\n"
                .format(w=work, c=certs))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    if subprocess.run(["openssl", "version"], capture_output=True).returncode != 0:
        print("SKIP: openssl not installed")
        return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-threads-tls-")
    certs = make_certs(work)
    with open(os.path.join(work, "acl"), "w") as f:
        f.write("topic readwrite #\nuser tern-client\ntopic readwrite byid/#\n")
    conf = os.path.join(work, "threads.conf")
    write_conf(conf, work, certs, 500)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    bt.Client = tls_client_class(ctx)  # broker_threads_test's cases, over TLS
    broker = harness.start_tern_broker(binary, work, ["-c", conf])
    try:
        for fn in (bt.order_across_shards, bt.retained_across_shards, bt.sessions,
                   bt.hostile_first_packets, big_payload):
            print(f"--- {fn.__name__} over TLS", flush=True)
            try:
                fn(broker.port, check)
            except (AssertionError, OSError) as e:
                check(False, f"{fn.__name__}: {e}")
        print("--- identity_as_username", flush=True)
        try:
            identity_as_username(broker, certs, check)
        except (AssertionError, OSError) as e:
            check(False, f"identity_as_username: {e}")
        check(broker.running(), "the broker is still running")
    finally:
        status = broker.stop()
    check(status == 0, f"the broker exits with 0 on SIGTERM (got {status})")
    # The hostile cases with a connect_timeout_ms long enough to tell the deadline apart.
    write_conf(conf, work, certs, int(CONNECT_TIMEOUT * 1000))
    broker = harness.start_tern_broker(binary, work, ["-c", conf])
    try:
        print("--- hostile_tls", flush=True)
        try:
            hostile_tls(broker, ctx, check)
        except (AssertionError, OSError) as e:
            check(False, f"hostile_tls: {e}")
        check(broker.running(), "the broker is still running after the hostile clients")
    finally:
        status = broker.stop()
    check(status == 0, f"the broker exits with 0 on SIGTERM (got {status})")
    if check.failures:
        print(f"broker log: {broker.log()[-3000:]}")
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
