"""MQTT-SN pieces shared by the Python tests: tern-broker with an MQTT-SN listener and a TCP
listener on free loopback ports, a UDP client that speaks in hex datagrams, and bounded waits.

Import it from a test with:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
    import mqttsn
"""

import os
import re
import shutil
import socket
import subprocess
import time

import harness

TIMEOUT = 10.0
HOST = harness.HOST

# The MQTT-SN listener first, so that the TCP one may follow on the same address.
LISTENERS = ("allow_anonymous true\n"
             "listener 0 127.0.0.1\n"
             "protocol mqttsn\n"
             "listener 0 127.0.0.1\n")


class Gateway(harness.Broker):
    """A tern-broker with a gateway: `port` is its TCP listener, `sn_port` its MQTT-SN one,
    `metrics_port` its metrics listener (or None), `conf` its configuration file."""

    def __init__(self, proc, port, sn_port, metrics_port, log_path, conf):
        super().__init__("tern-broker", proc, port, log_path)
        self.sn_port, self.metrics_port, self.conf = sn_port, metrics_port, conf

    def rewrite_conf(self, extra):
        """Writes LISTENERS + `extra` to the configuration file (for a SIGHUP)."""
        with open(self.conf, "w") as f:
            f.write(LISTENERS + extra)


def start_gateway(binary, work, extra="", args=("-v",), metrics=False, timeout=15.0,
                  listeners=LISTENERS):
    """tern-broker -c work/tern.conf with `listeners` + `extra` and `args`; waits (bounded)
    until its log names both ports, and the metrics port when `metrics` is set."""
    conf = os.path.join(work, "tern.conf")
    with open(conf, "w") as f:
        f.write(listeners + extra)
    log_path = os.path.join(work, "broker.log")
    log = open(log_path, "w+")
    proc = subprocess.Popen([binary, "-c", conf, *args], stdout=subprocess.DEVNULL, stderr=log)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        log.seek(0)
        text = log.read()
        tcp = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        udp = re.search(r"MQTT-SN 127\.0\.0\.1:(\d+)", text)
        http = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", text)
        if tcp and udp and (http or not metrics):
            return Gateway(proc, int(tcp.group(1)), int(udp.group(1)),
                           int(http.group(1)) if http else None, log_path, conf)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with open(log_path, errors="replace") as f:
        print(f.read())
    raise RuntimeError("tern-broker did not report its ports")


def tear_down(check, broker, work, procs=(), clients=()):
    """The end of a test: kills the tool processes still running, closes the clients, stops
    the broker, prints its log when a check failed and removes `work`."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for c in clients:
        c.close()
    broker.stop()
    if check.failures:
        print(broker.log())
    shutil.rmtree(work, ignore_errors=True)


class Client:
    """One MQTT-SN client: a UDP socket on 127.0.0.1 talking to the gateway in hex."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(TIMEOUT)
        self.gw = (HOST, port)

    def send(self, hexstr):
        self.sock.sendto(bytes.fromhex(hexstr), self.gw)

    def recv(self, timeout=TIMEOUT):
        """The next datagram in hex, or None after `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recvfrom(65536)[0].hex()
        except socket.timeout:
            return None

    def exchange(self, hexstr):
        self.send(hexstr)
        return self.recv()

    def close(self):
        self.sock.close()


def wait_file(path, pattern, timeout=TIMEOUT):
    """The file's text once `pattern` matches in it, or its text after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, errors="replace") as f:
            text = f.read()
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    with open(path, errors="replace") as f:
        return f.read()


def udp_sockets(pid):
    """The UDP sockets of process `pid` as [{"port": ..., "rb": ..., "d": ...}] (receive
    buffer and drop count, from `ss -uamnp`); None when ss is not there."""
    try:
        p = subprocess.run(["ss", "-uamnp"], capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = []
    lines = p.stdout.splitlines()
    for i, line in enumerate(lines):
        if "pid=%d," % pid not in line or i + 1 >= len(lines):
            continue
        port = re.search(r":(\d+)\s", line)
        mem = re.search(r"rb(\d+),.*,d(\d+)\)", lines[i + 1])
        if port and mem:
            out.append({"port": int(port.group(1)), "rb": int(mem.group(1)), "d": int(mem.group(2))})
    return out


def granted_receive_buffer(asked):
    """What Linux grants for SO_RCVBUF `asked` (capped at rmem_max, doubled), as ss shows it."""
    with open("/proc/sys/net/core/rmem_max") as f:
        cap = int(f.read())
    return max(2 * min(asked, cap), 2304)
