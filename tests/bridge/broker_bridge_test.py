#!/usr/bin/env python3
"""Bridges inside tern-broker (`connection` blocks) against a real Mosquitto.

    broker_bridge_test.py BIN_DIR [311|5]

Mosquitto (with persistence) on a free loopback port; tern-broker with a `connection` block
to it, its local side in-process. Checks, with mosquitto_pub and mosquitto_sub as the
clients: QoS 1 `out` messages published at tern-broker reach a persistent mosquitto_sub
session at Mosquitto, all of them, in order; `in` messages the other way; /metrics shows
the bridge's state while Mosquitto goes down and comes back, and messages published at
tern-broker while it is down arrive after it is back; the bridge's state topic under $SYS
(notifications) on both brokers; SIGHUP adds a topic rule; start-up
errors in a connection block stop tern-broker with FILE:LINE; --print-config lists the
bridge."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, MOSQUITTO, WORK, ConfiguredBroker, check, done,  # noqa: E402
                            free_port, spawn, stop, wait_for, wait_port)

BIN = sys.argv[1]
VERSION = sys.argv[2] if len(sys.argv) > 2 else "311"
BROKER = os.path.join(BIN, "tern-broker")
MOSQ_PUB = shutil.which("mosquitto_pub")
MOSQ_SUB = shutil.which("mosquitto_sub")
if not os.path.exists(MOSQUITTO) or not MOSQ_PUB or not MOSQ_SUB:
    print("SKIP: mosquitto, mosquitto_pub or mosquitto_sub not installed")
    sys.exit(77)
N = 200


class Mosquitto:
    def __init__(self):
        self.port = free_port()
        self.dir = os.path.join(WORK, "mosq-data")
        os.makedirs(self.dir, exist_ok=True)
        # Mosquitto started as root writes its store as the user 'mosquitto'.
        os.chmod(WORK, 0o755)
        os.chmod(self.dir, 0o777)
        self.conf = os.path.join(WORK, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} {HOST}\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {self.dir}/\n"
                    "max_queued_messages 0\nlog_type all\n")
        self.log_path = os.path.join(WORK, "mosquitto.log")
        self.proc = None
        self.start()

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def start(self):
        log = open(self.log_path, "a")
        self.proc = spawn([MOSQUITTO, "-c", self.conf], stdout=log, stderr=subprocess.STDOUT)
        if not wait_port(self.port):
            sys.exit("FAIL: mosquitto did not start")

    def stop(self):
        stop(self.proc)


def bridge_conf(mosq_port, extra=""):
    version = "mqttv50" if VERSION == "5" else "mqttv311"
    return (f"listener 0 {HOST}\nallow_anonymous true\nmetrics_listener 0\n"
            "connection mosq\n"
            f"address {HOST}:{mosq_port}\n"
            "topic out/# out 1\n"
            "topic in/# in 1 site/ central/\n"
            f"bridge_protocol_version {version}\n"
            "remote_clientid tern-site\n"
            "restart_timeout 1 2\n" + extra)


def sub_args(port, client_id, topic):
    v = ["-V", "mqttv5"] if VERSION == "5" else []
    return [MOSQ_SUB, "-h", HOST, "-p", str(port), "-i", client_id, "-c", "-q", "1",
            "-t", topic, "-v"] + v


def subscribe_only(port, client_id, topic):
    """A persistent session subscribed to `topic`, disconnected: the broker keeps what comes."""
    r = subprocess.run(sub_args(port, client_id, topic) + ["-E"], capture_output=True,
                       timeout=20)
    return r.returncode == 0


def collect(port, client_id, topic, count, seconds=30):
    r = subprocess.run(sub_args(port, client_id, topic) + ["-C", str(count), "-W", str(seconds)],
                       capture_output=True, timeout=seconds + 10)
    return r.stdout.decode().splitlines()


STATE = "$SYS/broker/connection/tern-site/state"


def read_state(port):
    """The retained payload of the bridge's state topic, or None."""
    v = ["-V", "mqttv5"] if VERSION == "5" else []
    r = subprocess.run([MOSQ_SUB, "-h", HOST, "-p", str(port), "-t", STATE, "-C", "1", "-W", "2"]
                       + v, capture_output=True, timeout=10)
    out = r.stdout.decode().strip()
    return out or None


