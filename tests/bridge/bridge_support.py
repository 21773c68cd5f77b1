"""Helpers for the tern-bridge tests: brokers (tern-broker, Mosquitto) on free loopback ports,
tern-bridge with --json events read in a thread, paho clients that collect or publish.
Every wait is bounded; everything started is stopped at exit."""

import atexit
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
except ImportError:
    print("SKIP: paho-mqtt not installed")
    sys.exit(77)

HOST = "127.0.0.1"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
WORK = tempfile.mkdtemp(prefix="tern-bridge-test-")
PROCS = []
FAILURES = []


def check(name, ok, detail=""):
    print(("PASS: " if ok else "FAIL: ") + name + ("" if ok else f"\n    {detail}"), flush=True)
    if not ok:
        FAILURES.append(name)


def done():
    for p in PROCS:
        stop(p)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {FAILURES}; logs in {WORK}")
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("all passed")
    sys.exit(0)


def _cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()


atexit.register(_cleanup)


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from harness import free_port  # noqa: E402  (distinct ports within one test)


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, seconds=5):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(seconds)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def wait_port(port, seconds=10):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for(pred, seconds=10, step=0.02):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Broker:
    def __init__(self, kind, bin_dir, port=None, args=()):
        self.kind = kind
        self.args = list(args)
        self.bin_dir = bin_dir
        self.port = port
        self.proc = None
        self.start()

    def start(self):
        if self.kind == "tern":
            args = [os.path.join(self.bin_dir, "tern-broker"), "-p", str(self.port or 0)]
            args += self.args
            self.log_path = os.path.join(WORK, f"tern-broker-{time.time_ns()}.log")
            log = open(self.log_path, "w+")
            self.proc = spawn(args, stderr=log)
            end = time.time() + 10
            while time.time() < end:
                log.seek(0)
                line = log.readline()
                if "listening on 127.0.0.1:" in line:
                    self.port = int(line.split("127.0.0.1:")[1].split(",")[0].split()[0])
                    return
                time.sleep(0.05)
            sys.exit("FAIL: tern-broker did not report its port")
        else:
            if not os.path.exists(MOSQUITTO):
                print("SKIP: mosquitto not installed")
                sys.exit(77)
            self.port = self.port or free_port()
            conf = os.path.join(WORK, f"mosquitto-{self.port}.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.port} {HOST}\nallow_anonymous true\n"
                        "max_queued_messages 0\nmax_inflight_messages 0\n")
            log = open(os.path.join(WORK, f"mosquitto-{self.port}.log"), "a")
            self.proc = spawn([MOSQUITTO, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
            if not wait_port(self.port):
                sys.exit("FAIL: mosquitto did not start")

    def stop(self):
        stop(self.proc)


class Bridge:
    """tern-bridge --json; events() are the JSON lines so far."""

    def __init__(self, bin_dir, args):
        self.lines = []
        self.lock = threading.Lock()
        self.err = open(os.path.join(WORK, f"bridge-{time.time_ns()}.err"), "w+")
        self.proc = spawn([os.path.join(bin_dir, "tern-bridge"), "--json", "-v",
                           "--stats-interval", "0.2"] + args,
                          stdout=subprocess.PIPE, stderr=self.err)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = {"event": "not-json", "line": raw.decode(errors="replace")}
            with self.lock:
                self.lines.append(obj)

    def events(self, name=None):
        with self.lock:
            return [e for e in self.lines if name is None or e.get("event") == name]

    def connected(self, side, count=1):
        return len([e for e in self.events("connected") if e.get("side") == side]) >= count

    def wait_connected(self, seconds=15):
        return wait_for(lambda: self.connected("local") and self.connected("remote"), seconds)

    def wait_subscribed(self):
        # The SUBACK is not an event; a short pause after CONNACK covers it on loopback.
        time.sleep(0.3)

    def last_stats(self):
        s = self.events("stats")
        return s[-1] if s else {}

    def stop(self):
        return stop(self.proc)

    def stderr(self):
        self.err.seek(0)
        return self.err.read()


class ConfiguredBroker:
    """tern-broker -c CONF -v, with its port and /metrics address read from its log."""

    def __init__(self, bin_dir, conf):
        self.log_path = os.path.join(WORK, f"tern-broker-{time.time_ns()}.log")
        self.log = open(self.log_path, "w+")
        self.proc = spawn([os.path.join(bin_dir, "tern-broker"), "-c", conf, "-v"],
                          stderr=self.log)
        self.port = None
        self.metrics = None
        end = time.time() + 15
        while time.time() < end and (self.port is None or self.metrics is None):
            text = self.text()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
            m = re.search(r"metrics on http://([0-9.]+:\d+)/metrics", text)
            if m:
                self.metrics = m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None or self.metrics is None:
            sys.exit("FAIL: tern-broker did not start:\n" + self.text())

    def text(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def count(self, needle):
        return self.text().count(needle)

    def metric(self, name, **labels):
        """The value of one sample of /metrics, or None (absent, or no answer)."""
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        full = name + ("{" + want + "}" if want else "")
        try:
            with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return None
        for line in body.splitlines():
            if line.split(" ")[0] == full:
                return int(line.split()[-1])
        return None

    def bridge(self, name, bridge, **labels):
        return self.metric(name, bridge=bridge, **labels)

    def stop(self, sig=signal.SIGTERM):
        return stop(self.proc, sig, 10)


def v5_flag(version):
    return mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311


class Client:
    """A paho client on one broker that records what it receives."""

    def __init__(self, port, version="5", client_id="", clean=True):
        self.version = version
        self.messages = queue.Queue()
        self.got = []
        self.c = mqtt.Client(client_id=client_id, protocol=v5_flag(version),
                             **({} if version == "5" else {"clean_session": clean}))
        self.c.on_message = self._on_message
        self.ready = threading.Event()
        self.c.on_connect = lambda *a: self.ready.set()
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect(HOST, port, 30)
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError(f"paho could not connect to {port}")

    def _on_message(self, client, userdata, msg):
        props = {}
        if self.version == "5" and getattr(msg, "properties", None) is not None:
            up = getattr(msg.properties, "UserProperty", None)
            if up:
                props["user_property"] = list(up)
        self.got.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), props))

    def subscribe(self, topic, qos=2):
        self.subscribed.clear()
        self.c.subscribe(topic, qos)
        return self.subscribed.wait(10)

    def publish(self, topic, payload, qos=0, retain=False, user_property=None):
        props = None
        if user_property and self.version == "5":
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = user_property
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos > 0:
            info.wait_for_publish(10)
        return info

    def close(self):
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:
            pass
