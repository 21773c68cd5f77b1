#!/usr/bin/python3
"""tern-broker's MQTT-SN gateway over UDP on 127.0.0.1, spoken to with exact datagrams:
what a client may change after CONNECT, and where it may come from.

- Will updates: a client changes its Will with WILLTOPICUPD and WILLMSGUPD, another deletes
  its Will with the empty WILLTOPICUPD; both are then lost (keep-alive) and mosquitto_sub and
  tern-sub receive only the updated Will.

Every wait is bounded.

usage: mqttsn_updates_test.py path/to/tern-broker path/to/tern-sub
exit:  0 passed, 1 failed, 77 mosquitto clients missing (skipped)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from broker_mqttsn_test import Client, wait_file  # noqa: E402

TIMEOUT = 10.0


def start_broker(binary, work):
    conf = os.path.join(work, "tern.conf")
    with open(conf, "w") as f:
        f.write("allow_anonymous true\n"
                "listener 0 127.0.0.1\n"
                "protocol mqttsn\n"
                "listener 0 127.0.0.1\n"
                "mqttsn_retry_interval 2\n"
                "mqttsn_retry_count 1\n")
    log_path = os.path.join(work, "broker.log")
    log = open(log_path, "w+")
    proc = subprocess.Popen([binary, "-c", conf, "-v"], stdout=subprocess.DEVNULL, stderr=log)
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        log.seek(0)
        line = log.readline()
        tcp = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        udp = re.search(r"MQTT-SN 127\.0\.0\.1:(\d+)", line)
        if tcp and udp:
            return harness.Broker("tern-broker", proc, int(tcp.group(1)), log_path), int(udp.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    with open(log_path) as f:
        print(f.read())
    raise RuntimeError("tern-broker did not report its ports")


def will_updates(check, sn_port, broker, sub_bin, work, procs):
    """WILLTOPICUPD + WILLMSGUPD change the Will, the empty WILLTOPICUPD deletes one."""
    outs = {}
    for name, argv in (("mosquitto_sub", ["mosquitto_sub", "-i", "will-mos"]),
                       ("tern-sub", [sub_bin, "-i", "will-tern"])):
        outs[name] = os.path.join(work, name + ".will")
        procs.append(subprocess.Popen(
            argv + ["-h", "127.0.0.1", "-p", str(broker.port), "-t", "will/#", "-v", "-q", "1",
                    "-C", "1", "-W", "30"],
            stdout=open(outs[name], "w"), stderr=subprocess.STDOUT))
    wait_file(broker.log_path, r"will-mos")
    wait_file(broker.log_path, r"will-tern")
    time.sleep(0.5)  # their SUBSCRIBE follows CONNECT

    # wb: CONNECT with the Will "b" on will/old, keep-alive 2 s; then the empty WILLTOPICUPD.
    b = Client(sn_port)
    check(b.exchange("0804" "0c0100027762") == "0206", "CONNECT wb with Will: WILLTOPICREQ")
    check(b.exchange("0b0700" + b"will/old".hex()) == "0208", "wb WILLTOPIC will/old: WILLMSGREQ")
    check(b.exchange("0309" + b"b".hex()) == "030500", "wb WILLMSG b: CONNACK accepted")
    check(b.exchange("021a") == "031b00", "wb empty WILLTOPICUPD: WILLTOPICRESP accepted")
    # wa: CONNECT with the Will "old" on will/old, keep-alive 4 s; then a new topic (QoS 1)
    # and a new message.
    a = Client(sn_port)
    check(a.exchange("0804" "0c0100047761") == "0206", "CONNECT wa with Will: WILLTOPICREQ")
    check(a.exchange("0b0700" + b"will/old".hex()) == "0208", "wa WILLTOPIC will/old: WILLMSGREQ")
    check(a.exchange("0509" + b"old".hex()) == "030500", "wa WILLMSG old: CONNACK accepted")
    check(a.exchange("0b1a20" + b"will/new".hex()) == "031b00",
          "wa WILLTOPICUPD QoS 1 will/new: WILLTOPICRESP accepted")
    check(a.exchange("051c" + b"new".hex()) == "031d00", "wa WILLMSGUPD new: WILLMSGRESP accepted")
    check(a.exchange("0b1a60" + b"will/bad".hex()) == "031b03",
          "wa WILLTOPICUPD with QoS -1: WILLTOPICRESP rejected (not supported)")
    # Both fall silent: wb is lost first (1.5 x 2 s), wa next (1.5 x 4 s).
    check(b.recv(timeout=8.0) == "0218", "wb lost: DISCONNECT")
    check(a.recv(timeout=8.0) == "0218", "wa lost: DISCONNECT")
    for name, path in outs.items():
        text = wait_file(path, r"will/new new")
        check(text.splitlines()[:1] == ["will/new new"],
              "%s received the updated Will of wa only: %r" % (name, text))
    a.close()
    b.close()


def main():
    broker_bin, sub_bin = sys.argv[1], sys.argv[2]
    for tool in ("mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed" % tool)
            return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-mqttsn-upd-")
    broker, sn_port = start_broker(broker_bin, work)
    procs = []
    try:
        will_updates(check, sn_port, broker, sub_bin, work, procs)
        check(broker.running(), "broker still running")
        for p in procs:
            try:
                p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        broker.stop()
        if check.failures:
            print(broker.log())
        shutil.rmtree(work, ignore_errors=True)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