def publish_lines(port, topic, lines):
    v = ["-V", "mqttv5"] if VERSION == "5" else []
    r = subprocess.run([MOSQ_PUB, "-h", HOST, "-p", str(port), "-t", topic, "-q", "1", "-l"] + v,
                       input=("\n".join(lines) + "\n").encode(), capture_output=True, timeout=60)
    return r.returncode == 0


def expect_in_order(name, got, topic, payloads):
    want = [f"{topic} {p}" for p in payloads]
    check(name, got == want,
          f"got {len(got)} of {len(want)}; first differences: "
          f"{[(a, b) for a, b in zip(got, want) if a != b][:3]} tail {got[-3:]}")


def startup_errors(mosq_port):
    # A bad line in a connection block: exit status 2, FILE:LINE on stderr.
    bad = os.path.join(WORK, "bad.conf")
    with open(bad, "w") as f:
        f.write(bridge_conf(mosq_port, "topic x/# sideways 1\n"))
    r = subprocess.run([BROKER, "-c", bad], capture_output=True, timeout=20)
    line = bridge_conf(mosq_port).count("\n") + 1
    check("config error: exit status 2", r.returncode == 2, f"status {r.returncode}")
    check("config error: FILE:LINE and the reason",
          f"{bad}:{line}: topic: invalid direction 'sideways'" in r.stderr.decode(),
          r.stderr.decode())
    # local_address has no place in the broker, a missing CA file stops the start.
    with open(bad, "w") as f:
        f.write(bridge_conf(mosq_port, "local_address 127.0.0.1:1883\n"))
    r = subprocess.run([BROKER, "-c", bad], capture_output=True, timeout=20)
    check("config error: local_address refused", r.returncode == 2 and
          f"{bad}:{line}: local_address" in r.stderr.decode(), r.stderr.decode())
    with open(bad, "w") as f:
        f.write(bridge_conf(mosq_port, f"bridge_cafile {WORK}/no-such-ca.crt\n"))
    r = subprocess.run([BROKER, "-c", bad], capture_output=True, timeout=20)
    check("config error: unreadable bridge_cafile", r.returncode == 2 and
          "bridge 'mosq', remote: cafile" in r.stderr.decode(), r.stderr.decode())
    # --print-config shows the bridge.
    good = os.path.join(WORK, "good.conf")
    with open(good, "w") as f:
        f.write(bridge_conf(mosq_port))
    r = subprocess.run([BROKER, "-c", good, "--print-config"], capture_output=True, timeout=20)
    try:
        cfg = json.loads(r.stdout)
        b = cfg["bridges"][0]
        ok = (b["connection"] == "mosq" and b["addresses"] == [f"{HOST}:{mosq_port}"] and
              b["local"] == "in-process" and b["topics"][1]["remote_prefix"] == "central/")
    except (ValueError, KeyError, IndexError) as e:
        ok, cfg = False, str(e)
    check("--print-config lists the bridge", ok, r.stdout.decode()[:2000])


