"""Starts Mosquitto or tern-broker on a free loopback port for the comparison scripts in bench/
(compare-mosquitto, compare-instructions, bench-headroom), each with the configuration those
comparisons use; or tern-standin (kinds "standin-echo" and "standin-sink"), the broker stand-in
that only acknowledges or echoes, which bench-headroom measures tern-bench against.

Mosquitto (the Debian package) runs with its queue and in-flight limits lifted
(max_queued_messages 0, max_queued_bytes 0, max_inflight_messages 0) so it does not drop on
purpose; tern-broker runs with its defaults (bounded queues with back-pressure) except
max_packet_size and max_connections, raised to Mosquitto's unlimited defaults.

`wrapper` runs the broker under another program (for example `valgrind --tool=callgrind ...`);
its own output must not go to the broker's stderr, which tern-broker's start-up line is read
from.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_binary():
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_version():
    out = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True).stdout
    return (out.splitlines() or ["mosquitto"])[0]


def tern_version(bin_dir):
    return subprocess.run([os.path.join(bin_dir, "tern-broker"), "--version"],
                          capture_output=True, text=True).stdout.strip()


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


class Broker:
    def __init__(self, kind, bin_dir, work, wrapper=(), start_timeout=10, tern_extra="",
                 listener_extra=""):
        """listener_extra: lines for the listener of either broker (TLS files, say)."""
        self.kind = kind
        log = open(os.path.join(work, f"{kind}.log"), "a")
        if kind == "mosquitto":
            self.port = free_port()
            conf = os.path.join(work, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.port} {HOST}\n{listener_extra}allow_anonymous true\n"
                        "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
                        "max_connections -1\n")
            self.proc = subprocess.Popen([*wrapper, mosquitto_binary(), "-c", conf],
                                         stdout=log, stderr=subprocess.STDOUT)
            if not wait_port(self.port, start_timeout):
                self.proc.kill()
                sys.exit("mosquitto did not start")
        elif kind.startswith("standin-"):
            self.proc = subprocess.Popen(
                [*wrapper, os.path.join(bin_dir, "tern-standin"), "--port", "0", "--mode",
                 kind.split("-", 1)[1]], stdout=log, stderr=subprocess.PIPE, text=True)
            line = self.proc.stderr.readline()
            if "listening on 127.0.0.1:" not in line:
                self.proc.kill()
                sys.exit(f"tern-standin did not start: {line}")
            self.port = int(line.split("127.0.0.1:")[1].split(",")[0])
            self.drain = subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=log)
        else:
            # Its defaults, except the bounds Mosquitto does not have by default: packets up
            # to the protocol's maximum (the 1 MiB payload) and connections past 10,000.
            conf = os.path.join(work, "tern.conf")
            with open(conf, "w") as f:
                f.write(f"listener 0 {HOST}\n{listener_extra}allow_anonymous true\n"
                        "max_connections 1000000\nmax_packet_size 268435455\n" + tern_extra)
            self.proc = subprocess.Popen(
                [*wrapper, os.path.join(bin_dir, "tern-broker"), "-c", conf], stdout=log,
                stderr=subprocess.PIPE, text=True)
            line = self.proc.stderr.readline()
            if "listening on 127.0.0.1:" not in line:
                self.proc.kill()
                sys.exit(f"tern-broker did not start: {line}")
            self.port = int(line.split("127.0.0.1:")[1].split(",")[0].split()[0])
            # Keep draining its log so the pipe never fills.
            self.drain = subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=log)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=20):
        """SIGTERM (both brokers exit cleanly on it), then SIGKILL after `timeout` seconds.
        Returns True when the broker exited by itself."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
            clean = True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            clean = False
        if getattr(self, "drain", None):
            try:
                self.drain.wait(5)
            except subprocess.TimeoutExpired:
                self.drain.kill()
        return clean
