#!/usr/bin/python3
"""tern-bridge between real brokers, on 127.0.0.1 and free ports, every wait bounded.

    bridge_test.py BIN_DIR tern-tern         tern-broker <-> tern-broker, MQTT 5.0 and 3.1.1
    bridge_test.py BIN_DIR tern-mosquitto    local tern-broker, remote Mosquitto
    bridge_test.py BIN_DIR mosquitto-tern    local Mosquitto, remote tern-broker

For each: `out`, `in` and `both` rules with prefixes, QoS the lower of the rule's and the
message's, the retained flag (5.0), user properties (5.0), unmatched topics not forwarded,
and the loop test: two brokers bridged `both` on `#` deliver every message once on each
side. tern-broker-only: -c FILE with two bridges, FILE:LINE errors (exit 2), fail-over to a
second address and back, and --round-robin (stays where it is until that address fails).
Exit 0 when every check passed, 1 when one failed, 77 (skipped) without paho or mosquitto.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import (WORK, Bridge, Broker, Client, check, done, wait_for)  # noqa: E402

BIN = sys.argv[1]
MODE = sys.argv[2]
LOCAL_KIND, REMOTE_KIND = {"tern-tern": ("tern", "tern"),
                           "tern-mosquitto": ("tern", "mosquitto"),
                           "mosquitto-tern": ("mosquitto", "tern")}[MODE]


def bridge_args(local, remote, version, rules, extra=()):
    args = ["--local", f"mqtt://127.0.0.1:{local.port}",
            "--remote", f"mqtt://127.0.0.1:{remote.port}",
            "-V", version, "--restart-timeout", "0.2:1",
            "--name", f"t{time.time_ns() % 100000}"]
    for r in rules:
        args += ["-t", r]
    return args + list(extra)


def forwarding(version):
    tag = f"[{MODE} -V {version}]"
    local, remote = Broker(LOCAL_KIND, BIN), Broker(REMOTE_KIND, BIN)
    rules = ["sensors/# out 1 site1/ central/site1/",
             "cmd/# in 2 local/ remote/",
             "state/# both 2",
             "low/# out 0"]
    b = Bridge(BIN, bridge_args(local, remote, version, rules))
    check(f"{tag} both sides connect", b.wait_connected(), b.stderr())
    b.wait_subscribed()
    lc, rc = Client(local.port, version), Client(remote.port, version)
    lc.subscribe("#")
    rc.subscribe("#")

    # out, with prefixes: site1/sensors/... -> central/site1/sensors/...
    lc.publish("site1/sensors/t1", b"21.5", qos=2)
    lc.publish("sensors/t1", b"not under the local prefix", qos=1)
    lc.publish("site1/other", b"no rule", qos=1)
    ok = wait_for(lambda: any(t == "central/site1/sensors/t1" for t, *_ in rc.got), 10)
    time.sleep(0.3)
    got = [(t, p, q) for t, p, q, *_ in rc.got]
    check(f"{tag} out with prefixes: one message at QoS min(2, rule 1) = 1, nothing else",
          ok and got == [("central/site1/sensors/t1", b"21.5", 1)], got)

    # in, with prefixes: remote/cmd/... -> local/cmd/...
    lc.got.clear()
    rc.publish("remote/cmd/go", b"now", qos=2)
    rc.publish("cmd/go", b"no prefix", qos=2)
    ok = wait_for(lambda: any(t == "local/cmd/go" for t, *_ in lc.got), 10)
    time.sleep(0.3)
    got = [(t, p, q) for t, p, q, *_ in lc.got if not t.startswith("$")]
    check(f"{tag} in with prefixes: QoS 2 kept, the unprefixed topic not forwarded",
          ok and got == [("local/cmd/go", b"now", 2)], got)

    # both: each way once, no echo back to the source.
    lc.got.clear()
    rc.got.clear()
    lc.publish("state/a", b"from-local", qos=1)
    rc.publish("state/b", b"from-remote", qos=1)
    wait_for(lambda: any(t == "state/a" for t, *_ in rc.got) and
             any(t == "state/b" for t, *_ in lc.got), 10)
    time.sleep(0.5)
    lgot = sorted((t, p) for t, p, *_ in lc.got if t.startswith("state/"))
    rgot = sorted((t, p) for t, p, *_ in rc.got if t.startswith("state/"))
    check(f"{tag} both: each message once on each broker",
          lgot == [("state/a", b"from-local"), ("state/b", b"from-remote")] and
          rgot == lgot, f"local {lgot} remote {rgot}")

    # QoS 0 rule: a QoS 2 message crosses at QoS 0.
    rc.got.clear()
    lc.publish("low/x", b"q", qos=2)
    ok = wait_for(lambda: rc.got, 10)
    check(f"{tag} a QoS 0 rule forwards a QoS 2 message at QoS 0",
          ok and [(t, q) for t, _, q, *_ in rc.got] == [("low/x", 0)], rc.got)

    if version == "5":
        # Retained flag (Retain As Published) and user properties pass through.
        lc.publish("state/kept", b"r", qos=1, retain=True, user_property=[("k", "v")])
        wait_for(lambda: any(t == "state/kept" for t, *_ in rc.got), 10)
        late = Client(remote.port, version)
        late.subscribe("state/kept", 1)
        ok = wait_for(lambda: late.got, 10)
        check(f"{tag} 5.0: the retained flag crosses the bridge (a later subscriber gets it)",
              ok and late.got[0][:2] == ("state/kept", b"r") and late.got[0][3], late.got)
        fwd = [x for x in rc.got if x[0] == "state/kept"]
        check(f"{tag} 5.0: user properties pass through",
              fwd and fwd[0][4].get("user_property") == [("k", "v")], fwd)
        late.publish("state/kept", b"", qos=1, retain=True)
        late.close()

    stats = {}
    wait_for(lambda: (b.last_stats().get("forwarded_out", 0) >= 3), 5)
    stats = b.last_stats()
    check(f"{tag} --json stats count forwarded messages",
          stats.get("forwarded_out", 0) >= 3 and stats.get("forwarded_in", 0) >= 2,
          stats)
    lc.close()
    rc.close()
    code = b.stop()
    check(f"{tag} SIGTERM: exit 0", code == 0, code)
    local.stop()
    remote.stop()


def loop(version):
    """Two brokers bridged `both` on `#`: no storm, every message once on each side."""
    tag = f"[{MODE} -V {version}]"
    local, remote = Broker(LOCAL_KIND, BIN), Broker(REMOTE_KIND, BIN)
    b = Bridge(BIN, bridge_args(local, remote, version, ["# both 1"]))
    check(f"{tag} loop: both sides connect", b.wait_connected(), b.stderr())
    b.wait_subscribed()
    lc, rc = Client(local.port, version), Client(remote.port, version)
    lc.subscribe("#", 1)
    rc.subscribe("#", 1)
    for i in range(20):
        lc.publish(f"loop/l{i % 3}", f"L{i}".encode(), qos=i % 2)
        rc.publish(f"loop/r{i % 3}", f"R{i}".encode(), qos=i % 2)
    # The same payload twice on purpose: an echo filter must not eat a real second message.
    lc.publish("loop/same", b"x", qos=1)
    lc.publish("loop/same", b"x", qos=1)
    wait_for(lambda: len(lc.got) >= 42 and len(rc.got) >= 42, 10)
    time.sleep(1.5)  # a storm would show here
    lnames = sorted(p for t, p, *_ in lc.got if t.startswith("loop/"))
    rnames = sorted(p for t, p, *_ in rc.got if t.startswith("loop/"))
    want = sorted([f"L{i}".encode() for i in range(20)] + [f"R{i}".encode() for i in range(20)]
                  + [b"x", b"x"])
    check(f"{tag} loop: `both` on `#` delivers each message exactly once on each broker",
          lnames == want and rnames == want,
          f"local {len(lnames)} remote {len(rnames)}: {lnames[:6]} ... {rnames[:6]}")
    stats = b.last_stats()
    check(f"{tag} loop: 22 messages forwarded out, 20 in",
          stats.get("forwarded_out") == 22 and stats.get("forwarded_in") == 20, stats)
    lc.close()
    rc.close()
    b.stop()
    local.stop()
    remote.stop()


def config_file():
    """-c FILE: two bridges from one file; errors as FILE:LINE, exit 2."""
    local, r1, r2 = Broker("tern", BIN), Broker("tern", BIN), Broker("tern", BIN)
    conf = os.path.join(WORK, "bridges.conf")
    with open(conf, "w") as f:
        f.write(f"""# two bridges