def main():
    mosq = Mosquitto()
    startup_errors(mosq.port)

    conf = os.path.join(WORK, "tern.conf")
    with open(conf, "w") as f:
        f.write(bridge_conf(mosq.port))
    # Subscribers' persistent sessions exist before anything is published.
    check("mosquitto_sub session at Mosquitto", subscribe_only(mosq.port, "far-sub", "out/#"))
    tern = ConfiguredBroker(BIN, conf)
    check("tern_bridge_connected remote 1",
          wait_for(lambda: tern.metric("tern_bridge_connected", bridge="mosq", side="remote") == 1,
                   20), tern.text()[-2000:])
    check("tern_bridge_connected local 1",
          tern.metric("tern_bridge_connected", bridge="mosq", side="local") == 1)
    check("the connect is logged", "bridge connected bridge=mosq side=remote" in tern.text(),
          tern.text()[-2000:])
    # notifications (the default): the state topic under $SYS on both brokers.
    check("state 1 at tern-broker ($SYS, retained)",
          wait_for(lambda: read_state(tern.port) == "1", 10), f"{read_state(tern.port)}")
    check("state 1 at Mosquitto", wait_for(lambda: read_state(mosq.port) == "1", 10),
          f"{read_state(mosq.port)}")
    check("mosquitto_sub session at tern-broker", subscribe_only(tern.port, "near-sub", "site/#"))
    # The bridge's subscriptions on both sides (from the brokers' logs).
    check("the bridge subscribed at tern-broker",
          wait_for(lambda: "local.tern-site subscribed to out/#" in tern.text(), 10))
    check("the bridge subscribed at Mosquitto",
          wait_for(lambda: "central/in/#" in mosq.text(), 10))
    time.sleep(0.2)  # the SUBACK after the log line

    # out: published at tern-broker, received at Mosquitto, in order, all of them.
    out1 = [f"o{i}" for i in range(N)]
    check("mosquitto_pub -l to tern-broker", publish_lines(tern.port, "out/a", out1))
    expect_in_order(f"out: {N} QoS 1 messages at Mosquitto in order",
                    collect(mosq.port, "far-sub", "out/#", N), "out/a", out1)
    # in: published at Mosquitto under central/, received at tern-broker under site/.
    in1 = [f"i{i}" for i in range(N)]
    check("mosquitto_pub -l to Mosquitto", publish_lines(mosq.port, "central/in/b", in1))
    expect_in_order(f"in: {N} QoS 1 messages at tern-broker in order, remapped",
                    collect(tern.port, "near-sub", "site/#", N), "site/in/b", in1)
    fwd = tern.metric("tern_bridge_messages_forwarded_total", bridge="mosq", direction="out")
    check("tern_bridge_messages_forwarded_total out", fwd == N, f"{fwd}")
    fwd = tern.metric("tern_bridge_messages_forwarded_total", bridge="mosq", direction="in")
    check("tern_bridge_messages_forwarded_total in", fwd == N, f"{fwd}")

    # The remote goes down: the metric says so; what is published meanwhile waits.
    mosq.stop()
    check("tern_bridge_connected remote 0 while Mosquitto is down",
          wait_for(lambda: tern.metric("tern_bridge_connected", bridge="mosq", side="remote") == 0,
                   15))
    check("state 0 at tern-broker while Mosquitto is down",
          wait_for(lambda: read_state(tern.port) == "0", 10), f"{read_state(tern.port)}")
    out2 = [f"p{i}" for i in range(N)]
    check("mosquitto_pub -l while Mosquitto is down", publish_lines(tern.port, "out/a", out2))
    # What the bridge holds unacknowledged (its in-flight window at the broker) and what the
    # broker holds for the bridge's session beyond that add up to all of them.
    def held():
        return (tern.metric("tern_bridge_messages_queued", bridge="mosq", direction="out"),
                tern.metric("tern_queued_messages"))
    check("tern_bridge_messages_queued out + tern_queued_messages == all of them",
          wait_for(lambda: held()[0] > 0 and sum(held()) == N, 10), f"{held()}")
    mosq.start()
    check("tern_bridge_connected remote 1 again",
          wait_for(lambda: tern.metric("tern_bridge_connected", bridge="mosq", side="remote") == 1,
                   20))
    check("state 1 at tern-broker again", wait_for(lambda: read_state(tern.port) == "1", 10),
          f"{read_state(tern.port)}")
    expect_in_order(f"out: the {N} published while Mosquitto was down arrive, in order",
                    collect(mosq.port, "far-sub", "out/#", N), "out/a", out2)
    check("tern_bridge_remote_connects_total 2",
          tern.metric("tern_bridge_remote_connects_total", bridge="mosq") == 2)
    check("tern_bridge_messages_queued out back to 0",
          wait_for(lambda: tern.metric("tern_bridge_messages_queued", bridge="mosq",
                                       direction="out") == 0, 10))

    # SIGHUP: a new rule crosses without a restart of the bridge.
    check("subscribe at Mosquitto for more/#", subscribe_only(mosq.port, "far-more", "more/#"))
    with open(conf, "w") as f:
        f.write(bridge_conf(mosq.port, "topic more/# out 1\n"))
    tern.proc.send_signal(signal.SIGHUP)
    check("reload logged",
          wait_for(lambda: "bridge reloaded bridge=mosq action=updated" in tern.text(), 10),
          tern.text()[-2000:])
    check("the new rule subscribed at tern-broker",
          wait_for(lambda: "local.tern-site subscribed to more/#" in tern.text(), 10))
    time.sleep(0.2)
    more = [f"m{i}" for i in range(20)]
    check("mosquitto_pub more/ to tern-broker", publish_lines(tern.port, "more/c", more))
    expect_in_order("after SIGHUP: the new rule's messages arrive",
                    collect(mosq.port, "far-more", "more/#", len(more)), "more/c", more)

    status = stop(tern.proc)
    check("tern-broker stops cleanly on SIGTERM", status == 0, f"status {status}")
    mosq.stop()
    done()


main()
