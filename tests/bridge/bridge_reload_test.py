#!/usr/bin/python3
"""tern-bridge -c FILE reloads on SIGHUP while QoS 1 traffic flows; loopback, free ports.

    bridge_reload_test.py BIN_DIR tern        local and remote tern-broker, MQTT 5.0
    bridge_reload_test.py BIN_DIR mosquitto   local tern-broker, remote Mosquitto, MQTT 3.1.1

A publisher sends QoS 1 messages on a/N (always bridged `out`) and b/N (bridged only after the
first reload) to the local broker every few milliseconds for the whole test. Checked:
1. new rules (b/# out added, c/# in replaced by d/# in) take effect without any reconnect:
   b/ messages cross, d/ messages come in, c/ is unsubscribed at the remote broker (a c/
   message published there reaches the bridge no more: dropped_no_route stays 0);
2. a new remote_username reconnects the remote side only (the local side stays connected);
3. a file with an error is reported (reload_failed, FILE:LINE) and the running rules stay;
4. a new connection block starts a second bridge;
and at the end every a/N message has arrived at the remote broker, in order, none lost
across the reloads and the reconnect.
Exit 0 when every check passed, 1 when one failed, 77 (skipped) without paho or mosquitto.
"""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (HOST, WORK, Bridge, Broker, Client, check, done,  # noqa: E402
                            wait_for)

BIN = sys.argv[1]
KIND = sys.argv[2]
VERSION = "5" if KIND == "tern" else "311"
PROTO = "mqttv50" if VERSION == "5" else "mqttv311"
CONF = os.path.join(WORK, "reload.conf")
TAG = f"[{KIND} {PROTO}]"


def write_conf(remote, rules, extra="", more=""):
    with open(CONF + ".new", "w") as f:
        f.write(f"connection r1\naddress {HOST}:{remote.port}\nbridge_protocol_version {PROTO}\n"
                "restart_timeout 1 2\nremote_clientid reload-r1\n"
                + "".join(f"topic {r}\n" for r in rules) + extra + more)
    os.replace(CONF + ".new", CONF)


def reloads(b, count, seconds=10):
    return wait_for(lambda: len([e for e in b.events()
                                 if e.get("event") in ("reloaded", "reload_failed")]) >= count,
                    seconds)


def connects(b, side):
    return len([e for e in b.events("connected") if e.get("side") == side])


