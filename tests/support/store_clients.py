"""What the persistence tests share: tern-broker on a store directory (started, stopped or
killed, and started again on the same store), and a paho-mqtt subscriber with a persistent
session. Import it after checking that paho-mqtt is there (the tests skip without it)."""

import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt


def wait_until(cond, timeout):
    """cond() polled until it is true or `timeout` seconds passed; its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def small_files():
    """preexec_fn: a 256 KiB file size limit, as a full disk. The soft limit only, so that
    prlimit may lift it again without privileges."""
    import resource
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))


def lift_file_limit(proc):
    """Lifts small_files()'s limit of a running process (prlimit); True if it worked."""
    return subprocess.run(["prlimit", "--pid", str(proc.pid), "--fsize=unlimited"],
                          capture_output=True).returncode == 0


class StoreBroker:
    """tern-broker -v on 127.0.0.1 port 0 with `persistence true` in `store`. `extra`: more
    configuration lines; `head`: lines before the listener (per_listener_settings);
    start(threads) adds `threads N` (the file is written at each start, so a restart may
    change it)."""

    def __init__(self, binary, store, sync="batch", extra="", timeout=10.0, head=""):
        self.binary, self.store, self.sync, self.extra = binary, store, sync, extra
        self.head = head
        self.timeout = timeout
        self.conf = os.path.join(store, "tern.conf")
        self.proc = None
        self.log = ""

    def start(self, threads=None, preexec_fn=None):
        with open(self.conf, "w") as f:
            f.write(f"{self.head}listener 0 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {self.store}\npersistence_sync {self.sync}\n"
                    f"{self.extra}" + (f"threads {threads}\n" if threads else ""))
        self.logfile = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([self.binary, "-c", self.conf, "-v"], stderr=self.logfile,
                                     preexec_fn=preexec_fn)
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("broker did not start:\n" + self.text())

    def text(self):
        self.logfile.seek(0)
        return self.logfile.read()

    def stop(self, sig=signal.SIGTERM):
        """Signals the broker and waits for it (killed if it does not end); its exit status."""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log = self.text()
        return self.proc.returncode


class PersistentSub:
    """A paho subscriber with a persistent session (3.1.1, Clean Session 0) that subscribes
    to `topic` at each connect and keeps (topic, payload, retain) of what it gets. `check`
    reports its SUBACK; `timeout` bounds every wait; `username`, if given, is sent in
    CONNECT."""

    def __init__(self, port, cid, topic, qos, check, timeout=10.0, quiet=0.2, username=None):
        self.cid = cid
        self.timeout, self.quiet = timeout, quiet
        self.messages = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id=cid, clean_session=False)
        self.c.on_message = self.on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_connect = lambda c, u, flags, rc: c.subscribe(topic, qos)
        if username is not None:
            self.c.username_pw_set(username)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        check(self.subscribed.wait(timeout), f"{cid} subscribed to {topic}")

    def on_message(self, c, u, m):
        with self.lock:
            self.messages.append((m.topic, m.payload.decode(), m.retain))

    def count(self):
        with self.lock:
            return len(self.messages)

    def wait_count(self, n, timeout=None):
        """Until n messages came, then until none came for `quiet` seconds (both bounded by
        `timeout`); what came."""
        end = time.monotonic() + (timeout or self.timeout)
        wait_until(lambda: self.count() >= n, end - time.monotonic())
        last, since = self.count(), time.monotonic()
        while time.monotonic() - since < self.quiet and time.monotonic() < end + self.quiet:
            time.sleep(0.05)
            if self.count() != last:
                last, since = self.count(), time.monotonic()
        with self.lock:
            return list(self.messages)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
