#!/usr/bin/python3
"""The MQTT-SN gateway's counters in tern-broker's /metrics (scraped with curl) and under
$SYS/broker/mqttsn/ (read with tern-sub), moved by exact datagrams from Python sockets.

One broker: an MQTT-SN listener and a TCP listener on free ports, metrics_listener 0,
sys_interval 1, mqttsn_max_buffered_messages 1, T_RETRY 1 s, N_RETRY 1. At the start every
gateway counter is 0. Then: a datagram that does not decode, from an unknown address and from
a connected client (malformed 2); a well-formed DISCONNECT from an unknown address (unexpected
1); two clients connect (clients 2); one subscribes, sleeps, and three QoS 0 messages from
tern-pub arrive for it with room for one (sleep buffer drops 2); the other subscribes at QoS 1
and never acknowledges what tern-pub sends it: one retransmission, then it is lost (clients
back to 1, lost 1). The gateway's socket has the default receive buffer (ss). A second broker
with mqttsn_receive_buffer 4096 is stopped (SIGSTOP) while 200 datagrams arrive: what the
kernel dropped is counted as receive_buffer (as ss's drop count says), the rest as malformed.
Every wait is bounded.

usage: mqttsn_counters_test.py path/to/tern-broker path/to/tern-pub path/to/tern-sub
exit:  0 passed, 1 failed, 77 curl missing (skipped)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402
from mqttsn import Client  # noqa: E402
import mqttsn  # noqa: E402

TIMEOUT = 10.0


def scrape(http_port):
    """The /metrics samples as {'name{labels}': value}, fetched with curl."""
    p = subprocess.run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:%d/metrics" % http_port],
                       capture_output=True, text=True, timeout=TIMEOUT)
    out = {}
    for line in p.stdout.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


GATEWAY = {
    "clients": "tern_mqttsn_clients",
    "malformed": 'tern_mqttsn_datagrams_dropped_total{reason="malformed"}',
    "unexpected": 'tern_mqttsn_datagrams_dropped_total{reason="unexpected"}',
    "receive_buffer": 'tern_mqttsn_datagrams_dropped_total{reason="receive_buffer"}',
    "buffer": 'tern_mqttsn_messages_dropped_total{reason="sleep_buffer"}',
    "undeliverable": 'tern_mqttsn_messages_dropped_total{reason="undeliverable"}',
    "retransmissions": "tern_mqttsn_retransmissions_total",
    "lost": "tern_mqttsn_clients_lost_total",
}


def wait_metrics(http_port, want, timeout=TIMEOUT):
    """Scrapes until every GATEWAY[k] == v of `want`; returns the last values seen."""
    end = time.monotonic() + timeout
    while True:
        m = scrape(http_port)
        got = {k: m.get(GATEWAY[k]) for k in want}
        if all(got[k] == v for k, v in want.items()) or time.monotonic() > end:
            return got
        time.sleep(0.1)


def connect(port, client_id):
    c = Client(port)
    ident = client_id.encode().hex()
    return c, c.exchange("%02x04040100" "1e%s" % (6 + len(client_id), ident))


def subscribe(c, topic, qos_flags):
    t = topic.encode().hex()
    return c.exchange("%02x12%s0001%s" % (5 + len(topic), qos_flags, t))


def kernel_drops(check, broker_bin, work):
    """mqttsn_receive_buffer 4096: datagrams sent while the broker is stopped (SIGSTOP) do
    not all fit; those the kernel dropped are counted as receive_buffer, the rest as
    malformed, together all of them."""
    os.makedirs(os.path.join(work, "small"))
    broker = mqttsn.start_gateway(broker_bin, os.path.join(work, "small"),
                                  "metrics_listener 0\nmqttsn_receive_buffer 4096\n",
                                  args=(), metrics=True)
    sent = 200
    c = Client(broker.sn_port)
    try:
        socks = mqttsn.udp_sockets(broker.proc.pid)
        if socks is not None:
            check([s["rb"] for s in socks if s["port"] == broker.sn_port] == [8192],
                  "mqttsn_receive_buffer 4096: the socket's rb is 8192: %r" % socks)
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            # 100 octets each, a Length of 5: malformed when the gateway reads them.
            for _ in range(sent):
                c.send("05" + "04" * 99)
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        end = time.monotonic() + TIMEOUT
        while True:
            m = scrape(broker.metrics_port)
            got = {k: m.get(GATEWAY[k]) for k in ("malformed", "receive_buffer")}
            total = (got["malformed"] or 0) + (got["receive_buffer"] or 0)
            if total >= sent or time.monotonic() > end:
                break
            time.sleep(0.1)
        check(total == sent and got["receive_buffer"] > 0,
              "%d datagrams into a full 8 KiB buffer: the kernel's drops counted as "
              "receive_buffer, the rest malformed: %r" % (sent, got))
        socks = mqttsn.udp_sockets(broker.proc.pid)
        if socks is not None:
            drops = [s["d"] for s in socks if s["port"] == broker.sn_port]
            check(drops == [got["receive_buffer"]],
                  "the count is the socket's drop count (ss d%r)" % drops)
        check(broker.running(), "the small-buffer tern-broker still running")
    finally:
        c.close()
        broker.stop()


def main():
    broker_bin, pub_bin, sub_bin = sys.argv[1], sys.argv[2], sys.argv[3]
    if shutil.which("curl") is None:
        print("SKIP: curl not installed")
        return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-mqttsn-counters-")
    broker = mqttsn.start_gateway(broker_bin, work,
                                  "metrics_listener 0\n"
                                  "sys_interval 1\n"
                                  "mqttsn_max_buffered_messages 1\n"
                                  "mqttsn_retry_interval 1\n"
                                  "mqttsn_retry_count 1\n", args=(), metrics=True)
    sn_port, http_port = broker.sn_port, broker.metrics_port
    clients = []
    try:
        m = scrape(http_port)
        check(all(m.get(name) == 0 for name in GATEWAY.values()),
              "/metrics: every gateway counter is there and 0 at the start: %r"
              % {k: m.get(v) for k, v in GATEWAY.items()})

        # Malformed: a Length of 5 in a 2-octet datagram, from an address without a client.
        stray = Client(sn_port)
        clients.append(stray)
        stray.send("0504")
        # Well formed but not for a gateway without a connection: DISCONNECT.
        stray.send("0218")
        got = wait_metrics(http_port, {"malformed": 1, "unexpected": 1})
        check(got == {"malformed": 1, "unexpected": 1},
              "a malformed and an unexpected datagram counted: %r" % got)

        sleeper, connack = connect(sn_port, "cs")
        clients.append(sleeper)
        check(connack == "030500", "CONNECT cs: CONNACK accepted (%r)" % connack)
        deaf, connack = connect(sn_port, "cd")
        clients.append(deaf)
        check(connack == "030500", "CONNECT cd: CONNACK accepted (%r)" % connack)
        sleeper.send("0504")  # malformed from a connected client: dropped, the client stays
        got = wait_metrics(http_port, {"clients": 2, "malformed": 2})
        check(got == {"clients": 2, "malformed": 2},
              "two MQTT-SN clients, a second malformed datagram: %r" % got)

        # The sleeper: QoS 0 subscription, asleep, three messages with room for one.
        check(subscribe(sleeper, "sn/b", "00") == "0813000001000100",
              "SUBSCRIBE sn/b QoS 0: topic id 1")
        check(sleeper.exchange("0418001e") == "0218", "DISCONNECT Duration 30: asleep")
        p = subprocess.run([pub_bin, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/b",
                            "-m", "x", "--repeat", "3"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        check(p.returncode == 0, "tern-pub: three QoS 0 messages to sn/b (%s)" % p.stderr.strip())
        got = wait_metrics(http_port, {"buffer": 2})
        check(got == {"buffer": 2}, "two of three dropped from the sleeping client's buffer: %r" % got)

        # The deaf client: QoS 1 subscription, a message it never acknowledges.
        check(subscribe(deaf, "sn/c", "20") == "0813200001000100",
              "SUBSCRIBE sn/c QoS 1: topic id 1")
        p = subprocess.run([pub_bin, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/c",
                            "-m", "y", "-q", "1"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        check(p.returncode == 0, "tern-pub: a QoS 1 message to sn/c (%s)" % p.stderr.strip())
        first = deaf.recv()
        check(first is not None and first[2:4] == "0c" and first[4:6] == "20",
              "cd gets PUBLISH QoS 1 (%r)" % first)
        again = deaf.recv(timeout=5)
        check(again is not None and again[2:4] == "0c" and again[4:6] == "a0",
              "cd gets it again with DUP after T_RETRY (%r)" % again)
        got = wait_metrics(http_port, {"retransmissions": 1, "lost": 1, "clients": 1})
        check(got == {"retransmissions": 1, "lost": 1, "clients": 1},
              "one retransmission, then cd is lost (N_RETRY 1): %r" % got)
        check(deaf.recv(timeout=3) == "0218", "cd got DISCONNECT when it was lost")
        got = wait_metrics(http_port, {"undeliverable": 0, "malformed": 2, "unexpected": 1,
                                       "receive_buffer": 0})
        check(got == {"undeliverable": 0, "malformed": 2, "unexpected": 1, "receive_buffer": 0},
              "nothing else counted: %r" % got)

        # $SYS/broker/mqttsn/...: the same values (sys_interval 1, retained).
        time.sleep(1.2)
        p = subprocess.run([sub_bin, "-h", "127.0.0.1", "-p", str(broker.port), "-v",
                            "-t", "$SYS/broker/mqttsn/#", "-W", "2"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        sys_values = dict(line.split(" ", 1) for line in p.stdout.splitlines() if " " in line)
        want = {"$SYS/broker/mqttsn/clients": "1",
                "$SYS/broker/mqttsn/clients/lost": "1",
                "$SYS/broker/mqttsn/datagrams/malformed": "2",
                "$SYS/broker/mqttsn/datagrams/unexpected": "1",
                "$SYS/broker/mqttsn/datagrams/receive_buffer": "0",
                "$SYS/broker/mqttsn/messages/dropped": "2",
                "$SYS/broker/mqttsn/retransmissions": "1"}
        check(all(sys_values.get(k) == v for k, v in want.items()),
              "$SYS/broker/mqttsn/... carry the same values: %r" % sys_values)
        check(broker.running(), "tern-broker still running")
        socks = mqttsn.udp_sockets(broker.proc.pid)
        if socks is None:
            print("SKIP: ss not installed, SO_RCVBUF not checked")
        else:
            want = mqttsn.granted_receive_buffer(4 << 20)
            check([s["rb"] for s in socks if s["port"] == sn_port] == [want],
                  "the gateway's socket has the default mqttsn_receive_buffer (rb %d): %r"
                  % (want, socks))
    finally:
        for c in clients:
            c.close()
        broker.stop()
    kernel_drops(check, broker_bin, work)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