def main():
    local, remote = Broker("tern", BIN), Broker(KIND, BIN)
    write_conf(remote, ["a/# out 1", "c/# in 1"])
    b = Bridge(BIN, ["-c", CONF, "--local", f"mqtt://{HOST}:{local.port}"])
    check(f"{TAG} both sides connect", b.wait_connected(), b.stderr())
    b.wait_subscribed()
    lc, rc = Client(local.port, VERSION), Client(remote.port, VERSION)
    lc.subscribe("#", 1)
    rc.subscribe("#", 1)
    feeder = Client(local.port, VERSION)

    stop = threading.Event()
    sent = {"a": 0, "b": 0}
    b_after = []  # b/N published once the first reload's subscription is surely in place
    gate = threading.Event()

    def publish_loop():
        i = 0
        while not stop.is_set():
            feeder.publish(f"a/{i}", f"a{i}".encode(), qos=1)
            feeder.publish(f"b/{i}", f"b{i}".encode(), qos=1)
            if gate.is_set():
                b_after.append(i)
            sent["a"] = sent["b"] = i + 1
            i += 1
            time.sleep(0.004)

    t = threading.Thread(target=publish_loop, daemon=True)
    t.start()
    time.sleep(0.5)
    rc.publish("c/1", b"c-before", qos=1)
    check(f"{TAG} before the reload: c/ comes in",
          wait_for(lambda: any(m[0] == "c/1" for m in lc.got), 10), lc.got[-5:])
    check(f"{TAG} before the reload: b/ does not cross",
          not any(m[0].startswith("b/") for m in rc.got))

    # 1. New rules, same connections.
    local_connects, remote_connects = connects(b, "local"), connects(b, "remote")
    write_conf(remote, ["a/# out 1", "b/# out 1", "d/# in 1"])
    b.proc.send_signal(signal.SIGHUP)
    ok = reloads(b, 1)
    ev = b.events("reloaded")
    check(f"{TAG} SIGHUP with new rules: reloaded, rules changed, no reconnect",
          ok and ev and ev[-1].get("action") == "updated" and ev[-1].get("rules_changed")
          and not ev[-1].get("local_reconnect") and not ev[-1].get("remote_reconnect"), ev)
    time.sleep(0.5)  # the SUBACKs
    gate.set()
    rc.publish("d/1", b"d-after", qos=1)
    rc.publish("c/2", b"c-after", qos=1)
    check(f"{TAG} after the reload: d/ comes in",
          wait_for(lambda: any(m[0] == "d/1" for m in lc.got), 10))
    time.sleep(0.5)
    check(f"{TAG} after the reload: c/ neither comes in nor reaches the bridge (unsubscribed)",
          not any(m[0] == "c/2" for m in lc.got) and
          b.last_stats().get("dropped_no_route", -1) == 0, b.last_stats())
    check(f"{TAG} after the reload: b/ crosses",
          wait_for(lambda: b_after and any(m[0] == f"b/{b_after[0]}" for m in rc.got), 10))
    check(f"{TAG} the rules reload reconnected nothing",
          connects(b, "local") == local_connects and connects(b, "remote") == remote_connects,
          b.events("connected"))

    # 2. New remote credentials: the remote side reconnects, the local one does not.
    write_conf(remote, ["a/# out 1", "b/# out 1", "d/# in 1"], "remote_username second\n")
    b.proc.send_signal(signal.SIGHUP)
    ok = reloads(b, 2)
    ev = b.events("reloaded")
    check(f"{TAG} SIGHUP with a new remote_username: the remote side reconnects",
          ok and ev[-1].get("remote_reconnect") and not ev[-1].get("local_reconnect") and
          wait_for(lambda: connects(b, "remote") == remote_connects + 1, 10), b.events())
    time.sleep(0.3)
    check(f"{TAG} ... and only the remote side", connects(b, "local") == local_connects,
          b.events("connected"))

    # 3. A broken file: reported, the running bridge goes on as it was.
    with open(CONF, "a") as f:
        f.write("topic x/# sideways\n")
    b.proc.send_signal(signal.SIGHUP)
    ok = reloads(b, 3)
    failed = b.events("reload_failed")
    check(f"{TAG} SIGHUP with an error in the file: reload_failed with FILE:LINE",
          ok and failed and f"{CONF}:" in failed[-1].get("reason", "") and
          "sideways" in failed[-1].get("reason", ""), failed)
    rc.publish("d/2", b"d-still", qos=1)
    check(f"{TAG} after a failed reload the old rules still work",
          wait_for(lambda: any(m[0] == "d/2" for m in lc.got), 10))

    # 4. A second connection block: a new bridge starts.
    write_conf(remote, ["a/# out 1", "b/# out 1", "d/# in 1"], "remote_username second\n",
               f"connection r2\naddress {HOST}:{remote.port}\nbridge_protocol_version {PROTO}\n"
               "remote_clientid reload-r2\ntopic e/# out 1\n")
    b.proc.send_signal(signal.SIGHUP)
    ok = reloads(b, 5)
    added = [e for e in b.events("reloaded") if e.get("bridge") == "r2"]
    check(f"{TAG} SIGHUP with a new connection: it is added",
          ok and added and added[-1].get("action") == "added", b.events("reloaded"))
    wait_for(lambda: len([e for e in b.events("connected") if e.get("bridge") == "r2"]) >= 2, 10)
    time.sleep(0.5)
    feeder.publish("e/1", b"e", qos=1)
    check(f"{TAG} the added bridge forwards",
          wait_for(lambda: any(m[0] == "e/1" for m in rc.got), 10))

    stop.set()
    t.join(10)
    n = sent["a"]
    wait_for(lambda: len({m[0] for m in rc.got if m[0].startswith("a/")}) >= n, 20)
    got = [int(m[0][2:]) for m in rc.got if m[0].startswith("a/")]
    first = []
    seen = set()
    for i in got:
        if i not in seen:
            seen.add(i)
            first.append(i)
    missing = sorted(set(range(n)) - seen)
    check(f"{TAG} all {n} QoS 1 a/ messages arrived across the reloads and the reconnect",
          not missing, f"missing {missing[:20]} ({len(missing)})")
    check(f"{TAG} ... in order", first == sorted(first), first[:50])
    late = [i for i in b_after if not any(m[0] == f"b/{i}" for m in rc.got)]
    check(f"{TAG} every b/ message published after the new rule arrived", not late, late[:20])
    print(f"    {n} a/ messages, {len(got) - len(first)} duplicates, "
          f"{len(b_after)} b/ after the rule")
    for c in (lc, rc, feeder):
        c.close()
    check(f"{TAG} SIGTERM: exit 0", b.stop() == 0)
    done()


main()
