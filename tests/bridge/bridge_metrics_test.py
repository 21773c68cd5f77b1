#!/usr/bin/python3
"""tern-bridge's /metrics (--metrics-listener): Prometheus text over HTTP on loopback.

    bridge_metrics_test.py BIN_DIR

Two tern-brokers on free ports, tern-bridge between them with --metrics-listener
127.0.0.1:0 (the address comes in the `metrics_listening` event), an on-disk queue of 64K
with drop-new. Checked by scraping: each family's HELP and TYPE, both sides connected, the
connects, messages forwarded each way; with the remote broker stopped: the remote side 0,
QoS 1 messages queued (count and bytes on disk), QoS 0 dropped as offline, the overflow of
the queue dropped as queue_full; after the remote broker is back: connected again, a second
remote connect, the queue empty and everything kept forwarded. Also /healthz, 404 for other
paths, and a port already in use stops tern-bridge with status 2.
Exit 0 when every check passed, 1 when one failed, 77 (skipped) without paho.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, WORK, Bridge, Broker, Client, check, done,  # noqa: E402
                            free_port, wait_for)

BIN = sys.argv[1]
NAME = "mb"


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, "", ""
    except OSError as e:
        return None, "", str(e)


class Scraper:
    def __init__(self, address):
        self.base = f"http://{address}"

    def text(self):
        return get(self.base + "/metrics")[2]

    def value(self, name, **labels):
        want = ",".join([f'bridge="{NAME}"'] + [f'{k}="{v}"' for k, v in labels.items()])
        for line in self.text().splitlines():
            if line.split(" ")[0] == f"{name}{{{want}}}":
                return int(line.split()[-1])
        return None


def main():
    local = Broker("tern", BIN)
    remote = Broker("tern", BIN, port=free_port())
    qdir = os.path.join(WORK, "queue")
    b = Bridge(BIN, ["--local", f"mqtt://{HOST}:{local.port}",
                     "--remote", f"mqtt://{HOST}:{remote.port}", "--name", NAME,
                     "-V", "5", "-t", "m/# out 1", "-t", "n/# in 1",
                     "--restart-timeout", "1:1", "--queue-dir", qdir,
                     "--queue-max-bytes", "64K", "--queue-full-policy", "drop-new",
                     "--metrics-listener", f"{HOST}:0"])
    check("the metrics_listening event",
          wait_for(lambda: b.events("metrics_listening"), 10), b.stderr() + str(b.events()))
    ev = b.events("metrics_listening")
    url = ev[0].get("url", "") if ev else ""
    check("its url is http://127.0.0.1:PORT/metrics",
          url.startswith(f"http://{HOST}:") and url.endswith("/metrics"), url)
    address = url[len("http://"):-len("/metrics")]
    m = Scraper(address)
    check("both sides connect", b.wait_connected(), b.stderr())
    b.wait_subscribed()

    status, ctype, body = get(f"http://{address}/metrics")
    check("GET /metrics: 200 text/plain version 0.0.4",
          status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype,
          f"{status} {ctype}")
    for family, kind in (("tern_bridge_connected", "gauge"),
                         ("tern_bridge_local_connects_total", "counter"),
                         ("tern_bridge_remote_connects_total", "counter"),
                         ("tern_bridge_messages_forwarded_total", "counter"),
                         ("tern_bridge_messages_queued", "gauge"),
                         ("tern_bridge_queued_bytes", "gauge"),
                         ("tern_bridge_messages_dropped_total", "counter")):
        check(f"{family}: HELP and TYPE {kind}",
              f"# HELP {family} " in body and f"# TYPE {family} {kind}\n" in body, body[:3000])
    status, _, body = get(f"http://{address}/healthz")
    check("GET /healthz: ok", status == 200 and body.strip() == "ok", f"{status} {body!r}")
    check("GET /other: 404", get(f"http://{address}/other")[0] == 404)
    check("connected local 1, remote 1",
          wait_for(lambda: m.value("tern_bridge_connected", side="local") == 1 and
                   m.value("tern_bridge_connected", side="remote") == 1, 10), m.text())
    check("one connect each side", m.value("tern_bridge_local_connects_total") == 1 and
          m.value("tern_bridge_remote_connects_total") == 1, m.text())

    at_local, at_remote = Client(local.port, "5"), Client(remote.port, "5")
    at_local.subscribe("n/#", 1)
    at_remote.subscribe("m/#", 1)
    pub_local, pub_remote = Client(local.port, "5"), Client(remote.port, "5")
    for i in range(10):
        pub_local.publish("m/a", f"o{i}", qos=1)
        pub_remote.publish("n/b", f"i{i}", qos=1)
    wait_for(lambda: len(at_remote.got) >= 10 and len(at_local.got) >= 10, 10)
    check("forwarded out 10, in 10",
          wait_for(lambda: m.value("tern_bridge_messages_forwarded_total", direction="out") == 10
                   and m.value("tern_bridge_messages_forwarded_total", direction="in") == 10, 5),
          m.text())
    pub_remote.close()
    at_remote.close()

    # The remote broker goes down.
    remote.stop()
    check("remote down: connected remote 0, local 1",
          wait_for(lambda: m.value("tern_bridge_connected", side="remote") == 0, 10) and
          m.value("tern_bridge_connected", side="local") == 1, m.text())
    for i in range(5):
        pub_local.publish("m/a", f"q{i}", qos=1)
    check("5 QoS 1 messages queued, on disk (bytes > 0)",
          wait_for(lambda: m.value("tern_bridge_messages_queued", direction="out") == 5 and
                   (m.value("tern_bridge_queued_bytes", direction="out") or 0) > 0, 5), m.text())
    for i in range(3):
        pub_local.publish("m/a", f"z{i}", qos=0)
    check("3 QoS 0 messages dropped as offline",
          wait_for(lambda: m.value("tern_bridge_messages_dropped_total", reason="offline") == 3,
                   5), m.text())
    big = "x" * 1000
    for i in range(100):  # ~100K for a 64K queue
        pub_local.publish("m/big", f"{i:03d}{big}", qos=1)
    check("the overflow dropped as queue_full, the queue within its bound",
          wait_for(lambda: (m.value("tern_bridge_messages_dropped_total", reason="queue_full")
                            or 0) > 0, 5) and
          m.value("tern_bridge_queued_bytes", direction="out") <= 65536, m.text())
    dropped = m.value("tern_bridge_messages_dropped_total", reason="queue_full")
    queued = m.value("tern_bridge_messages_queued", direction="out")
    check("queued + dropped = all QoS 1 messages sent while down", queued + dropped == 105,
          f"queued {queued}, dropped {dropped}")

    remote.start()
    check("remote back: connected 1, two remote connects, one local",
          wait_for(lambda: m.value("tern_bridge_connected", side="remote") == 1, 15) and
          m.value("tern_bridge_remote_connects_total") == 2 and
          m.value("tern_bridge_local_connects_total") == 1, m.text())
    check("the queue drains to 0 messages, 0 bytes",
          wait_for(lambda: m.value("tern_bridge_messages_queued", direction="out") == 0 and
                   m.value("tern_bridge_queued_bytes", direction="out") == 0, 10), m.text())
    check("forwarded out = 10 + what was queued",
          m.value("tern_bridge_messages_forwarded_total", direction="out") == 10 + queued,
          m.text())
    for c in (at_local, pub_local):
        c.close()
    check("tern-bridge stops cleanly", b.stop() == 0)

    # A port in use: status 2 and why.
    r = subprocess.run([os.path.join(BIN, "tern-bridge"), "--local", f"mqtt://{HOST}:{local.port}",
                        "--remote", f"mqtt://{HOST}:{local.port}", "-t", "x/# out 0",
                        "--metrics-listener", f"{HOST}:{local.port}"],
                       capture_output=True, timeout=20)
    err = r.stderr.decode()
    check("--metrics-listener on a port in use: status 2 and the reason",
          r.returncode == 2 and "metrics" in err and f"{local.port}" in err, f"{r.returncode} {err}")
    r = subprocess.run([os.path.join(BIN, "tern-bridge"), "--remote", "mqtt://127.0.0.1:1",
                        "-t", "x/# out 0", "--metrics-listener", "127.0.0.1:99999"],
                       capture_output=True, timeout=20)
    check("--metrics-listener with a bad port: usage error", r.returncode == 2,
          f"{r.returncode} {r.stderr.decode()}")
    local.stop()
    time.sleep(0.1)


main()
done()
