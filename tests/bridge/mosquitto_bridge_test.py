#!/usr/bin/env python3
"""Mosquitto's own bridge into tern-broker: a site Mosquitto with a `connection` block whose
remote is tern-broker, in its default form (try_private true, so a 3.1.1 bridge connects
with protocol level 0x84; notifications on) and with bridge_protocol_version mqttv50.

Checked: the bridge connects and tern-broker logs it as a bridge; QoS 1 both ways on
`site/#`, each message exactly once on each side (no loop back through the bridge);
a retained message on tern-broker reaches Mosquitto still retained (Retain As Published);
while Mosquitto is down, QoS 1 messages published on tern-broker wait in the 3.1.1 bridge's
session there and reach Mosquitto's persistent subscriber after it comes back (its 5.0
bridge asks for no Session Expiry, so there the session ends with the connection).

usage: mosquitto_bridge_test.py BIN_DIR 311|5
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, MOSQUITTO, WORK, Broker, Client, check, done,  # noqa: E402
                            free_port, spawn, stop, wait_for, wait_port)

BIN, VERSION = sys.argv[1], sys.argv[2]
PROTOCOL = {"311": "mqttv311", "5": "mqttv50"}[VERSION]
if not os.path.exists(MOSQUITTO):
    print("SKIP: mosquitto not installed")
    sys.exit(77)

tern = Broker("tern", BIN, args=["-v"])
# max_inflight_messages stays above 0: a 5.0 bridge sends it as its Receive Maximum, and 0
# there is a Protocol Error (tern-broker refuses such a CONNECT, and logs why). `user root`
# keeps Mosquitto (started as root) able to save its store in the test's private directory.
site_port = free_port()
site_conf = os.path.join(WORK, "site.conf")
with open(site_conf, "w") as f:
    f.write(f"""listener {site_port} {HOST}