connection one
address 127.0.0.1:{r1.port}
topic a/# out 1 "" one/
restart_timeout 1
notifications true
notification_topic bridges/one/state
remote_clientid one-bridge

connection two
addresses 127.0.0.1:{r2.port}
bridge_protocol_version mqttv50
topic b/# in 1 from-two/ ""
notifications false
""")
    lc = Client(local.port)
    lc.subscribe("#", 1)
    args = ["-c", conf, "--local", f"mqtt://127.0.0.1:{local.port}"]
    b = Bridge(BIN, args)
    ok = wait_for(lambda: b.connected("local", 2) and b.connected("remote", 2), 15)
    check("-c: two bridges connect", ok, b.events())
    b.wait_subscribed()
    c1, c2 = Client(r1.port), Client(r2.port)
    c1.subscribe("#", 1)
    lc.publish("a/x", b"1", qos=1)
    c2.publish("b/y", b"2", qos=1)
    ok = wait_for(lambda: any(t == "one/a/x" for t, *_ in c1.got) and
                  any(t == "from-two/b/y" for t, *_ in lc.got), 10)
    check("-c: bridge one forwards out with its remote prefix, bridge two in with its local one",
          ok, f"{c1.got} {lc.got}")

    def states(client):
        return [p for t, p, *_ in client.got if t == "bridges/one/state"]

    check("notifications: 1 on both brokers while the remote is connected",
          wait_for(lambda: states(lc)[-1:] == [b"1"] and states(c1)[-1:] == [b"1"], 5),
          f"{lc.got} {c1.got}")
    # Killed without a goodbye: the remote broker publishes the will, 0.
    b.proc.kill()
    check("notifications: the will at the remote broker says 0 when the bridge dies",
          wait_for(lambda: states(c1)[-1:] == [b"0"], 15), c1.got)
    late = Client(r1.port)
    late.subscribe("bridges/one/state", 1)
    check("notifications: the state is retained",
          wait_for(lambda: late.got and late.got[-1][1] == b"0" and late.got[-1][3], 5), late.got)
    late.close()
    b = Bridge(BIN, args)
    check("notifications: 1 again after a restart",
          wait_for(lambda: states(c1)[-1:] == [b"1"], 15), c1.got)
    # The remote goes away: the state turns 0 on the local broker.
    r1.stop()
    ok = wait_for(lambda: states(lc)[-1:] == [b"0"], 10)
    check("notifications: 0 on the local broker once the remote broker is gone", ok, lc.got)
    ev = b.events("disconnected")
    check("--json: a disconnected event with the side and a reason",
          ev and ev[0].get("side") == "remote" and ev[0].get("bridge") == "one" and
          ev[0].get("reason"), ev)
    b.stop()
    for c in (lc, c1, c2):
        c.close()
    for x in (local, r2):
        x.stop()

    bad = os.path.join(WORK, "bad.conf")
    with open(bad, "w") as f:
        f.write("connection x\naddress 127.0.0.1:1\ntopic a/# sideways\n")
    import subprocess
    r = subprocess.run([os.path.join(BIN, "tern-bridge"), "-c", bad], capture_output=True,
                       timeout=10)
    check("-c: a bad rule is FILE:LINE on stderr and exit 2",
          r.returncode == 2 and f"{bad}:3: topic: invalid direction".encode() in r.stderr,
          f"{r.returncode} {r.stderr!r}")
    r = subprocess.run([os.path.join(BIN, "tern-bridge"), "--remote", "mqtt://127.0.0.1:1",
                        "-t", "a/# out 1 l/"], capture_output=True, timeout=10)
    check("--topic: a local prefix without a remote one is a usage error (2)",
          r.returncode == 2 and b"remote prefix" in r.stderr, f"{r.returncode} {r.stderr!r}")


def failover():
    """Two remote addresses: the main one down at first, the bridge uses the second, then
    returns to the main one once it is up."""
    from bridge_support import free_port
    local, second = Broker("tern", BIN), Broker("tern", BIN)
    main_port = free_port()
    b = Bridge(BIN, ["--local", f"mqtt://127.0.0.1:{local.port}",
                     "--remote", f"mqtt://127.0.0.1:{main_port}",
                     "--remote", f"mqtt://127.0.0.1:{second.port}",
                     "--restart-timeout", "0.1:0.5", "-t", "f/# out 1"])

    def remote_at(port):
        return any(e.get("side") == "remote" and e.get("address") == f"127.0.0.1:{port}"
                   for e in b.events("connected"))

    check("fail-over: the main address refuses, the second one is used",
          wait_for(lambda: remote_at(second.port) and b.connected("local"), 15), b.events())
    b.wait_subscribed()
    lc, sc = Client(local.port), Client(second.port)
    sc.subscribe("f/#", 1)
    lc.publish("f/1", b"one", qos=1)
    check("fail-over: messages go to the second address",
          wait_for(lambda: [p for t, p, *_ in sc.got] == [b"one"], 10), sc.got)
    main = Broker("tern", BIN, port=main_port)
    check("fail-over: back to the main address once it is up",
          wait_for(lambda: remote_at(main_port), 15) and b.events("returning_to_main"),
          b.events())
    b.wait_subscribed()
    mc = Client(main_port)
    mc.subscribe("f/#", 1)
    lc.publish("f/2", b"two", qos=1)
    check("fail-over: messages then go to the main address",
          wait_for(lambda: [p for t, p, *_ in mc.got] == [b"two"], 10), mc.got)
    for c in (lc, sc, mc):
        c.close()
    b.stop()
    for x in (local, second, main):
        x.stop()


def round_robin():
    """--round-robin: the addresses are equals. The first one down at first, the bridge uses
    the second and stays there after the first comes up (no returning_to_main); when the
    second goes down it moves to the first, and messages follow it."""
    from bridge_support import free_port
    local, second = Broker("tern", BIN), Broker("tern", BIN)
    first_port = free_port()
    b = Bridge(BIN, ["--local", f"mqtt://127.0.0.1:{local.port}",
                     "--remote", f"mqtt://127.0.0.1:{first_port}",
                     "--remote", f"mqtt://127.0.0.1:{second.port}", "--round-robin",
                     "--restart-timeout", "0.1:0.5", "-t", "r/# out 1"])

    def remote_at(port):
        return len([e for e in b.events("connected") if e.get("side") == "remote" and
                    e.get("address") == f"127.0.0.1:{port}"])

    check("round-robin: the first address refuses, the second one is used",
          wait_for(lambda: remote_at(second.port) == 1 and b.connected("local"), 15), b.events())
    first = Broker("tern", BIN, port=first_port)
    # Without --round-robin the bridge would probe the main address every MAX (0.5 s) and go
    # back to it (the fail-over test); here it stays.
    time.sleep(2.0)
    check("round-robin: it stays at the second address once the first is up",
          remote_at(first_port) == 0 and not b.events("returning_to_main") and
          len([e for e in b.events("disconnected") if e.get("side") == "remote"]) == 0,
          b.events())
    second.stop()
    check("round-robin: the second goes down, it moves to the first",
          wait_for(lambda: remote_at(first_port) == 1, 15), b.events())
    b.wait_subscribed()
    lc, fc = Client(local.port), Client(first_port)
    fc.subscribe("r/#", 1)
    lc.publish("r/1", b"one", qos=1)
    check("round-robin: messages then go to the first address",
          wait_for(lambda: [p for t, p, *_ in fc.got] == [b"one"], 10), fc.got)
    for c in (lc, fc):
        c.close()
    b.stop()
    for x in (local, first):
        x.stop()


for v in ("5", "311"):
    forwarding(v)
    loop(v)
if MODE == "tern-tern":
    config_file()
    failover()
    round_robin()
done()
