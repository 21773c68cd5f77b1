#!/usr/bin/python3
"""tern-bridge across a faulty link: a TCP proxy between the bridge and the remote broker
cuts (FIN), resets (RST) and stalls the connection many times while QoS 1 and QoS 2
messages flow both ways. At the end every QoS 1 message arrived at least once, every QoS 2
message exactly once, and each topic's messages in order (first arrivals for QoS 1).

    bridge_fault_test.py BIN_DIR tern|mosquitto [5|311]   (the remote broker; MQTT version)

Exit 0 when every check passed, 1 when one failed, 77 (skipped) without paho or mosquitto.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bridge_support import Bridge, Broker, Client, check, done, wait_for  # noqa: E402
from fault_proxy import FaultyProxy  # noqa: E402

BIN = sys.argv[1]
REMOTE_KIND = sys.argv[2]
VERSION = sys.argv[3] if len(sys.argv) > 3 else "5"
N = 300  # messages per stream


def sequence_checks(name, got, qos):
    """got: payloads (b"<n>") in arrival order."""
    nums = [int(p) for p in got]
    missing = sorted(set(range(N)) - set(nums))
    firsts = []
    seen = set()
    for n in nums:
        if n not in seen:
            seen.add(n)
            firsts.append(n)
    in_order = firsts == sorted(firsts)
    if qos == 1:
        check(f"[{REMOTE_KIND} -V {VERSION}] {name}: every QoS 1 message at least once, in order",
              not missing and in_order,
              f"missing {missing[:10]} ({len(missing)}), {len(nums)} received, order {in_order}")
    else:
        dups = len(nums) - len(seen)
        check(f"[{REMOTE_KIND} -V {VERSION}] {name}: every QoS 2 message exactly once, in order",
              not missing and dups == 0 and in_order,
              f"missing {missing[:10]} ({len(missing)}), {dups} duplicates, order {in_order}")


def main():
    local, remote = Broker("tern", BIN), Broker(REMOTE_KIND, BIN)
    proxy = FaultyProxy(remote.port)
    b = Bridge(BIN, ["--local", f"mqtt://127.0.0.1:{local.port}",
                     "--remote", f"mqtt://127.0.0.1:{proxy.port}",
                     "-V", VERSION, "-k", "5", "--restart-timeout", "0.05:0.5",
                     "--remote-id", f"fault-{os.getpid()}", "--local-id", f"fl-{os.getpid()}",
                     "-t", "q1/# out 1", "-t", "q2/# out 2", "-t", "i2/# in 2"])
    check(f"[{REMOTE_KIND} -V {VERSION}] the bridge connects through the proxy",
          b.wait_connected(), b.stderr())
    b.wait_subscribed()
    # Observers and publishers talk to their broker directly, never through the proxy.
    at_remote = Client(remote.port, VERSION)
    at_remote.subscribe("q1/#", 1)
    at_remote.subscribe("q2/#", 2)
    at_local = Client(local.port, VERSION)
    at_local.subscribe("i2/#", 2)
    pub_local = Client(local.port, VERSION)
    pub_remote = Client(remote.port, VERSION)

    start = time.time()
    chaos = threading.Thread(target=proxy.chaos, args=(start + 8,), daemon=True)
    chaos.start()
    for i in range(N):
        pub_local.publish("q1/a", str(i).encode(), qos=1)
        pub_local.publish("q2/b", str(i).encode(), qos=2)
        pub_remote.publish("i2/c", str(i).encode(), qos=2)
        time.sleep(8.0 / N)
    chaos.join()

    def complete():
        return (len({p for t, p, *_ in at_remote.got if t == "q1/a"}) >= N and
                len({p for t, p, *_ in at_remote.got if t == "q2/b"}) >= N and
                len({p for t, p, *_ in at_local.got if t == "i2/c"}) >= N)

    wait_for(complete, 40, 0.1)
    time.sleep(1.0)  # late duplicates would show here
    faults = dict(proxy.faults)
    check(f"[{REMOTE_KIND} -V {VERSION}] the proxy broke the link many times",
          faults["cut"] + faults["reset"] >= 5 and faults["stall"] >= 1, faults)
    reconnects = len([e for e in b.events("connected") if e.get("side") == "remote"])
    print(f"faults {faults}, remote connects {reconnects}, "
          f"stats {b.last_stats()}", flush=True)
    check(f"[{REMOTE_KIND} -V {VERSION}] the bridge reconnected after the faults", reconnects >= 3,
          reconnects)
    sequence_checks("out q1/a", [p for t, p, *_ in at_remote.got if t == "q1/a"], 1)
    sequence_checks("out q2/b", [p for t, p, *_ in at_remote.got if t == "q2/b"], 2)
    sequence_checks("in i2/c", [p for t, p, *_ in at_local.got if t == "i2/c"], 2)
    for c in (at_remote, at_local, pub_local, pub_remote):
        c.close()
    b.stop()
    proxy.close()
    local.stop()
    remote.stop()


def restart():
    """The bridge killed (SIGKILL) mid-stream and started again: the brokers keep what it had
    not acknowledged, so every QoS 1 and QoS 2 message still arrives, at least once (a QoS 2
    message in flight at the kill may arrive twice: no on-disk state yet)."""
    local, remote = Broker("tern", BIN), Broker(REMOTE_KIND, BIN)
    args = ["--local", f"mqtt://127.0.0.1:{local.port}",
            "--remote", f"mqtt://127.0.0.1:{remote.port}",
            "-V", VERSION, "--restart-timeout", "0.05:0.5",
            "--remote-id", f"kill-{os.getpid()}", "--local-id", f"kl-{os.getpid()}",
            "-t", "q1/# out 1", "-t", "q2/# out 2", "-t", "i2/# in 2"]
    b = Bridge(BIN, args)
    b.wait_connected()
    b.wait_subscribed()
    at_remote = Client(remote.port, VERSION)
    at_remote.subscribe("q1/#", 1)
    at_remote.subscribe("q2/#", 2)
    at_local = Client(local.port, VERSION)
    at_local.subscribe("i2/#", 2)
    pub_local = Client(local.port, VERSION)
    pub_remote = Client(remote.port, VERSION)
    for i in range(N):
        if i == N // 3:
            b.proc.kill()
            b.proc.wait()
        if i == N // 2:
            b = Bridge(BIN, args)
        pub_local.publish("q1/a", str(i).encode(), qos=1)
        pub_local.publish("q2/b", str(i).encode(), qos=2)
        pub_remote.publish("i2/c", str(i).encode(), qos=2)
        time.sleep(4.0 / N)

    def firsts(c, topic):
        return {p for t, p, *_ in c.got if t == topic}

    wait_for(lambda: len(firsts(at_remote, "q1/a")) >= N and len(firsts(at_remote, "q2/b")) >= N
             and len(firsts(at_local, "i2/c")) >= N, 30, 0.1)
    for name, c, topic in (("out q1/a", at_remote, "q1/a"), ("out q2/b", at_remote, "q2/b"),
                           ("in i2/c", at_local, "i2/c")):
        got = [int(p) for t, p, *_ in c.got if t == topic]
        missing = sorted(set(range(N)) - set(got))
        check(f"[{REMOTE_KIND} -V {VERSION}] bridge killed and restarted: {name} all arrived "
              f"({len(got) - len(set(got))} duplicates)", not missing,
              f"missing {missing[:10]} ({len(missing)})")
    for c in (at_remote, at_local, pub_local, pub_remote):
        c.close()
    b.stop()
    local.stop()
    remote.stop()


main()
restart()
done()
