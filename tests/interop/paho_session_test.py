#!/usr/bin/python3
"""Interop: persistent sessions of tern-broker with Eclipse Paho (paho-mqtt 1.x) and
mosquitto_sub.

- paho, MQTT 3.1.1 (Clean Session 0) and 5.0 (Clean Start 0, Session Expiry 3600): a
  subscriber disconnects, QoS 1 and QoS 2 messages are published while it is away, it
  reconnects, sees Session Present 1 and receives every one of them at its QoS, in order.
- paho, Clean Session 1 / Clean Start 1 afterwards: Session Present 0, nothing queued.
- mosquitto_sub -c -i X: a second run gets the QoS 1 messages published between the runs.

usage: paho_session_test.py path/to/tern-broker
exit:  0 all passed, 1 a check failed, 77 paho-mqtt not installed (skipped)
"""

import queue
import shutil
import subprocess
import sys
import tempfile

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
except ImportError:
    print("SKIP: paho-mqtt not installed")
    sys.exit(77)

from paho_test import HOST, TIMEOUT, start_broker, stop_broker

failures = []
COUNT = 5  # messages per QoS published while the subscriber is away


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


class Persistent:
    """A paho client connecting with (or without) a persistent session."""

    def __init__(self, port, proto, client_id, clean):
        self.messages = queue.Queue()
        self.connected = queue.Queue()
        self.subscribed = queue.Queue()
        if proto == mqtt.MQTTv5:
            self.c = mqtt.Client(client_id=client_id, protocol=proto)
        else:
            self.c = mqtt.Client(client_id=client_id, protocol=proto, clean_session=clean)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, flags, rc, props=None: self.connected.put((flags, rc))
        self.c.on_subscribe = lambda c, u, mid, granted, props=None: self.subscribed.put(granted)
        if proto == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if clean else 3600
            self.c.connect(HOST, port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.c.connect(HOST, port, keepalive=30)
        self.c.loop_start()
        flags, rc = self.connected.get(timeout=TIMEOUT)
        if rc != 0:
            raise RuntimeError("CONNACK %s" % rc)
        self.session_present = bool(flags.get("session present"))

    def subscribe(self, topic, qos):
        self.c.subscribe(topic, qos)
        return self.subscribed.get(timeout=TIMEOUT)

    def publish(self, topic, payload, qos):
        info = self.c.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=TIMEOUT)
        return info.is_published()

    def collect(self, n):
        got = []
        try:
            while len(got) < n:
                got.append(self.messages.get(timeout=TIMEOUT))
        except queue.Empty:
            pass
        return got

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_resume(port, proto):
    name = "5.0" if proto == mqtt.MQTTv5 else "3.1.1"
    cid = "paho-persist-" + name
    topic = "sess/%s/t" % name
    sub = Persistent(port, proto, cid, clean=True)  # start from no session at all
    sub.disconnect()
    sub = Persistent(port, proto, cid, clean=False)
    check(not sub.session_present, "%s first persistent CONNECT: Session Present 0" % name)
    sub.subscribe(topic, 2)
    sub.disconnect()

    pub = Persistent(port, proto, "paho-persist-pub-" + name, clean=True)
    sent = []
    for i in range(COUNT):
        for qos in (1, 2):
            payload = "q%d-%d" % (qos, i)
            check(pub.publish(topic, payload, qos), "%s publish %s acknowledged" % (name, payload))
            sent.append((payload.encode(), qos))
    pub.disconnect()

    sub = Persistent(port, proto, cid, clean=False)
    check(sub.session_present, "%s resumed: Session Present 1" % name)
    got = [(m.payload, m.qos) for m in sub.collect(len(sent))]
    # paho hands a QoS 2 message over at PUBREL, so QoS 1 and 2 interleave differently;
    # each QoS on its own keeps the order.
    for qos in (1, 2):
        want = [p for p, q in sent if q == qos]
        have = [p for p, q in got if q == qos]
        check(have == want, "%s every offline QoS %d message in order at its QoS: %r"
              % (name, qos, have))
    check(len(got) == len(sent), "%s nothing more (%d of %d)" % (name, len(got), len(sent)))
    sub.disconnect()

    clean = Persistent(port, proto, cid, clean=True)
    check(not clean.session_present, "%s clean reconnect: Session Present 0" % name)
    check(not clean.collect(1), "%s clean reconnect: nothing queued" % name)
    clean.disconnect()


def test_mosquitto_sub(port):
    if shutil.which("mosquitto_sub") is None:
        print("SKIP: mosquitto_sub not installed")
        return
    base = ["mosquitto_sub", "-h", HOST, "-p", str(port), "-c", "-i", "mosq-persist",
            "-q", "1", "-t", "sess/mosq"]
    first = subprocess.run(base + ["-E"], capture_output=True, text=True, timeout=TIMEOUT * 2)
    check(first.returncode == 0, "mosquitto_sub -c -E subscribed (%s)" % first.returncode)
    pub = Persistent(port, mqtt.MQTTv311, "mosq-persist-pub", clean=True)
    for payload in ("one", "two"):
        check(pub.publish("sess/mosq", payload, 1), "publish %s for mosquitto_sub" % payload)
    pub.disconnect()
    second = subprocess.run(base + ["-C", "2", "-W", "5"], capture_output=True, text=True,
                            timeout=TIMEOUT * 3)
    check(second.stdout.split() == ["one", "two"],
          "mosquitto_sub -c -i resumed and got what was queued (%r)" % second.stdout)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with tempfile.NamedTemporaryFile("w+", prefix="tern-broker-", suffix=".log") as log:
        proc, port = start_broker(sys.argv[1], log)
        print("tern-broker on port %d" % port, flush=True)
        try:
            for proto in (mqtt.MQTTv311, mqtt.MQTTv5):
                test_resume(port, proto)
            test_mosquitto_sub(port)
            check(proc.poll() is None, "broker still running")
        except Exception as e:  # a timeout or refused connection is a failure, not a crash
            check(False, "exception: %r" % e)
        finally:
            stop_broker(proc)
            check(proc.returncode == 0, "broker exited cleanly on SIGTERM (%s)" % proc.returncode)
            if failures:
                log.seek(0)
                sys.stdout.write(log.read())
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
