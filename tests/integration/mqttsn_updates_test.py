#!/usr/bin/python3
"""tern-broker's MQTT-SN gateway over UDP on 127.0.0.1, spoken to with exact datagrams:
what a client may change after CONNECT, and where it may come from.

- Will updates: a client changes its Will with WILLTOPICUPD and WILLMSGUPD, another deletes
  its Will with the empty WILLTOPICUPD; both are then lost (keep-alive) and mosquitto_sub and
  tern-sub receive only the updated Will.
- A sleeping client wakes from another UDP port: PINGREQ with its client id gets it the
  messages mosquitto_pub sent meanwhile, then PINGRESP; CONNECT from a third port makes it
  active there with what was held; nothing goes to the old ports. An active client does not
  move.
- The forwarder encapsulation: two wireless nodes behind one UDP port are two clients (their
  own topic ids), every answer wrapped for its node; node 0001's publish reaches
  mosquitto_sub, mosquitto_pub's message reaches node 0002; SEARCHGW through the forwarder;
  a wrapped malformed message dropped; the forwarder's own unwrapped client beside them.
- SIGHUP with changed mqttsn_* options: applied to the running gateway (new gateway id in
  GWINFO, a new predefined topic id, T_RETRY and N_RETRY from their next use while the
  retransmission in flight keeps its time, the socket's receive buffer); mqttsn_advertise
  named as needing a restart.

Every wait is bounded.

usage: mqttsn_updates_test.py path/to/tern-broker path/to/tern-sub
exit:  0 passed, 1 failed, 77 mosquitto clients missing (skipped)
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402
from mqttsn import Client, wait_file  # noqa: E402
import mqttsn  # noqa: E402

TIMEOUT = 10.0


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


def mosquitto_pub(broker, topic, msg, qos):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic,
                    "-m", msg, "-q", qos], timeout=TIMEOUT, check=False)


def wake_elsewhere(check, sn_port, broker):
    """A sleeping client wakes from another UDP port: PINGREQ with its client id, CONNECT."""
    a = Client(sn_port)
    check(a.exchange("08040401001e" + b"zz".hex()) == "030500", "CONNECT zz: CONNACK accepted")
    check(a.exchange("0c12200001" + b"sleep/n".hex()) == "0813200001000100",
          "SUBSCRIBE sleep/n QoS 1: topic id 1")
    check(a.exchange("0418001e") == "0218", "DISCONNECT Duration 30: asleep")
    mosquitto_pub(broker, "sleep/n", "m1", "1")
    mosquitto_pub(broker, "sleep/n", "m0", "0")
    # PINGREQ with the client id from a new port: the held messages go there.
    b = Client(sn_port)
    b.send("0416" + b"zz".hex())
    got = [b.recv(), b.recv()]
    check(got == ["090c20000100016d31", "090c00000100006d30"],
          "woken at the new port: m1 (QoS 1), m0: %r" % got)
    check(b.exchange("070d0001000100") == "0217", "PUBACK from the new port: PINGRESP")
    check(a.recv(timeout=0.3) is None, "nothing at the old port")
    # Asleep again; a CONNECT from a third port makes it active there with what was held.
    mosquitto_pub(broker, "sleep/n", "m2", "0")
    c = Client(sn_port)
    c.send("08040401001e" + b"zz".hex())
    got = [c.recv(), c.recv()]
    check(got == ["030500", "090c00000100006d32"], "CONNECT from a third port: CONNACK, m2: %r" % got)
    check(c.exchange("0216") == "0217", "active at the third port: PINGREQ, PINGRESP")
    check(b.recv(timeout=0.3) is None, "nothing at the second port")
    check(c.exchange("0218") == "0218", "DISCONNECT: DISCONNECT")
    # An active client does not move: a PINGREQ with its id from elsewhere is dropped.
    d = Client(sn_port)
    check(d.exchange("08040401001e" + b"yy".hex()) == "030500", "CONNECT yy: CONNACK accepted")
    e = Client(sn_port)
    e.send("0416" + b"yy".hex())
    check(e.recv(timeout=0.5) is None, "PINGREQ yy from another port while active: dropped")
    check(d.exchange("0216") == "0217", "yy still answers at its own port")
    check(d.exchange("0218") == "0218", "yy DISCONNECT")
    for s in (a, b, c, d, e):
        s.close()


def wrap(node, message_hex):
    """A wireless node's message as its forwarder relays it (MQTT-SN 1.2, 5.5): Length of
    the header, 0xFE, Ctrl 0, the Wireless Node Id, then the message."""
    return "%02x" % (3 + len(node)) + "fe00" + node.hex() + message_hex


def forwarder(check, sn_port, broker, work, procs):
    """Two wireless nodes behind one forwarder (one UDP port) and the forwarder itself."""
    out = os.path.join(work, "fw.out")
    procs.append(subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "fw/#", "-v",
         "-q", "1", "-C", "1", "-W", "30", "-i", "fw-sub"],
        stdout=open(out, "w"), stderr=subprocess.STDOUT))
    wait_file(broker.log_path, r"fw-sub")
    time.sleep(0.5)
    n1, n2, n3 = b"\x00\x01", b"\x00\x02", b"\x00\x03"
    f = Client(sn_port)
    check(f.exchange(wrap(n1, "080404010" "01e6e31")) == wrap(n1, "030500"),
          "node 0001 CONNECT n1: CONNACK wrapped for node 0001")
    check(f.exchange(wrap(n2, "080404010" "01e6e32")) == wrap(n2, "030500"),
          "node 0002 CONNECT n2: CONNACK wrapped for node 0002")
    check(f.exchange("080404010" "01e6677") == "030500", "the forwarder's own CONNECT fw: CONNACK")
    # Per-node state: both REGISTER / SUBSCRIBE and both get topic id 1.
    check(f.exchange(wrap(n1, "0a0a00000001" + b"fw/a".hex())) == wrap(n1, "070b0001000100"),
          "node 0001 REGISTER fw/a: topic id 1")
    check(f.exchange(wrap(n2, "0912000001" + b"fw/b".hex())) == wrap(n2, "0813000001000100"),
          "node 0002 SUBSCRIBE fw/b: topic id 1")
    check(f.exchange(wrap(n1, "090c2000010002" + b"hi".hex())) == wrap(n1, "070d0001000200"),
          "node 0001 PUBLISH QoS 1 hi: PUBACK wrapped")
    text = wait_file(out, r"fw/a hi")
    check(text.splitlines()[:1] == ["fw/a hi"], "mosquitto_sub received node 0001's hi: %r" % text)
    mosquitto_pub(broker, "fw/b", "x", "0")
    got = f.recv()
    check(got == wrap(n2, "080c0000010000" + b"x".hex()),
          "mosquitto_pub's fw/b reaches node 0002, wrapped: %s" % got)
    # SEARCHGW through the forwarder: GWINFO wrapped for that node.
    check(f.exchange(wrap(n3, "030101")) == wrap(n3, "030201"), "node 0003 SEARCHGW: GWINFO wrapped")
    # An encapsulation of a malformed message is dropped; the nodes still answer.
    f.send("05fe000001" "0516")
    check(f.exchange(wrap(n1, "0216")) == wrap(n1, "0217"), "malformed dropped; node 0001 PINGRESP")
    check(f.exchange("0216") == "0217", "the forwarder's own client: PINGRESP, not wrapped")
    for n in (n1, n2):
        check(f.exchange(wrap(n, "0218")) == wrap(n, "0218"), "node %s DISCONNECT" % n.hex())
    check(f.exchange("0218") == "0218", "the forwarder's own DISCONNECT")
    f.close()


def reload_applies(check, broker, work, procs):
    """SIGHUP with changed mqttsn_* options: applied to the running gateway (a retransmission
    already scheduled keeps its time), mqttsn_advertise named as needing a restart."""
    sn_port = broker.sn_port
    out = os.path.join(work, "reload.out")
    procs.append(subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "x/y", "-v",
         "-C", "1", "-W", "30", "-i", "rl-sub"], stdout=open(out, "w"), stderr=subprocess.STDOUT))
    wait_file(broker.log_path, r"rl-sub")
    time.sleep(0.5)  # its SUBSCRIBE follows CONNECT
    # A QoS 1 delivery in flight under the old T_RETRY (2 s) and N_RETRY (1).
    r = Client(sn_port)
    check(r.exchange("08040401001e" + b"rl".hex()) == "030500", "CONNECT rl: CONNACK accepted")
    check(r.exchange("0912200001" + b"rl/t".hex()) == "0813200001000100",
          "SUBSCRIBE rl/t QoS 1: topic id 1")
    mosquitto_pub(broker, "rl/t", "r", "1")
    first = r.recv()
    t0 = time.monotonic()
    check(first == "080c200001000172", "rl gets PUBLISH QoS 1 (MsgId 1): %s" % first)
    broker.rewrite_conf("mqttsn_gateway_id 7\n"
                        "mqttsn_retry_interval 6\n"
                        "mqttsn_retry_count 2\n"
                        "mqttsn_receive_buffer 65536\n"
                        "mqttsn_predefined_topic 9 x/y\n"
                        "mqttsn_advertise 60 127.0.0.1 9\n")
    broker.proc.send_signal(signal.SIGHUP)
    text = wait_file(broker.log_path, r"reloaded .*")
    line = re.search(r"reloaded .*", text)
    check(line is not None and line.group(0).endswith(
        "applied mqttsn_gateway_id, mqttsn_retry_interval, mqttsn_retry_count, "
        "mqttsn_receive_buffer, mqttsn_predefined_topic; "
        "changed but needing a restart: mqttsn_advertise"),
          "SIGHUP: the mqttsn_* options applied, mqttsn_advertise needs a restart: %r"
          % (line.group(0) if line else text[-300:]))
    # The resend already scheduled keeps the old T_RETRY (2 s, not 6); the next one waits
    # the new T_RETRY, and N_RETRY 2 allows it (with N_RETRY 1, rl would be lost then).
    again = r.recv(timeout=6.0)
    t1 = time.monotonic()
    check(again == "080ca00001000172" and t1 - t0 < 4.0,
          "the resend in flight keeps T_RETRY 2 s: %s after %.1f s" % (again, t1 - t0))
    third = r.recv(timeout=9.0)
    t2 = time.monotonic()
    check(third == "080ca00001000172" and t2 - t1 >= 5.5,
          "then T_RETRY 6 s and N_RETRY 2: a second resend after %.1f s: %s" % (t2 - t1, third))
    r.send("070d0001000100")  # PUBACK
    check(r.exchange("0218") == "0218", "rl DISCONNECT")
    r.close()
    probe = Client(sn_port)
    check(probe.exchange("030101") == "030207", "SEARCHGW: GWINFO with the new gateway id 7")
    # QoS -1 to the new predefined id 9 (x/y): mosquitto_sub receives it.
    probe.send("0a0c6100090000" + b"neu".hex())
    text = wait_file(out, r"x/y neu")
    check(text.splitlines()[:1] == ["x/y neu"], "QoS -1 to the new predefined id 9: %r" % text)
    probe.close()
    socks = mqttsn.udp_sockets(broker.proc.pid)
    if socks is not None:
        want = mqttsn.granted_receive_buffer(65536)
        check([x["rb"] for x in socks if x["port"] == sn_port] == [want],
              "mqttsn_receive_buffer 65536 applied to the socket (rb %d): %r" % (want, socks))


def main():
    broker_bin, sub_bin = sys.argv[1], sys.argv[2]
    for tool in ("mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed" % tool)
            return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-mqttsn-upd-")
    broker = mqttsn.start_gateway(broker_bin, work,
                                  "mqttsn_retry_interval 2\n"
                                  "mqttsn_retry_count 1\n")
    sn_port = broker.sn_port
    procs = []
    try:
        will_updates(check, sn_port, broker, sub_bin, work, procs)
        wake_elsewhere(check, sn_port, broker)
        forwarder(check, sn_port, broker, work, procs)
        reload_applies(check, broker, work, procs)
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
