#!/usr/bin/python3
"""What tern-broker applies to the MQTT-SN clients of its gateway as to MQTT clients (ACLs,
limits, retained messages, durable sessions), spoken to with exact datagrams over UDP on
127.0.0.1.

One broker: an MQTT-SN listener and a TCP listener on free ports, allow_anonymous true, a
password_file (mosquitto_passwd) with the user obs, an acl_file (anonymous clients: readwrite
open/#, read in/#; everyone: write own/%c/#; obs: read #, write in/#) and max_subscriptions 1.
The MQTT-SN client c1 (anonymous: MQTT-SN has no user name) may subscribe to in/a, not to
secret/# (SUBACK rejected); a second subscription is over max_subscriptions until it
unsubscribes the first. Its QoS 1 PUBLISH to secret/x is acknowledged and dropped, as for
an MQTT 3.1.1 client; a QoS -1 PUBLISH (no identity) is dropped with an acl_file; its
publishes to open/x and own/c1/t reach mosquitto_sub (user obs), in that order and alone.
mosquitto_pub (obs) to in/a reaches c1. A retained QoS 1 PUBLISH from c1 is what
mosquitto_sub gets later (retain flag set), and a new MQTT-SN subscriber gets it with Retain.
A CleanSession 0 client that disconnects finds what mosquitto_pub sent meanwhile when it
connects again from another port (REGISTER first: topic ids are per connection). With
max_connections 2 in the MQTT-SN listener's block, a third client gets CONNACK rejected
(congestion) until one leaves. Every wait is bounded.

usage: mqttsn_rules_test.py path/to/tern-broker
exit:  0 passed, 1 failed, 77 mosquitto clients or mosquitto_passwd missing (skipped)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import harness  # noqa: E402
import mqttsn  # noqa: E402
from mqttsn import Client, wait_file  # noqa: E402

TIMEOUT = 10.0

# max_connections in the MQTT-SN listener's block.
LISTENERS = mqttsn.LISTENERS.replace("protocol mqttsn\n", "protocol mqttsn\nmax_connections 2\n")

ACL = """# anonymous clients: every MQTT-SN client
topic readwrite open/#
topic read in/#
pattern write own/%c/#

