#!/usr/bin/python3
"""tern-broker's MQTT-SN gateway over UDP on 127.0.0.1, spoken to with exact datagrams,
with mosquitto_sub, tern-sub and mosquitto_pub as MQTT clients on the same broker.

One broker (a TCP listener and an MQTT-SN listener, both on free ports, a predefined topic
id): SEARCHGW and GWINFO; CONNECT, REGISTER, PUBLISH QoS 0 and 1 received by mosquitto_sub
and tern-sub; QoS -1 to a predefined id and QoS 0 to a short name from a client without a
connection; SUBSCRIBE then a mosquitto_pub message arriving as REGISTER + PUBLISH, PUBACK;
a malformed datagram dropped without harm; PINGREQ; DISCONNECT. Then, with T_RETRY 2 s and
N_RETRY 1: periodic ADVERTISE with the configured gateway id; a sleeping client that wakes with
PINGREQ to the messages mosquitto_pub sent meanwhile, a QoS 1 one resent with DUP until its
PUBACK, then PINGRESP; a client that never acknowledges is lost and mosquitto_sub gets its Will.
Every wait is bounded.

usage: broker_mqttsn_test.py path/to/tern-broker path/to/tern-sub
exit:  0 passed, 1 failed, 77 mosquitto clients missing (skipped)
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402
from mqttsn import Client, wait_file  # noqa: E402
import mqttsn  # noqa: E402

TIMEOUT = 10.0


def sleeping_client(check, sn_port, broker):
    """DISCONNECT with a Duration, messages from mosquitto_pub held, PINGREQ to wake."""
    c = Client(sn_port)
    check(c.exchange("080404010" "01e736c") == "030500", "CONNECT sl: CONNACK accepted")
    check(c.exchange("0c12200001736c6565702f74") == "0813200001000100",
          "SUBSCRIBE sleep/t QoS 1: topic id 1")
    check(c.exchange("0418001e") == "0218", "DISCONNECT Duration 30: DISCONNECT, asleep")
    for qos, msg in (("1", "m1"), ("0", "m0")):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sleep/t",
                        "-m", msg, "-q", qos], timeout=TIMEOUT, check=False)
    check(c.recv(timeout=1.0) is None, "nothing sent to the sleeping client")
    # PINGREQ with the client id: both messages in order, PINGRESP not yet (QoS 1 unanswered).
    c.send("0416736c")
    got = [c.recv(), c.recv()]
    check(got == ["090c20000100016d31", "090c000001000" "06d30"], "woken: m1 (QoS 1), m0: %r" % got)
    check(c.recv(timeout=0.5) is None, "no PINGRESP while m1 is unacknowledged")
    # No PUBACK: m1 again after T_RETRY (2 s), DUP set; its PUBACK brings PINGRESP.
    again = c.recv(timeout=5.0)
    check(again == "090ca00001000" "16d31", "m1 resent with DUP: %s" % again)
    check(c.exchange("070d0001000100") == "0217", "PUBACK: PINGRESP, asleep again")
    check(c.exchange("0218") == "0218", "DISCONNECT from asleep: DISCONNECT")
    c.close()


def lost_client(check, sn_port, broker, work, procs):
    """A client that never acknowledges is lost after N_RETRY; its Will is published."""
    will_out = os.path.join(work, "will.out")
    procs.append(subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "will/sn", "-v",
         "-C", "1", "-W", "30", "-i", "will-sub"],
        stdout=open(will_out, "w"), stderr=subprocess.STDOUT))
    wait_file(broker.log_path, r"will-sub")
    time.sleep(0.5)
    c = Client(sn_port)
    # CONNECT l3 with the Will flag, keep-alive 30; WILLTOPIC will/sn; WILLMSG gone.
    check(c.exchange("0804" "0c01001e6c33") == "0206", "CONNECT with Will: WILLTOPICREQ")
    check(c.exchange("0a0700" "77696c6c2f736e") == "0208", "WILLTOPIC: WILLMSGREQ")
    check(c.exchange("0609" "676f6e65") == "030500", "WILLMSG: CONNACK accepted")
    check(c.exchange("0b122000016c6f73742f74") == "0813200001000100", "SUBSCRIBE lost/t")
    start = time.monotonic()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "lost/t",
                    "-m", "z", "-q", "1"], timeout=TIMEOUT, check=False)
    got = [c.recv(), c.recv(), c.recv()]
    check(got == ["080c20000100017a", "080ca0000100017a", "0218"],
          "PUBLISH, one retransmission, then DISCONNECT (lost): %r" % got)
    took = time.monotonic() - start
    check(3.5 <= took <= 8.0, "lost after 2 x T_RETRY: %.1f s" % took)
    text = wait_file(will_out, r"will/sn gone")
    check("will/sn gone" in text, "mosquitto_sub received the Will: %r" % text)
    c.close()


def main():
    broker_bin, sub_bin = sys.argv[1], sys.argv[2]
    for tool in ("mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed" % tool)
            return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-mqttsn-")
    advertised = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    advertised.bind(("127.0.0.1", 0))
    advertised.settimeout(TIMEOUT)
    broker = mqttsn.start_gateway(broker_bin, work,
                                  "mqttsn_predefined_topic 7 sn/pre\n"
                                  "mqttsn_gateway_id 5\n"
                                  "mqttsn_retry_interval 2\n"
                                  "mqttsn_retry_count 1\n"
                                  "mqttsn_advertise 1 127.0.0.1 %d\n" % advertised.getsockname()[1])
    sn_port = broker.sn_port
    procs = []
    try:
        # SEARCHGW from anyone: GWINFO with gateway id 5 (mqttsn_gateway_id).
        probe = Client(sn_port)
        check(probe.exchange("030101") == "030205", "SEARCHGW answered with GWINFO gateway 5")
        # ADVERTISE every second: gateway id 5, Duration 1.
        ads = []
        try:
            for _ in range(2):
                ads.append(advertised.recvfrom(64)[0].hex())
        except socket.timeout:
            pass
        check(ads == ["0500050001"] * 2, "two ADVERTISE received: %r" % ads)

        # MQTT subscribers: mosquitto_sub and tern-sub on sn/#, three messages each.
        mos_out = os.path.join(work, "mosquitto_sub.out")
        tern_out = os.path.join(work, "tern_sub.out")
        procs.append(subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/#", "-v",
             "-q", "1", "-C", "3", "-W", "30", "-i", "mos-sub"],
            stdout=open(mos_out, "w"), stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen(
            [sub_bin, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "sn/#", "-v", "-q", "1",
             "-C", "3", "-W", "30", "-i", "tern-sub"],
            stdout=open(tern_out, "w"), stderr=subprocess.STDOUT))
        subscribed = wait_file(broker.log_path, r"tern-sub") and \
            wait_file(broker.log_path, r"mos-sub")
        check("mos-sub" in subscribed and "tern-sub" in subscribed, "both MQTT subscribers connected")
        time.sleep(0.5)  # their SUBSCRIBE follows CONNECT

        # CONNECT "sn1", clean, keep-alive 30: CONNACK accepted.
        c = Client(sn_port)
        check(c.exchange("0904040100" "1e" "736e31") == "030500", "CONNECT sn1: CONNACK accepted")
        # REGISTER sn/a (MsgId 1): REGACK topic id 1.
        check(c.exchange("0a0a00000001736e2f61") == "070b0001000100", "REGISTER sn/a: topic id 1")
        # PUBLISH QoS 1 "hello" to topic id 1, MsgId 2: PUBACK accepted.
        check(c.exchange("0c0c2000010002" + b"hello".hex()) == "070d0001000200",
              "PUBLISH QoS 1: PUBACK accepted")
        # QoS -1 from a socket that never connected, to predefined id 7 (sn/pre).
        anon = Client(sn_port)
        anon.send("0a0c6100070000" + b"pre".hex())
        check(anon.recv(timeout=0.5) is None, "QoS -1 PUBLISH gets no answer")
        # QoS 0 to a topic id that is not registered: PUBACK invalid topic id.
        check(c.exchange("0a0c0000090000" + b"zzz".hex()) == "070d0009000002",
              "unknown topic id: PUBACK invalid topic id")
        # QoS 0 "last" to sn/a.
        c.send("0b0c0000010000" + b"last".hex())

        for name, path in (("mosquitto_sub", mos_out), ("tern-sub", tern_out)):
            text = wait_file(path, r"sn/a last")
            check(text.splitlines()[:3] == ["sn/a hello", "sn/pre pre", "sn/a last"],
                  "%s received hello, pre (QoS -1) and last in order: %r" % (name, text))

        # A malformed datagram (Length 5, 2 octets) is dropped; the client still answers.
        c.send("0516")
        check(c.exchange("0216") == "0217", "malformed datagram dropped, then PINGREQ: PINGRESP")

        # SUBSCRIBE QoS 1 to back/t (MsgId 3): SUBACK QoS 1 with a new topic id (2).
        check(c.exchange("0b122000036261636b2f74") == "0813200002000300",
              "SUBSCRIBE back/t: SUBACK QoS 1, topic id 2")
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "back/t",
                        "-m", "from-mqtt", "-q", "1"], timeout=TIMEOUT, check=False)
        got = c.recv()
        # back/t has topic id 2 already (SUBACK), so no REGISTER: PUBLISH QoS 1, MsgId 1.
        check(got == "100c20000200016672" "6f6d2d6d717474", "mosquitto_pub message arrives: %s" % got)
        c.send("070d0002000100")  # PUBACK
        # SUBSCRIBE to the wildcard filter x/#: a message on x/y needs REGISTER first.
        check(c.exchange("0812000004782f23") == "0813000000000400", "SUBSCRIBE x/#: SUBACK topic id 0")
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "x/y",
                        "-m", "w"], timeout=TIMEOUT, check=False)
        reg = c.recv()
        check(reg == "090a00030001782f79", "REGISTER x/y (topic id 3) from the gateway: %s" % reg)
        check(c.recv(timeout=0.5) is None, "the PUBLISH waits for REGACK")
        check(c.exchange("070b0003000100") == "080c000003000077", "after REGACK: PUBLISH to topic id 3")

        check(c.exchange("0218") == "0218", "DISCONNECT answered with DISCONNECT")

        sleeping_client(check, sn_port, broker)
        lost_client(check, sn_port, broker, work, procs)
        check(broker.running(), "broker still running")
        for p in procs:
            try:
                p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
        c.close()
        anon.close()
        probe.close()
        advertised.close()
    finally:
        mqttsn.tear_down(check, broker, work, procs)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
