#!/usr/bin/python3
"""tern-bridge over TLS (and WebSocket), on loopback and free ports, every wait bounded.

    bridge_tls_test.py BIN_DIR tern         remote tern-broker with a TLS listener
    bridge_tls_test.py BIN_DIR mosquitto    remote Mosquitto with TLS listeners (one needing
                                            a client certificate)

The local broker is a plain tern-broker; the remote broker also has a plain listener on which
the test's paho clients watch. Checked: `--remote mqtts://` with --cafile, both directions at
QoS 1; a -c file with bridge_cafile (and, with Mosquitto, bridge_certfile/bridge_keyfile to a
listener that requires a client certificate); a wrong CA and a wrong host name fail with the
certificate error in the connect_failed event while nothing crosses; --insecure accepts the
wrong host name; a missing bridge_cafile stops tern-bridge at start (exit 2) and bridge_psk is
refused with FILE:LINE.
Exit 0 when every check passed, 1 when one failed, 77 (skipped) without paho, openssl or
mosquitto.
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, MOSQUITTO, WORK, Bridge, Broker, Client, check, done,  # noqa: E402
                            free_port, spawn, stop, wait_for, wait_port)

BIN = sys.argv[1]
KIND = sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = os.path.join(WORK, "certs")

if not shutil.which("openssl"):
    print("SKIP: openssl not installed")
    sys.exit(77)
if KIND == "mosquitto" and not os.path.exists(MOSQUITTO):
    print("SKIP: mosquitto not installed")
    sys.exit(77)
subprocess.run(["bash", os.path.join(HERE, "..", "interop", "tls_certs.sh"), CERTS], check=True)
# Mosquitto started as root reads its files as the user mosquitto.
for d, _, files in os.walk(WORK):
    os.chmod(d, 0o755)
    for f in files:
        os.chmod(os.path.join(d, f), 0o644)


def cert(name):
    return os.path.join(CERTS, name)


class TlsRemote:
    """The remote broker: a plain listener (for the test's clients) and TLS listeners."""

    def __init__(self):
        conf = os.path.join(WORK, f"remote-{KIND}.conf")
        if KIND == "tern":
            with open(conf, "w") as f:
                f.write("allow_anonymous true\n"
                        f"listener 0 {HOST}\n"
                        "listener 0 127.0.0.2\n"
                        f"certfile {cert('server.crt')}\nkeyfile {cert('server.key')}\n"
                        "listener 0 127.0.0.3\n"
                        f"certfile {cert('wronghost.crt')}\nkeyfile {cert('server.key')}\n"
                        "listener 0 127.0.0.5\nprotocol websockets\n"
                        "listener 0 127.0.0.4\nprotocol websockets\n"
                        f"certfile {cert('server.crt')}\nkeyfile {cert('server.key')}\n")
            log = open(os.path.join(WORK, "remote-tern.log"), "w+")
            self.proc = spawn([os.path.join(BIN, "tern-broker"), "-c", conf], stderr=log)
            ports = []
            end = time.time() + 10
            while time.time() < end and not ports:
                log.seek(0)
                for line in log:
                    if "listening on" in line:
                        ports = [int(w.split(":")[1].rstrip(",")) for w in line.split()
                                 if w.startswith("127.0.0.")]
                time.sleep(0.05)
            if len(ports) < 5:
                sys.exit("FAIL: tern-broker did not report its ports")
            self.port, self.tls_port, self.wrong_port, self.ws_port, self.wss_port = ports[:5]
            self.tls_host = "127.0.0.2"
            self.wrong_host = "127.0.0.3"
            self.mutual_port = None
        else:
            # free_port() gives ports another test running in parallel may take before
            # Mosquitto binds them: a start that fails is tried again on other ports.
            for attempt in range(3):
                if self.start_mosquitto(conf, attempt == 2):
                    break

    def start_mosquitto(self, conf, last):
        self.port, self.tls_port, self.mutual_port = free_port(), free_port(), free_port()
        self.wrong_port = free_port()
        self.tls_host = self.wrong_host = HOST
        with open(conf, "w") as f:
            f.write("per_listener_settings false\nallow_anonymous true\n"
                    f"listener {self.port} {HOST}\n"
                    f"listener {self.tls_port} {HOST}\n"
                    f"certfile {cert('server.crt')}\nkeyfile {cert('server.key')}\n"
                    f"listener {self.mutual_port} {HOST}\n"
                    f"certfile {cert('server.crt')}\nkeyfile {cert('server.key')}\n"
                    f"cafile {cert('ca.crt')}\nrequire_certificate true\n"
                    f"listener {self.wrong_port} {HOST}\n"
                    f"certfile {cert('wronghost.crt')}\nkeyfile {cert('server.key')}\n")
        log = open(os.path.join(WORK, "remote-mosquitto.log"), "a")
        self.proc = spawn([MOSQUITTO, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        for p in (self.port, self.tls_port, self.mutual_port, self.wrong_port):
            if not wait_port(p):
                stop(self.proc)
                log.flush()
                if last:
                    with open(log.name) as f:
                        print(f.read()[-2000:])
                    sys.exit("FAIL: mosquitto did not start")
                return False
        return True


def crosses(local, remote, b, tag, topic_out="tls/out", topic_in="tls/in"):
    """QoS 1 both ways through bridge `b` (rule 'tls/# both 1')."""
    ok = b.wait_connected()
    check(f"{tag}: both sides connect", ok, b.stderr() + str(b.events()))
    if not ok:
        return
    b.wait_subscribed()
    lc, rc = Client(local.port, "5"), Client(remote.port, "5")
    lc.subscribe("tls/#", 1)
    rc.subscribe("tls/#", 1)
    for i in range(5):
        lc.publish(topic_out, f"out-{i}".encode(), qos=1)
        rc.publish(topic_in, f"in-{i}".encode(), qos=1)
    wait_for(lambda: len([m for m in rc.got if m[0] == topic_out]) >= 5 and
             len([m for m in lc.got if m[0] == topic_in]) >= 5, 10)
    got_out = [p for t, p, *_ in rc.got if t == topic_out]
    got_in = [p for t, p, *_ in lc.got if t == topic_in]
    check(f"{tag}: 5 QoS 1 messages each way, in order",
          got_out == [f"out-{i}".encode() for i in range(5)] and
          got_in == [f"in-{i}".encode() for i in range(5)], f"out {got_out} in {got_in}")
    lc.close()
    rc.close()


def refused(b, tag, needle):
    """No connection, and a connect_failed event that says why."""
    ok = wait_for(lambda: any(needle in e.get("reason", "") for e in b.events("connect_failed")
                              if e.get("side") == "remote"), 15)
    reasons = sorted({e.get("reason", "") for e in b.events("connect_failed")})
    print(f"    reasons: {reasons}")
    check(f"{tag}: connect_failed says '{needle}'", ok, reasons)
    check(f"{tag}: never connected", not b.connected("remote"), b.events("connected"))


def base_args(local, url, name):
    return ["--local", f"mqtt://{HOST}:{local.port}", "--remote", url, "-V", "5",
            "--restart-timeout", "0.2:0.5", "--name", name, "-t", "tls/# both 1"]


def main():
    local = Broker("tern", BIN)
    remote = TlsRemote()
    url = f"mqtts://{remote.tls_host}:{remote.tls_port}"

    b = Bridge(BIN, base_args(local, url, "tls1") + ["--cafile", cert("ca.crt")])
    crosses(local, remote, b, f"[{KIND}] --remote mqtts:// --cafile")
    check(f"[{KIND}] SIGTERM over TLS: exit 0", b.stop() == 0)

    # The same from a file with bridge_cafile (address lines have no scheme: the CA turns TLS on).
    conf = os.path.join(WORK, "tls.conf")
    with open(conf, "w") as f:
        f.write(f"connection tlsfile\naddress {remote.tls_host}:{remote.tls_port}\n"
                "topic tls/# both 1\nbridge_protocol_version mqttv50\nrestart_timeout 1 1\n"
                f"bridge_cafile {cert('ca.crt')}\nbridge_tls_version tlsv1.2\n"
                "bridge_insecure false\n")
    b = Bridge(BIN, ["-c", conf, "--local", f"mqtt://{HOST}:{local.port}"])
    crosses(local, remote, b, f"[{KIND}] -c with bridge_cafile")
    b.stop()

    # A CA that did not sign the broker's certificate.
    b = Bridge(BIN, base_args(local, url, "tls2") + ["--cafile", cert("other-ca.crt")])
    refused(b, f"[{KIND}] wrong CA", "certificate verify failed")
    b.stop()

    # The right CA, but a certificate for wrong.example only: refused, unless --insecure.
    wrong = f"mqtts://{remote.wrong_host}:{remote.wrong_port}"
    b = Bridge(BIN, base_args(local, wrong, "tls4") + ["--cafile", cert("ca.crt")])
    refused(b, f"[{KIND}] certificate for another host", "mismatch")
    b.stop()
    b = Bridge(BIN, base_args(local, wrong, "tls5") + ["--cafile", cert("ca.crt"), "--insecure"])
    crosses(local, remote, b, f"[{KIND}] --insecure accepts a certificate for another host")
    b.stop()

    # MQTT over WebSocket, plain and secure (tern-broker's websockets listeners).
    if KIND == "tern":
        b = Bridge(BIN, base_args(local, f"ws://127.0.0.5:{remote.ws_port}/mqtt", "ws1"))
        crosses(local, remote, b, f"[{KIND}] --remote ws://")
        b.stop()
        b = Bridge(BIN, base_args(local, f"wss://127.0.0.4:{remote.wss_port}/mqtt", "ws2") +
                   ["--cafile", cert("ca.crt")])
        crosses(local, remote, b, f"[{KIND}] --remote wss:// --cafile")
        b.stop()
        b = Bridge(BIN, base_args(local, f"wss://127.0.0.4:{remote.wss_port}/mqtt", "ws3") +
                   ["--cafile", cert("other-ca.crt")])
        refused(b, f"[{KIND}] wss:// with a wrong CA", "certificate verify failed")
        b.stop()

    # Mutual TLS (Mosquitto requires our certificate on its third listener).
    if remote.mutual_port:
        conf = os.path.join(WORK, "mutual.conf")
        with open(conf, "w") as f:
            f.write(f"connection mutual\naddress {HOST}:{remote.mutual_port}\n"
                    "topic tls/# both 1\nbridge_protocol_version mqttv50\nrestart_timeout 1 1\n"
                    f"bridge_cafile {cert('ca.crt')}\nbridge_certfile {cert('client.crt')}\n"
                    f"bridge_keyfile {cert('client.key')}\n")
        b = Bridge(BIN, ["-c", conf, "--local", f"mqtt://{HOST}:{local.port}"])
        crosses(local, remote, b, f"[{KIND}] -c with bridge_certfile/bridge_keyfile (mutual TLS)")
        b.stop()
        # Without a certificate that listener refuses us.
        b = Bridge(BIN, base_args(local, f"mqtts://{HOST}:{remote.mutual_port}", "tls3") +
                   ["--cafile", cert("ca.crt")])
        ok = wait_for(lambda: any("certificate required" in e.get("reason", "")
                                  for e in b.events("connect_failed")), 15)
        print(f"    reasons: {sorted({e.get('reason', '') for e in b.events('connect_failed')})}")
        check(f"[{KIND}] mutual TLS without a certificate: 'certificate required', never "
              "connected",
              ok and not b.connected("remote"), b.events())
        b.stop()

    # Start-up errors: a missing CA file, PSK options.
    bad = os.path.join(WORK, "bad.conf")
    with open(bad, "w") as f:
        f.write(f"connection bad\naddress {HOST}:1\ntopic x out\n"
                f"bridge_cafile {WORK}/missing-ca.crt\n")
    r = subprocess.run([os.path.join(BIN, "tern-bridge"), "-c", bad], capture_output=True,
                       text=True, timeout=20)
    check(f"[{KIND}] a missing bridge_cafile: exit 2 naming the file",
          r.returncode == 2 and "missing-ca.crt: cannot read" in r.stderr, (r.returncode, r.stderr))
    with open(bad, "w") as f:
        f.write(f"connection bad\naddress {HOST}:1\ntopic x out\nbridge_identity me\n")
    r = subprocess.run([os.path.join(BIN, "tern-bridge"), "-c", bad], capture_output=True,
                       text=True, timeout=20)
    check(f"[{KIND}] bridge_identity: exit 2 with FILE:LINE",
          r.returncode == 2 and f"{bad}:4: 'bridge_identity': TLS-PSK is not supported" in r.stderr,
          (r.returncode, r.stderr))
    done()


main()