allow_anonymous true
persistence true
persistence_location {WORK}/
max_queued_messages 10000
max_inflight_messages 100
user root
connection to-tern
address {HOST}:{tern.port}
remote_clientid site-bridge-{VERSION}
bridge_protocol_version {PROTOCOL}
cleansession false
restart_timeout 1
keepalive_interval 10
topic site/# both 1
""")
site_log = os.path.join(WORK, "site.log")


def start_site():
    proc = spawn([MOSQUITTO, "-c", site_conf, "-v"],
                 stdout=open(site_log, "a"), stderr=open(site_log, "a"))
    if not wait_port(site_port):
        sys.exit("FAIL: mosquitto did not start")
    return proc


def tern_log():
    with open(tern.log_path, errors="replace") as f:
        return f.read()


def bridge_connections():
    return tern_log().count(f"client site-bridge-{VERSION} connected")


site = start_site()
check("Mosquitto's bridge connects to tern-broker",
      wait_for(lambda: bridge_connections() >= 1, 15), tern_log()[-2000:])
if VERSION == "311":
    check("tern-broker sees a bridge (protocol level 0x84, try_private)",
          "bridge" in tern_log().split(f"client site-bridge-{VERSION} connected")[1].split("\n")[0])
# Mosquitto's persistent subscriber is a 3.1.1 client (Clean Session 0) in both variants, so
# it keeps its subscription while Mosquitto restarts.
t_sub = Client(tern.port, VERSION, f"tsub-{VERSION}")
t_sub.subscribe("site/#", 1)
m_sub = Client(site_port, "311", f"msub-{VERSION}", clean=False)
m_sub.subscribe("site/#", 1)
t_pub = Client(tern.port, VERSION, f"tpub-{VERSION}")


def probe_through(seconds=15):
    """Publish probes on tern-broker until one reaches Mosquitto: the bridge has subscribed."""
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        t_pub.publish(f"site/probe/{n}", b"p", qos=1)
        n += 1
        if wait_for(lambda: any(t.startswith("site/probe/") for (t, *_r) in m_sub.got), 0.3):
            return True
    return False


check("the bridge's subscription on tern-broker is in place", probe_through())

# Mosquitto -> tern-broker.
m_pub = Client(site_port, VERSION, f"mpub-{VERSION}")
for i in range(50):
    m_pub.publish(f"site/m/{i}", f"m{i}".encode(), qos=1)
want_m = [f"site/m/{i}" for i in range(50)]


def topics(c, prefix):
    return [t for (t, *_rest) in c.got if t.startswith(prefix)]


check("50 QoS 1 messages published on Mosquitto reach tern-broker once each, in order",
      wait_for(lambda: len(topics(t_sub, "site/m/")) >= 50, 15)
      and topics(t_sub, "site/m/") == want_m, f"got {len(topics(t_sub, 'site/m/'))}")

# tern-broker -> Mosquitto.
for i in range(50):
    t_pub.publish(f"site/t/{i}", f"t{i}".encode(), qos=1)
want_t = [f"site/t/{i}" for i in range(50)]
check("50 QoS 1 messages published on tern-broker reach Mosquitto once each, in order",
      wait_for(lambda: len(topics(m_sub, "site/t/")) >= 50, 15)
      and topics(m_sub, "site/t/") == want_t, f"got {len(topics(m_sub, 'site/t/'))}")
time.sleep(1.0)  # anything that loops would come back within this
check("no loop: Mosquitto's subscriber has its own 50 once, tern-broker's its own 50 once",
      topics(m_sub, "site/m/") == want_m and topics(t_sub, "site/t/") == want_t,
      f"mosquitto side {len(topics(m_sub, 'site/m/'))}, tern side {len(topics(t_sub, 'site/t/'))}")

# A retained message on tern-broker stays retained on Mosquitto.
t_pub.publish("site/r/state", b"on", qos=1, retain=True)
check("the retained message is forwarded", wait_for(
    lambda: any(t == "site/r/state" for (t, *_r) in m_sub.got), 10))
late = Client(site_port, VERSION, f"late-{VERSION}")
late.subscribe("site/r/#", 1)
check("a later subscriber on Mosquitto gets it as retained (Retain As Published on the bridge)",
      wait_for(lambda: any(t == "site/r/state" and r for (t, _p, _q, r, _x) in late.got), 10),
      repr(late.got))
late.close()
t_pub.publish("site/r/state", b"", qos=1, retain=True)

# Mosquitto down: tern-broker keeps the bridge's session (cleansession false) and queues.
m_sub.close()
stop(site, signal.SIGTERM)
check("tern-broker notices the bridge is gone",
      wait_for(lambda: f"client site-bridge-{VERSION} closed" in tern_log(), 10), tern_log()[-1500:])
for i in range(30):
    t_pub.publish(f"site/q/{i}", f"q{i}".encode(), qos=1)
site = start_site()
check("the bridge connects again", wait_for(lambda: bridge_connections() >= 2, 15),
      tern_log()[-1500:])
m_sub = Client(site_port, "311", f"msub-{VERSION}", clean=False)
want_q = [f"site/q/{i}" for i in range(30)]
if VERSION == "311":
    check("it resumes its session on tern-broker (Clean Session 0)",
          "session resumed" in tern_log().split(f"client site-bridge-{VERSION} connected")[-1]
          .split("\n")[0], tern_log()[-1500:])
    check("the 30 messages queued on tern-broker during the outage reach Mosquitto's subscriber",
          wait_for(lambda: len(topics(m_sub, "site/q/")) >= 30, 15)
          and topics(m_sub, "site/q/") == want_q, f"got {topics(m_sub, 'site/q/')}")
else:
    # Mosquitto 2.0.11's 5.0 bridge sends Clean Start 0 without a Session Expiry Interval:
    # by MQTT 5.0 (§3.1.2.11.2) its session ends with the connection, so nothing is kept.
    check("a 5.0 bridge without Session Expiry starts a new session (MQTT 5.0 §3.1.2.11.2)",
          "session resumed" not in tern_log().split(f"client site-bridge-{VERSION} connected")[-1]
          .split("\n")[0], tern_log()[-1500:])
    ok = probe_through()
    t_pub.publish("site/after/0", b"a", qos=1)
    check("and forwards again once it has subscribed",
          ok and wait_for(lambda: topics(m_sub, "site/after/") == ["site/after/0"], 10))

for c in (t_sub, m_sub, m_pub, t_pub):
    c.close()
check("tern-broker is still running", tern.proc.poll() is None)
done()