user obs
topic read #
topic write in/#
topic write open/#
"""


def register(c, msg_id, topic):
    """REGISTER topic: the REGACK in hex."""
    return c.exchange("%02x0a0000%04x%s" % (6 + len(topic), msg_id, topic.encode().hex()))


def publish_qos1(c, topic_id, msg_id, data):
    return c.exchange("%02x0c20%04x%04x%s" % (7 + len(data), topic_id, msg_id, data.encode().hex()))


def subscribe(c, msg_id, topic, flags="20"):
    return c.exchange("%02x12%s%04x%s" % (5 + len(topic), flags, msg_id, topic.encode().hex()))


def retained_and_durable(check, broker, c, obs, work, clients):
    """Retain from and to MQTT-SN clients; a CleanSession 0 session kept across connections."""
    check(register(c, 20, "open/r") == "070b0006001400", "REGISTER open/r: topic id 6")
    check(c.exchange("0b0c3000060015" + b"kept".hex()) == "070d0006001500",
          "PUBLISH QoS 1 Retain to open/r: PUBACK")
    p = subprocess.run(["mosquitto_sub", *obs, "-t", "open/r", "-F", "%r %q %t %p", "-C", "1",
                        "-W", "5", "-q", "1"], capture_output=True, text=True, timeout=TIMEOUT)
    check(p.stdout.splitlines() == ["1 1 open/r kept"],
          "a later mosquitto_sub gets the retained message, retain flag set: %r" % p.stdout)
    late = Client(broker.sn_port)
    clients.append(late)
    check(late.exchange("08040401001e" + b"c2".hex()) == "030500", "CONNECT c2: CONNACK accepted")
    late.send("0b12200001" + b"open/r".hex())  # SUBSCRIBE open/r QoS 1, MsgId 1
    got = [late.recv(), late.recv()]
    check(got == ["0813200001000100", "0b0c30000100016b657074"],
          "c2 SUBSCRIBE open/r: SUBACK topic id 1, then the retained PUBLISH with Retain: %r" % got)
    late.send("070d0001000100")  # PUBACK
    check(late.exchange("0218") == "0218", "c2 DISCONNECT")

    # d1, CleanSession 0: subscribed, gone, a message meanwhile, back from another port.
    d = Client(broker.sn_port)
    clients.append(d)
    check(d.exchange("080400010" "01e" + b"d1".hex()) == "030500", "CONNECT d1 CleanSession 0")
    check(subscribe(d, 1, "open/d") == "0813200001000100", "d1 SUBSCRIBE open/d QoS 1: topic id 1")
    check(d.exchange("0218") == "0218", "d1 DISCONNECT: its session stays")
    subprocess.run(["mosquitto_pub", *obs, "-t", "open/d", "-m", "queued", "-q", "1"],
                   timeout=TIMEOUT, check=False)
    again = Client(broker.sn_port)
    clients.append(again)
    check(again.exchange("080400010" "01e" + b"d1".hex()) == "030500",
          "CONNECT d1 CleanSession 0 from another port: CONNACK accepted")
    reg = again.recv()
    check(reg == "0c0a00010001" + b"open/d".hex(), "REGISTER open/d (topic id 1) first: %s" % reg)
    pub = again.exchange("070b0001000100")  # REGACK
    check(pub is not None and pub[2:10] == "0c200001" and pub.endswith(b"queued".hex()),
          "then the message queued for the session, QoS 1: %s" % pub)
    if pub is not None:
        again.send("070d0001" + pub[10:14] + "00")  # PUBACK
    # CleanSession 1 ends the durable session: nothing is queued for it any more.
    check(again.exchange("0218") == "0218", "d1 DISCONNECT")
    check(again.exchange("080404010" "01e" + b"d1".hex()) == "030500", "CONNECT d1 CleanSession 1")
    check(again.exchange("0218") == "0218", "d1 DISCONNECT")
    subprocess.run(["mosquitto_pub", *obs, "-t", "open/d", "-m", "lost", "-q", "1"],
                   timeout=TIMEOUT, check=False)
    check(again.exchange("080400010" "01e" + b"d1".hex()) == "030500", "CONNECT d1 CleanSession 0")
    check(again.recv(timeout=1.0) is None, "nothing held for the session CleanSession 1 ended")
    check(again.exchange("0218") == "0218", "d1 DISCONNECT")


def main():
    broker_bin = sys.argv[1]
    for tool in ("mosquitto_sub", "mosquitto_pub", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            print("SKIP: %s not installed" % tool)
            return 77
    check = harness.Checks()
    work = tempfile.mkdtemp(prefix="tern-mqttsn-limits-")
    pw = os.path.join(work, "pw")
    subprocess.run(["mosquitto_passwd", "-c", "-b", pw, "obs", "secret"], check=True,
                   capture_output=True, timeout=TIMEOUT)
    acl = os.path.join(work, "acl")
    with open(acl, "w") as f:
        f.write(ACL)
    broker = mqttsn.start_gateway(broker_bin, work,
                                  "password_file %s\nacl_file %s\nmax_subscriptions 1\n"
                                  "mqttsn_predefined_topic 1 open/pre\n" % (pw, acl),
                                  listeners=LISTENERS)
    obs = ["-h", "127.0.0.1", "-p", str(broker.port), "-u", "obs", "-P", "secret"]
    out = os.path.join(work, "obs.out")
    procs = [subprocess.Popen(["mosquitto_sub", *obs, "-t", "#", "-v", "-q", "1", "-C", "2",
                               "-W", "30", "-i", "obs-sub"],
                              stdout=open(out, "w"), stderr=subprocess.STDOUT)]
    c = Client(broker.sn_port)
    anon = Client(broker.sn_port)
    clients = [c, anon]
    try:
        wait_file(broker.log_path, r"obs-sub")
        time.sleep(0.5)  # its SUBSCRIBE follows CONNECT
        check(c.exchange("08040401001e" + b"c1".hex()) == "030500", "CONNECT c1: CONNACK accepted")

        # Subscriptions: the ACL (read) and max_subscriptions, as for MQTT clients.
        check(subscribe(c, 1, "in/a") == "0813200001000100", "SUBSCRIBE in/a: granted QoS 1")
        check(subscribe(c, 2, "secret/#", "00") == "0813000000000203",
              "SUBSCRIBE secret/# (no read in the ACL): SUBACK rejected")
        check(subscribe(c, 3, "in/b") == "0813000000000303",
              "SUBSCRIBE in/b, a second subscription over max_subscriptions 1: SUBACK rejected")
        check(c.exchange("0914000004" + b"in/a".hex()) == "04150004", "UNSUBSCRIBE in/a: UNSUBACK")
        check(subscribe(c, 5, "in/b") == "0813200002000500",
              "SUBSCRIBE in/b once in/a is gone: granted QoS 1")
        check(c.exchange("0914000006" + b"in/b".hex()) == "04150006", "UNSUBSCRIBE in/b")
        check(subscribe(c, 7, "in/a") == "0813200001000700", "SUBSCRIBE in/a again")

        # Publishes: the ACL (write). Denied first, so that a leak would arrive first.
        check(register(c, 8, "secret/x") == "070b0003000800", "REGISTER secret/x: topic id 3")
        check(publish_qos1(c, 3, 9, "no") == "070d0003000900",
              "PUBLISH QoS 1 to secret/x (no write in the ACL): PUBACK, as for MQTT 3.1.1")
        anon.send("0a0c6100010000" + b"pre".hex())
        check(anon.recv(timeout=0.5) is None, "QoS -1 to predefined id 1 (open/pre): no answer")
        check(register(c, 10, "open/x") == "070b0004000a00", "REGISTER open/x: topic id 4")
        check(publish_qos1(c, 4, 11, "hi") == "070d0004000b00", "PUBLISH QoS 1 to open/x: PUBACK")
        check(register(c, 12, "own/c1/t") == "070b0005000c00", "REGISTER own/c1/t: topic id 5")
        check(publish_qos1(c, 5, 13, "mine") == "070d0005000d00",
              "PUBLISH QoS 1 to own/c1/t (pattern own/%c/#): PUBACK")
        text = wait_file(out, r"own/c1/t mine")
        check(text.splitlines() == ["open/x hi", "own/c1/t mine"],
              "mosquitto_sub (obs) received open/x and own/c1/t only, not secret/x nor the "
              "QoS -1 open/pre: %r" % text)

        # A delivery to the MQTT-SN client, from an MQTT client allowed to write in/#.
        subprocess.run(["mosquitto_pub", *obs, "-t", "in/a", "-m", "down", "-q", "1"],
                       timeout=TIMEOUT, check=False)
        got = c.recv()
        check(got == "0b0c2000010001" + b"down".hex(), "mosquitto_pub's in/a reaches c1: %s" % got)
        c.send("070d0001000100")  # PUBACK
        retained_and_durable(check, broker, c, obs, work, clients)
        check(c.exchange("0218") == "0218", "c1 DISCONNECT")

        # max_connections 2 in the MQTT-SN listener block: a third client gets CONNACK
        # rejected (congestion) until one of the two leaves.
        two = [Client(broker.sn_port) for _ in range(3)]
        clients.extend(two)
        for k, x in enumerate(two[:2]):
            check(x.exchange("08040401001e" + ("m%d" % k).encode().hex()) == "030500",
                  "CONNECT m%d: CONNACK accepted" % k)
        check(two[2].exchange("08040401001e" + b"m2".hex()) == "030501",
              "CONNECT m2, a third client over max_connections 2: CONNACK rejected, congestion")
        check(two[0].exchange("0218") == "0218", "m0 DISCONNECT")
        check(two[2].exchange("08040401001e" + b"m2".hex()) == "030500",
              "CONNECT m2 again once m0 left: CONNACK accepted")
        check("MQTT-SN CONNECT from 127.0.0.1:" in broker.log() and
              "refused: max_connections (2) reached" in broker.log(), "the refusal is logged")
        check(broker.running(), "tern-broker still running")
        for p in procs:
            try:
                p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
    finally:
        mqttsn.tear_down(check, broker, work, procs, clients)
    return check.exit_status()


if __name__ == "__main__":
    sys.exit(main())
