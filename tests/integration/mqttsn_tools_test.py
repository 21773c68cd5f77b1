#!/usr/bin/python3
"""tern-pub and tern-sub over MQTT-SN (-L mqttsn://...) against tern-broker's gateway, with
mosquitto_sub and mosquitto_pub as the MQTT peers on the same broker.

tern-pub publishes at QoS 0, 1 and 2 (a REGISTER for the topic name) and at QoS -1 to a
predefined topic id without connecting; mosquitto_sub and tern-sub (MQTT, QoS 2
subscriptions) receive all four at the QoS they were sent with, tern-pub --json reports each.
tern-sub subscribes to a wildcard filter at QoS 2 and prints, as JSON, what mosquitto_pub and
tern-pub (MQTT) send at QoS 0, 1 and 2 (the gateway REGISTERs the topics); a second tern-sub
receives by a predefined topic id. tern-pub towards a port without a gateway fails at once;
flags MQTT-SN cannot carry are usage errors. Every wait is bounded.

usage: mqttsn_tools_test.py path/to/tern-broker path/to/tern-pub path/to/tern-sub
exit:  0 passed, 1 failed, 77 mosquitto clients missing (skipped)
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402
import mqttsn  # noqa: E402

TIMEOUT = 15.0


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def main():
    broker_bin, pub_bin, sub_bin = sys.argv[1], sys.argv[2], sys.argv[3]
    for tool in ("mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed" % tool)
            return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-mqttsn-tools-")
    broker = mqttsn.start_gateway(broker_bin, work, "mqttsn_predefined_topic 3 sn/pre\n")
    sn_port = broker.sn_port
    url = "mqttsn://127.0.0.1:%d" % sn_port
    procs = []
    try:
        # ---- tern-pub over MQTT-SN, mosquitto_sub and tern-sub on MQTT (QoS 2 subscriptions,
        # so each message arrives at the QoS it was published with)
        mos_out = os.path.join(work, "mosquitto_sub.out")
        procs.append(subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/#",
             "-F", "%q %t %p", "-q", "2", "-C", "4", "-W", "30", "-i", "mos-sub"],
            stdout=open(mos_out, "w"), stderr=subprocess.STDOUT))
        tcp_out = os.path.join(work, "tern_sub_tcp.out")
        tcp_sub = subprocess.Popen(
            [sub_bin, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/#", "--json",
             "-q", "2", "-C", "4", "-W", "30", "-i", "tcp-sub"],
            stdout=open(tcp_out, "w"), stderr=subprocess.STDOUT)
        procs.append(tcp_sub)
        mqttsn.wait_file(broker.log_path, r"mos-sub.*sn/#", timeout=TIMEOUT)
        mqttsn.wait_file(broker.log_path, r"tcp-sub.*sn/#", timeout=TIMEOUT)
        for q in ("0", "1", "2"):
            r = run([pub_bin, "-L", url + "/sn/t", "-q", q, "-m", "q" + q, "--json", "-i", "p" + q])
            check(r.returncode == 0, "tern-pub QoS %s exit 0: %s" % (q, r.stderr.strip()))
            lines = r.stdout.splitlines()
            got = json.loads(lines[0]) if len(lines) == 1 else {}
            check(got.get("topic") == "sn/t" and got.get("qos") == int(q) and
                  got.get("bytes") == 2 and got.get("reason_code") == 0 and
                  ("mid" in got) == (q != "0"), "tern-pub QoS %s --json: %r" % (q, r.stdout))
        r = run([pub_bin, "-L", url + "/sn/pre", "--sn-predefined", "3:sn/pre", "--qos-minus-one",
                 "-m", "m1", "--json"])
        check(r.returncode == 0, "tern-pub QoS -1 exit 0: %s" % r.stderr.strip())
        got = json.loads(r.stdout) if r.stdout.strip() else {}
        check(got.get("qos") == -1 and got.get("topic") == "sn/pre", "QoS -1 --json: %r" % r.stdout)
        text = mqttsn.wait_file(mos_out, r"sn/pre m1", timeout=TIMEOUT)
        check(text.splitlines() == ["0 sn/t q0", "1 sn/t q1", "2 sn/t q2", "0 sn/pre m1"],
              "mosquitto_sub received QoS 0, 1, 2 and -1 (as 0) from tern-pub: %r" % text)
        try:
            status = tcp_sub.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        with open(tcp_out) as f:
            lines = [json.loads(line) for line in f if line.startswith("{")]
        check(status == 0 and [(m.get("topic"), m.get("payload"), m.get("qos")) for m in lines] ==
              [("sn/t", "q0", 0), ("sn/t", "q1", 1), ("sn/t", "q2", 2), ("sn/pre", "m1", 0)],
              "tern-sub (MQTT) received QoS 0, 1, 2 and -1 (as 0) from tern-pub: exit %r, %r"
              % (status, lines))

        # ---- tern-sub over MQTT-SN, mosquitto_pub and tern-pub on MQTT
        sub_out = os.path.join(work, "tern_sub.out")
        sub_err = os.path.join(work, "tern_sub.err")
        sub = subprocess.Popen([sub_bin, "-L", url + "/back/#", "-q", "2", "--json", "-C", "6",
                                "-W", "30", "-i", "snsub", "-d"],
                               stdout=open(sub_out, "w"), stderr=open(sub_err, "w"))
        procs.append(sub)
        check("subscribed" in mqttsn.wait_file(sub_err, r"subscribed", timeout=TIMEOUT), "tern-sub: SUBACK")
        socks = mqttsn.udp_sockets(sub.pid)
        if socks is not None:
            want = mqttsn.granted_receive_buffer(4 << 20)
            check([x["rb"] for x in socks] == [want],
                  "tern-sub's MQTT-SN socket asks for 4 MiB (rb %d): %r" % (want, socks))
        for topic, msg, q in (("back/a", "p0", "0"), ("back/b", "p1", "1"), ("back/a", "p2", "2")):
            run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic, "-m", msg,
                 "-q", q])
        for q in ("0", "1", "2"):
            r = run([pub_bin, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "back/c", "-m",
                     "t" + q, "-q", q])
            check(r.returncode == 0, "tern-pub (MQTT) QoS %s to back/c: %s" % (q, r.stderr.strip()))
        try:
            status = sub.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        check(status == 0, "tern-sub exit 0 after -C 6: %r" % status)
        with open(sub_out) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        check([(m.get("topic"), m.get("payload"), m.get("qos")) for m in lines] ==
              [("back/a", "p0", 0), ("back/b", "p1", 1), ("back/a", "p2", 2),
               ("back/c", "t0", 0), ("back/c", "t1", 1), ("back/c", "t2", 2)],
              "tern-sub --json over MQTT-SN: QoS 0, 1, 2 from mosquitto_pub and tern-pub: %r" % lines)

        # A predefined topic: the gateway delivers by id 3, tern-sub names it.
        pre_out = os.path.join(work, "pre.out")
        pre_err = os.path.join(work, "pre.err")
        pre = subprocess.Popen([sub_bin, "-L", url + "/sn/pre", "--sn-predefined", "3:sn/pre",
                                "-v", "-C", "1", "-W", "30", "-d"],
                               stdout=open(pre_out, "w"), stderr=open(pre_err, "w"))
        procs.append(pre)
        mqttsn.wait_file(pre_err, r"subscribed", timeout=TIMEOUT)
        run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/pre", "-m", "x"])
        try:
            status = pre.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        with open(pre_out) as f:
            text = f.read()
        check(status == 0 and text == "sn/pre x\n", "tern-sub by predefined id: %r %r" % (status, text))

        # ---- failures
        free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        free.bind(("127.0.0.1", 0))
        dead = free.getsockname()[1]
        free.close()
        start = time.monotonic()
        r = run([pub_bin, "-L", "mqttsn://127.0.0.1:%d/a/b" % dead, "-q", "1", "-m", "x"])
        took = time.monotonic() - start
        check(r.returncode == 1 and "no MQTT-SN gateway" in r.stderr and took < 5,
              "no gateway: exit 1 at once (%.1f s): %s" % (took, r.stderr.strip()))
        # A UDP port that takes datagrams and never answers: -W ends tern-sub (27) while it
        # still waits for CONNACK.
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        start = time.monotonic()
        r = run([sub_bin, "-L", "mqttsn://127.0.0.1:%d/a/b" % silent.getsockname()[1], "-W", "1"])
        took = time.monotonic() - start
        check(r.returncode == 27 and took < 5, "silent gateway, -W 1: status %d after %.1f s" %
              (r.returncode, took))
        check(len(silent.recvfrom(64)[0]) > 0, "the CONNECT reached the silent port")
        silent.close()
        for args, flag in ((["--qos-minus-one", "-m", "x"], "--qos-minus-one"),
                           (["--reconnect", "-l"], "--reconnect"),
                           (["--sn-predefined", "x", "-m", "x"], "--sn-predefined")):
            r = run([pub_bin, "-L", url + "/long/topic"] + args, input="")
            check(r.returncode == 2 and flag in r.stderr, "usage error %s: %d %s" %
                  (flag, r.returncode, r.stderr.strip()))
        r = run([pub_bin, "-t", "a/b", "--qos-minus-one", "-m", "x"])
        check(r.returncode == 2 and "mqttsn://" in r.stderr, "--qos-minus-one needs mqttsn://")
        check(broker.running(), "broker still running")
        for p in procs:
            try:
                p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
    finally:
        mqttsn.tear_down(check, broker, work, procs)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
