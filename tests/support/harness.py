"""Shared pieces of the Python tests: free loopback ports, tern-broker and Mosquitto
started on them (and stopped), and PASS/FAIL bookkeeping. Every wait is bounded.

Import it from a test with:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
    import harness
"""

import os
import re
import shutil
import socket
import subprocess
import time

TIMEOUT = 10.0
START_TIMEOUT = 30.0
HOST = "127.0.0.1"


class Checks:
    """Prints PASS/FAIL lines and remembers the failures."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        print(("PASS: " if cond else "FAIL: ") + what, flush=True)
        if not cond:
            self.failures.append(what)
        return cond

    def exit_status(self):
        for f in self.failures:
            print("failed: " + f)
        return 1 if self.failures else 0


_HANDED_OUT = set()


def free_port():
    """A loopback port nothing listens on, never one this process was given before: the
    kernel may hand the same ephemeral port to two binds in a row once the first socket is
    closed, and a test that asks for two ports must get two."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh loopback port after 100 tries")


def wait_port(port, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """A broker process on a loopback port; stop() ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, name, proc, port, log_path):
        self.name, self.proc, self.port, self.log_path = name, proc, port, log_path

    def running(self):
        return self.proc.poll() is None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def shard_of(key, shards):
    """The shard tern-broker with `threads N` gives a client id (and a share group its home,
    from the whole `$share/...` filter): FNV-1a (64 bits) of the bytes, mixed by
    MurmurHash3's 64-bit finalizer, modulo N."""
    m = (1 << 64) - 1
    h = 14695981039346656037
    for b in key.encode():
        h = ((h ^ b) * 1099511628211) & m
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & m
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & m
    h ^= h >> 33
    return h % shards


def ids_on(shard, prefix, shards, n=1):
    """The first n client ids PREFIX0, PREFIX1, ... that shard_of puts on `shard`."""
    out, i = [], 0
    while len(out) < n:
        cid = f"{prefix}{i}"
        if shard_of(cid, shards) == shard:
            out.append(cid)
        i += 1
    return out


def threads_args(work, args=()):
    """With TERN_BROKER_THREADS=N in the environment (CTest sets it on every suite that runs
    both ways: 1 for the plain run, 2 for the .threads2 one; unset, the broker's default of
    one thread per core applies): `threads N` (and with N > 1 sys_interval 0 unless the file
    sets it, as these runs have had since threads > 1 needed it), in a copy of the broker's
    -c file or in a file of its own."""
    n = os.environ.get("TERN_BROKER_THREADS")
    if not n:
        return list(args)
    args = list(args)
    text = ""
    if "-c" in args:
        with open(args[args.index("-c") + 1]) as f:
            text = f.read()
        if text and not text.endswith("\n"):
            text += "\n"
    lines = [line.split()[0] for line in text.splitlines() if line.split()]
    if "sys_interval" not in lines and n != "1":
        text += "sys_interval 0\n"
    text += "threads %s\n" % n
    conf = os.path.join(work, "threads-%d.conf" % time.time_ns())
    with open(conf, "w") as f:
        f.write(text)
    if "-c" in args:
        args[args.index("-c") + 1] = conf
        return args
    return ["-c", conf, *args]


def start_tern_broker(binary, work, args=()):
    """tern-broker -p 0: the port is read from its first log line."""
    args = threads_args(work, args)
    log_path = os.path.join(work, "tern-broker-%d.log" % time.time_ns())
    log = open(log_path, "w+")
    proc = subprocess.Popen([binary, "-p", "0", *args], stdout=subprocess.DEVNULL, stderr=log)
    # Longer than TIMEOUT: a sanitizer build starting while other tests load both cores.
    end = time.monotonic() + START_TIMEOUT
    text = ""
    while time.monotonic() < end:
        log.seek(0)
        text = log.read()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        if m:
            return Broker("tern-broker", proc, int(m.group(1)), log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    status = proc.poll()
    proc.kill()
    raise RuntimeError("tern-broker did not report its port (%s); its log: %r"
                       % ("exited with %s" % status if status is not None else
                          "still running after %.0f s" % START_TIMEOUT, text[-2000:]))


def mosquitto_binary():
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                         if os.path.exists("/usr/sbin/mosquitto") else None)


def start_mosquitto(work, extra=""):
    """Mosquitto on a free loopback port with `extra` config lines (anonymous allowed)."""
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("mosquitto is not installed")
    port = free_port()
    conf = os.path.join(work, "mosquitto-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("listener %d %s\nallow_anonymous true\n%s\n" % (port, HOST, extra))
    log_path = os.path.join(work, "mosquitto-%d.log" % port)
    log = open(log_path, "w+")
    proc = subprocess.Popen([binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    if not wait_port(port):
        proc.kill()
        raise RuntimeError("mosquitto did not start")
    return Broker("mosquitto", proc, port, log_path)
