#!/usr/bin/env python3
"""tern-pub and tern-sub beyond the basics, end to end against a real broker: will options,
-D MQTT 5.0 properties, --json-in and --rate, --reconnect across a broker restart, and
tern-sub's -U, --retained-only, --remove-retained, subscription options, --pretty and
--payload-format json. On 127.0.0.1 and free ports, every wait bounded.

    features_test.py BIN_DIR tern-broker
    features_test.py BIN_DIR mosquitto

Exit 0 when every check passed, 1 when one failed, 77 (skipped) when mosquitto is missing.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pubsub_test as base  # noqa: E402  (helpers; reads the same argv)
from pubsub_test import (PUB, SUB, WORK, check, finish, json_lines, payload_of,  # noqa: E402
                         spawn, stop, tern_pub, tern_sub)

MODE = sys.argv[2]
MOSQ = MODE == "mosquitto"


def wait_for(pred, seconds=10, step=0.05):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---- will ---------------------------------------------------------------------------------

def check_will(port):
    for v in ("5", "311"):
        topic = f"will/{v}"
        sub = tern_sub(port, ["-t", topic, "-q", "1", "--json", "-C", "1"])
        extra = ["-D", "will", "user-property", "w", "1", "-D", "will", "content-type",
                 "text/x"] if v == "5" else []
        victim = spawn([SUB, "-h", "127.0.0.1", "-p", str(port), "-V", v, "-t", "will/none",
                        "-d", "--will-topic", topic, "--will-payload", "gone", "--will-qos", "1"]
                       + extra, stderr=subprocess.PIPE)
        ready = wait_for(lambda: select.select([victim.stderr], [], [], 0)[0] != [], 10)
        victim.kill()  # SIGKILL: no DISCONNECT, the broker must publish the will
        victim.wait()
        code, out, err = finish(sub)
        objs = json_lines(out) if code == 0 else []
        ok = ready and len(objs) == 1 and objs[0]["payload"] == "gone" and objs[0]["qos"] == 1
        if v == "5" and ok:
            props = objs[0]["properties"]
            ok = props.get("user_property") == [["w", "1"]] and \
                props.get("content_type") == "text/x"
        check(f"-V {v} --will-topic/--will-payload/--will-qos 1" +
              (" -D will ..." if v == "5" else "") + ": SIGKILL publishes the will",
              ok, f"{code} {out!r} {err!r}")

    # A clean exit sends DISCONNECT: no will.
    sub = tern_sub(port, ["-t", "will/clean", "-W", "2"])
    pub = tern_pub(port, ["-t", "x", "-m", "y", "--will-topic", "will/clean",
                          "--will-payload", "no"])
    code, out, _ = finish(sub)
    check("a normal exit (DISCONNECT) does not publish the will", pub.returncode == 0 and
          code == 27 and out == b"", f"{pub.returncode} {code} {out!r}")

    # --will-retain: the will stays for a later subscriber with the retain flag.
    victim = spawn([PUB, "-h", "127.0.0.1", "-p", str(port), "-t", "x", "-l",
                    "--will-topic", "will/kept", "--will-payload", "last", "--will-retain"],
                   stdin=subprocess.PIPE)
    time.sleep(0.5)
    victim.kill()
    victim.wait()
    time.sleep(0.3)
    code, out, _ = finish(tern_sub(port, ["-t", "will/kept", "--json", "-C", "1", "-W", "5"],
                                   ready=False))
    objs = json_lines(out) if code == 0 else []
    check("--will-retain: the will is retained", len(objs) == 1 and objs[0]["retain"] is True
          and objs[0]["payload"] == "last", f"{code} {out!r}")
    tern_pub(port, ["-t", "will/kept", "-r", "-n"])

    bad = tern_pub(port, ["-t", "x", "-m", "y", "--will-payload", "p"])
    bad2 = tern_pub(port, ["-t", "x", "-m", "y", "--will-topic", "a/#"])
    check("--will-payload without --will-topic, a wildcard will topic: usage errors (2)",
          bad.returncode == 2 and bad2.returncode == 2 and b"will" in bad2.stderr,
          f"{bad.returncode} {bad2.returncode} {bad2.stderr!r}")
    # CONNECT's strings must be UTF-8: refused before connecting, with the flag named.
    bad_id = subprocess.run([PUB, "-p", str(port), "-t", "x", "-m", "y", "-i", b"\xff"],
                            capture_output=True, timeout=20)
    bad_user = subprocess.run([SUB, "-p", str(port), "-t", "x", "-u", b"a\xc3"],
                              capture_output=True, timeout=20)
    check("-i and -u that are not UTF-8: usage errors (2) naming the flag",
          bad_id.returncode == 2 and b"--id: not valid UTF-8" in bad_id.stderr and
          bad_user.returncode == 2 and b"--username: not valid UTF-8" in bad_user.stderr,
          f"{bad_id.returncode} {bad_id.stderr!r} {bad_user.returncode} {bad_user.stderr!r}")


# ---- -D properties ------------------------------------------------------------------------

def check_properties(port):
    sub = tern_sub(port, ["-t", "prop/t", "-q", "1", "--json", "-C", "1"])
    pub = tern_pub(port, ["-t", "prop/t", "-q", "1", "-m", "p",
                          "-D", "publish", "user-property", "k", "v1",
                          "-D", "publish", "user-property", "k", "v2",
                          "-D", "publish", "message-expiry-interval", "60",
                          "-D", "publish", "content-type", "text/plain",
                          "-D", "publish", "response-topic", "reply/here",
                          "-D", "publish", "correlation-data", "req-17",
                          "-D", "publish", "payload-format-indicator", "1",
                          "-D", "connect", "session-expiry-interval", "30",
                          "-D", "connect", "receive-maximum", "10",
                          "-D", "connect", "maximum-packet-size", "100000",
                          "-D", "connect", "topic-alias-maximum", "5",
                          "-D", "connect", "request-response-information", "1",
                          "-D", "connect", "request-problem-information", "1",
                          "-D", "connect", "user-property", "c", "1",
                          "-D", "disconnect", "user-property", "d", "1"])
    code, out, err = finish(sub)
    objs = json_lines(out) if code == 0 else []
    props = objs[0]["properties"] if objs else {}
    check("-D publish/connect/disconnect properties: the publish ones arrive at tern-sub --json",
          pub.returncode == 0 and props.get("user_property") == [["k", "v1"], ["k", "v2"]] and
          0 < props.get("message_expiry_interval", 0) <= 60 and
          props.get("content_type") == "text/plain" and
          props.get("response_topic") == "reply/here" and
          props.get("correlation_data") == "req-17" and
          props.get("payload_format_indicator") == 1,
          f"{pub.returncode} {pub.stderr!r} {out!r} {err!r}")

    # Topic aliases: both brokers allow 10 by default.
    sub = tern_sub(port, ["-t", "prop/alias", "-C", "2", "-W", "20"])
    pub = tern_pub(port, ["-t", "prop/alias", "-m", "a", "--repeat", "2",
                          "-D", "publish", "topic-alias", "1"])
    code, out, _ = finish(sub)
    check("-D publish topic-alias 1 (the broker allows 10): delivered",
          pub.returncode == 0 and out == b"a\na\n", f"{pub.stderr!r} {out!r}")
    sub = tern_sub(port, ["-t", "prop/alias11", "-C", "1", "-W", "3"])
    pub = tern_pub(port, ["-t", "prop/alias11", "-m", "a", "-D", "publish", "topic-alias", "11"])
    code, out, _ = finish(sub)
    check("-D publish topic-alias 11 above the broker's maximum (10): exit 1, no message",
          pub.returncode == 1 and b"topic alias" in pub.stderr and out == b"",
          f"{pub.returncode} {pub.stderr!r} {out!r}")

    for args, want, what in (
            (["-V", "311", "-D", "publish", "content-type", "x"], 2, "-D with -V 311"),
            (["-D", "publish", "no-such-thing", "1"], 2, "an unknown property"),
            (["-D", "send", "content-type", "x"], 2, "an unknown packet"),
            (["-D", "publish", "session-expiry-interval", "5"], 2, "a property of another packet"),
            (["-D", "subscribe", "user-property", "a", "b"], 2, "a packet tern-pub does not send"),
            (["-D", "publish", "message-expiry-interval", "-1"], 2, "a negative interval"),
            (["-D", "publish", "payload-format-indicator", "2"], 2, "payload-format-indicator 2"),
            (["-D", "publish", "user-property", "k"], 2, "user-property without a value"),
            (["-D", "publish", "content-type", "a", "b"], 2, "two values for content-type"),
            (["-D", "publish", "response-topic", "a/+"], 2, "a wildcard response-topic"),
            (["-D", "publish", "topic-alias", "0"], 2, "topic-alias 0"),
            (["-D", "publish", "content-type", "a", "-D", "publish", "content-type", "b"], 2,
             "a property given twice"),
            (["-x", "5", "-D", "connect", "session-expiry-interval", "5"], 2, "-x with -D connect "
             "session-expiry-interval"),
            (["-D", "will", "content-type", "x"], 2, "will properties without --will-topic"),
            (["-D", "connect", "authentication-method", "SCRAM"], 3, "authentication-method")):
        pub = tern_pub(port, ["-t", "prop/bad", "-m", "x"] + args)
        check(f"-D: {what} -> exit {want} with a message", pub.returncode == want and
              pub.stderr.count(b"\n") >= 1 and b"tern-pub" in pub.stderr,
              f"{pub.returncode} {pub.stderr!r}")

    sub = subprocess.run([SUB, "-p", str(port), "-t", "x", "-V", "311", "--no-local"],
                         capture_output=True, timeout=20)
    sub2 = subprocess.run([SUB, "-p", str(port), "-t", "x", "-D", "publish", "topic-alias", "1"],
                          capture_output=True, timeout=20)
    check("tern-sub: --no-local with -V 311, -D publish: usage errors",
          sub.returncode == 2 and sub2.returncode == 2, f"{sub.stderr!r} {sub2.stderr!r}")


# ---- --json-in, --rate ----------------------------------------------------------------------

def check_json_in(port):
    binary = b"\x00\xff\x01"
    import base64
    lines = [
        {"topic": "jin/a", "payload": "one", "qos": 1},
        {"topic": "jin/b", "payload_base64": base64.b64encode(binary).decode(), "qos": 2},
        {"topic": "jin/c", "payload": "three",
         "properties": {"user_property": [["k", "v"]], "content_type": "text/plain",
                        "correlation_data": {"base64": "AP8="}, "message_expiry_interval": 50}},
    ]
    sub = tern_sub(port, ["-t", "jin/#", "-q", "2", "--json", "-C", "4"])
    text = "\n".join(json.dumps(l) for l in lines) + "\n\n"
    pub = tern_pub(port, ["--json-in", "-q", "1"], stdin=text.encode())
    # A line as tern-sub --json prints it republishes (dup, mid, received_at ignored).
    echo = tern_pub(port, ["--json-in"], stdin=(
        '{"topic":"jin/d","payload":"again","qos":1,"retain":false,"dup":false,"mid":7,'
        '"received_at":"2026-01-01T00:00:00.000000Z","properties":{"subscription_identifier":'
        '[3]}}\n').encode())
    code, out, err = finish(sub)
    objs = json_lines(out) if code == 0 else []
    by_topic = {o["topic"]: o for o in objs}
    ok = (pub.returncode == 0 and echo.returncode == 0 and len(objs) == 4 and
          by_topic["jin/a"]["payload"] == "one" and by_topic["jin/a"]["qos"] == 1 and
          payload_of(by_topic["jin/b"]) == binary and by_topic["jin/b"]["qos"] == 2 and
          by_topic["jin/c"]["qos"] == 1 and
          by_topic["jin/c"]["properties"]["user_property"] == [["k", "v"]] and
          by_topic["jin/c"]["properties"]["correlation_data"] == {"base64": "AP8="} and
          by_topic["jin/d"]["payload"] == "again")
    check("--json-in: many topics over one connection, qos, payload_base64, properties; "
          "tern-sub --json lines republish", ok,
          f"{pub.returncode} {pub.stderr!r} {echo.stderr!r} {out!r} {err!r}")

    sub = tern_sub(port, ["-t", "jbad/#", "-q", "1", "-v", "-W", "3"])
    pub = tern_pub(port, ["--json-in", "-q", "1"], stdin=(
        '{"topic":"jbad/1","payload":"ok1"}\n{"topic":"jbad/2","payload":"ok2"}\n'
        '{"topic":"jbad/3","paylod":"typo"}\n{"topic":"jbad/4","payload":"never"}\n').encode())
    code, out, _ = finish(sub)
    check("--json-in: a bad line stops with 'line 3' and exit 1; the lines before arrive",
          pub.returncode == 1 and b"line 3" in pub.stderr and b"paylod" in pub.stderr and
          out == b"jbad/1 ok1\njbad/2 ok2\n", f"{pub.returncode} {pub.stderr!r} {out!r}")
    for bad, what in (("not json", "not valid JSON"), ('{"topic":"a/#","payload":"x"}', "topic"),
                      ('{"topic":"a","payload":"x","qos":3}', "qos"),
                      ('{"payload":"x"}', "topic"),
                      ('{"topic":"a","payload":"x","payload_base64":"eA=="}', "both"),
                      ('{"topic":"a","payload_base64":"***"}', "base64"),
                      ('{"topic":"a","payload":"x","properties":{"message_expiry_interval":'
                       '"60"}}', "message_expiry_interval")):
        pub = tern_pub(port, ["--json-in"], stdin=(bad + "\n").encode())
        check(f"--json-in: {what} -> exit 1, 'line 1'", pub.returncode == 1 and
              b"line 1" in pub.stderr and what.encode() in pub.stderr, f"{pub.stderr!r}")

    start = time.time()
    pub = tern_pub(port, ["-t", "rate/t", "-l", "-q", "1", "--rate", "20"],
                   stdin=b"".join(b"r%d\n" % i for i in range(11)))
    took = time.time() - start
    check("--rate 20: 11 lines take at least 0.5 s", pub.returncode == 0 and took >= 0.5,
          f"{pub.returncode} {took:.2f}s")
    start = time.time()
    pub = tern_pub(port, ["-t", "rate/t", "-m", "x", "--repeat", "6", "--rate", "10"])
    took = time.time() - start
    check("--rate 10 with --repeat 6: at least 0.5 s", pub.returncode == 0 and took >= 0.5,
          f"{took:.2f}s")


# ---- tern-sub options ----------------------------------------------------------------------

def check_sub_options(port):
    # -U: a kept session stops receiving the filter.
    args = ["-c", "-i", "tern-unsub", "-x", "60", "-q", "1"]
    first = finish(tern_sub(port, args + ["-t", "uns/t", "-E"], ready=False))
    unsub = finish(tern_sub(port, args + ["-U", "uns/t"], ready=False))
    tern_pub(port, ["-t", "uns/t", "-q", "1", "-m", "lost"])
    code, out, _ = finish(tern_sub(port, args + ["-t", "other/t", "-W", "2"], ready=False))
    check("-U FILTER alone: exit 0 at UNSUBACK; the kept session no longer gets the filter",
          first[0] == 0 and unsub[0] == 0 and code == 27 and out == b"",
          f"{first} {unsub} {code} {out!r}")

    tern_pub(port, ["-t", "ro/a", "-r", "-q", "1", "-m", "A"])
    tern_pub(port, ["-t", "ro/b", "-r", "-q", "1", "-m", "B"])
    code, out, _ = finish(tern_sub(port, ["-t", "ro/#", "--retained-only", "-W", "3"],
                                   ready=False))
    check("--retained-only prints the retained messages (no live message: -W ends it, 27)",
          code == 27 and sorted(out.splitlines()) == [b"A", b"B"], f"{code} {out!r}")
    sub = tern_sub(port, ["-t", "ro/#", "--retained-only", "-W", "5"], ready=False)
    time.sleep(1)
    tern_pub(port, ["-t", "ro/live", "-m", "L"])
    code, out, _ = finish(sub)
    check("--retained-only exits 0 at the first live message, without printing it",
          code == 0 and b"L" not in out, f"{code} {out!r}")

    # --no-local: the empty retained messages --remove-retained publishes do not come back.
    code, out, _ = finish(tern_sub(port, ["-t", "ro/#", "--retained-only", "--remove-retained",
                                          "--no-local", "-W", "2"], ready=False))
    left, lout, _ = finish(tern_sub(port, ["-t", "ro/#", "-W", "1"], ready=False))
    check("--remove-retained clears what it received; --no-local keeps our own clears away "
          "(-W ends it, 27)", code == 27 and sorted(out.splitlines()) == [b"A", b"B"] and
          left == 27 and lout == b"", f"{code} {out!r} {left} {lout!r}")

    tern_pub(port, ["-t", "rh/a", "-r", "-m", "kept"])
    code, out, _ = finish(tern_sub(port, ["-t", "rh/#", "--retain-handling", "2", "-W", "1"],
                                   ready=False))
    code0, out0, _ = finish(tern_sub(port, ["-t", "rh/#", "--retain-handling", "0", "-C", "1",
                                            "-W", "3"], ready=False))
    check("--retain-handling 2: no retained message on subscribe (0: sent)",
          code == 27 and out == b"" and code0 == 0 and out0 == b"kept\n", f"{out!r} {out0!r}")
    tern_pub(port, ["-t", "rh/a", "-r", "-n"])

    for rap in (True, False):
        sub = tern_sub(port, ["-t", "rap/t", "--json", "-C", "1"] +
                       (["--retain-as-published"] if rap else []))
        tern_pub(port, ["-t", "rap/t", "-r", "-m", "live"])
        code, out, _ = finish(sub)
        objs = json_lines(out) if code == 0 else []
        check(f"{'--retain-as-published' if rap else 'default'}: a live retained message "
              f"arrives with retain {str(rap).lower()}",
              len(objs) == 1 and objs[0]["retain"] is rap, f"{out!r}")
        tern_pub(port, ["-t", "rap/t", "-r", "-n"])  # clear it before the next subscriber

    sub = tern_sub(port, ["-t", "fmt/t", "--json", "--pretty", "--payload-format", "json",
                          "-C", "2"])
    tern_pub(port, ["-t", "fmt/t", "-m", '{"a": [1, 2],\n "b": null}'])
    tern_pub(port, ["-t", "fmt/t", "-m", "not json"])
    code, out, _ = finish(sub)
    text = out.decode()
    docs, dec, pos = [], json.JSONDecoder(), 0
    try:
        while pos < len(text.rstrip()):
            obj, pos = dec.raw_decode(text, pos)
            docs.append(obj)
            while pos < len(text) and text[pos].isspace():
                pos += 1
    except ValueError:
        pass
    check("--pretty --payload-format json: indented objects, a JSON payload as payload_json",
          code == 0 and text.count("\n") > 6 and len(docs) == 2 and
          docs[0].get("payload_json") == {"a": [1, 2], "b": None} and
          docs[1].get("payload") == "not json", f"{code} {out!r}")

    # A payload nested 100,000 deep (any publisher may send one) once overflowed the stack of
    # tern-sub --payload-format json; it is written as text, and the next message still comes.
    deep = "[" * 100000 + "]" * 100000
    sub = tern_sub(port, ["-t", "deep/t", "--json", "--payload-format", "json", "-C", "2"])
    tern_pub(port, ["-t", "deep/t", "-s"], stdin=deep.encode())  # over the argument limit
    tern_pub(port, ["-t", "deep/t", "-m", "[1]"])
    code, out, _ = finish(sub)
    objs = json_lines(out) if code == 0 else []
    check("--payload-format json: a payload nested 100,000 deep arrives as text, the next as JSON",
          len(objs) == 2 and objs[0].get("payload") == deep and
          objs[1].get("payload_json") == [1], f"{code} {out[:200]!r}")

    # One SUBSCRIBE for both filters, so both carry identifier 42; Mosquitto sends one copy
    # per matching subscription, tern-broker one copy for the overlapping pair.
    sub = tern_sub(port, ["-t", "sid/#", "--subscription-id", "42", "-t", "sid/x", "--json",
                          "-C", "1"])
    tern_pub(port, ["-t", "sid/x", "-m", "i"])
    code, out, _ = finish(sub)
    objs = json_lines(out) if code == 0 else []
    ids = objs[0]["properties"].get("subscription_identifier") if len(objs) == 1 else None
    check("--subscription-id 42: properties.subscription_identifier is [42] or [42, 42]",
          ids in ([42], [42, 42]), f"{code} {out!r}")


def check_format_string(port):
    # (no %E: the broker may count the expiry interval down across a second boundary)
    fmt = ("[%%|%A|%C|%D|%F|%l|%m|%P|%p|%q|%R|%r|%t|%x|%X|%10t|%-10t|%.3t|%5.2t|%05l|%-5m|"
           "%5F|%05F|%8C|%.2C|@@]\\t\\\\")
    expected = ("[%||text/json|cd|1|7|1|k:v k2:v2|{\"a\":1}|1|r/t|0|fmt/abc|"
                "7b2261223a317d|7B2261223A317D|   fmt/abc|fmt/abc   |fmt|   fm|00007|1    |"
                "    1|00001|text/json|te|@]\t\\\n")
    sub = tern_sub(port, ["-t", "fmt/#", "-q", "1", "-C", "1", "-F", fmt])
    ms = None
    if MOSQ:
        ms = spawn(["mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-q",
                    "1", "-t", "fmt/#", "-C", "1", "-F", fmt], stdout=subprocess.PIPE)
        time.sleep(0.5)
    pub = tern_pub(port, ["-t", "fmt/abc", "-q", "1", "-m", '{"a":1}',
                          "-D", "publish", "user-property", "k", "v",
                          "-D", "publish", "user-property", "k2", "v2",
                          "-D", "publish", "content-type", "text/json",
                          "-D", "publish", "correlation-data", "cd",
                          "-D", "publish", "message-expiry-interval", "60",
                          "-D", "publish", "payload-format-indicator", "1",
                          "-D", "publish", "response-topic", "r/t"])
    code, out, err = finish(sub)
    check("-F with Mosquitto's sequences, flags, width and precision",
          pub.returncode == 0 and code == 0 and out.decode() == expected,
          f"{out!r} != {expected!r} {err!r}")
    if ms:
        try:
            mout, _ = ms.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            ms.kill()
            mout, _ = ms.communicate()
        check("-F: byte for byte what mosquitto_sub -F prints for the same message",
              mout.decode() == expected, f"{mout!r} != {expected!r}")

    sub = tern_sub(port, ["-t", "fmtj/#", "-C", "1", "-F", "%J"])
    tern_pub(port, ["-t", "fmtj/a", "-m", "not json"])
    tern_pub(port, ["-t", "fmtj/a", "-m", '{"v": [1]}'])
    code, out, err = finish(sub)
    objs = json_lines(out) if code == 0 else []
    check("-F %J: a JSON payload as a value (an error line for one that is not)",
          len(objs) == 1 and objs[0]["payload"] == {"v": [1]} and objs[0]["topic"] == "fmtj/a"
          and "not valid JSON" in err, f"{out!r} {err!r}")
    bad = subprocess.run([SUB, "-p", str(port), "-t", "x", "-F", "%Z"], capture_output=True,
                         timeout=20)
    bad2 = subprocess.run([SUB, "-p", str(port), "-t", "x", "-F", "%t", "--json"],
                          capture_output=True, timeout=20)
    check("-F with an unknown sequence or with --json: usage error",
          bad.returncode == 2 and b"%Z" in bad.stderr and bad2.returncode == 2, f"{bad.stderr!r}")


# ---- lost connections, --reconnect -------------------------------------------------------

def check_json_error():
    dead = base.free_port()
    sub = subprocess.run([SUB, "-h", "127.0.0.1", "-p", str(dead), "-t", "x", "--json"],
                         capture_output=True, timeout=20)
    lines = sub.stderr.decode().splitlines()
    try:
        obj = json.loads(lines[1])
    except (IndexError, ValueError):
        obj = {}
    check("tern-sub --json: an error is one line, then a JSON error object on stderr",
          sub.returncode == 1 and len(lines) == 2 and lines[0].startswith("tern-sub: error:")
          and obj.get("exit_status") == 1 and "cannot connect" in obj.get("error", ""),
          f"{sub.returncode} {sub.stderr!r}")


def check_lost_without_reconnect():
    broker, port = (base.start_mosquitto("allow_anonymous true") if MOSQ
                    else base.start_tern_broker())
    pub = spawn([PUB, "-h", "127.0.0.1", "-p", str(port), "-t", "lost/t", "-q", "1", "-l"],
                stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    pub.stdin.write(b"one\n")
    pub.stdin.flush()
    waiting = tern_sub(port, ["-t", "lost/#", "--reconnect", "-W", "3"])
    time.sleep(0.5)
    broker.kill()
    broker.wait()
    start = time.time()
    try:
        code = pub.wait(10)
    except subprocess.TimeoutExpired:
        code = None
    took = time.time() - start
    err = pub.stderr.read()
    check("tern-pub -l without --reconnect: the broker dies -> exit 1 at once, one clear line",
          code == 1 and took < 3 and (b"connection lost" in err or b"closed" in err),
          f"{code} {took:.2f}s {err!r}")
    code, _, serr = finish(waiting, 15)
    check("tern-sub --reconnect -W 3: the broker stays away -> retries, then exit 27 at -W",
          code == 27 and "reconnecting" in serr, f"{code} {serr!r}")


def start_persistent_mosquitto(port, store):
    conf = os.path.join(WORK, f"persist-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                f"persistence true\npersistence_location {store}/\n")
    log = open(os.path.join(WORK, f"persist-{port}.log"), "a")
    p = spawn([base.MOSQUITTO, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    if not base.wait_port(port):
        sys.exit("FAIL: mosquitto did not start")
    return p


def check_reconnect():
    """Mosquitto (persistence on) stopped and started again on the same port while tern-pub -l
    --reconnect sends at QoS 1 and a tern-sub -c --reconnect session receives: every line
    arrives at least once."""
    port = base.free_port()
    store = os.path.join(WORK, "store")
    os.makedirs(store)
    os.chmod(store, 0o777)  # Mosquitto started as root writes it as the mosquitto user
    os.chmod(WORK, 0o711)
    broker = start_persistent_mosquitto(port, store)
    count = 300
    out = open(os.path.join(WORK, "reconnect.out"), "w+")
    err = open(os.path.join(WORK, "reconnect.err"), "w+")
    sub = spawn([SUB, "-h", "127.0.0.1", "-p", str(port), "-c", "-i", "tern-rsub", "-x", "3600",
                 "-q", "1", "-t", "rc/#", "--reconnect", "-d"], stdout=out, stderr=err)
    wait_for(lambda: "subscribed" in open(err.name).read())
    pub = spawn([PUB, "-h", "127.0.0.1", "-p", str(port), "-t", "rc/t", "-q", "1", "-l",
                 "--reconnect", "--rate", "200"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for i in range(count):
        pub.stdin.write(b"line %d\n" % i)
        pub.stdin.flush()
        if i == count // 3:
            time.sleep(0.1)
            stop(broker)  # SIGTERM: Mosquitto saves the sessions, then exits
            time.sleep(0.5)
            broker = start_persistent_mosquitto(port, store)
        time.sleep(0.005)
    pub.stdin.close()
    try:
        pcode = pub.wait(60)
    except subprocess.TimeoutExpired:
        pub.kill()
        pcode = None
    perr = pub.stderr.read()
    want = {f"line {i}" for i in range(count)}
    got = lambda: set(open(out.name).read().splitlines())  # noqa: E731
    wait_for(lambda: want <= got(), 20)
    stop(sub, signal.SIGINT)
    missing = sorted(want - got(), key=lambda s: int(s.split()[1]))
    serr = open(err.name).read()
    check("--reconnect: Mosquitto restarted mid-stream; tern-pub -l -q 1 exits 0, says it "
          "reconnected, and every line reaches the tern-sub -c --reconnect session",
          pcode == 0 and b"reconnected" in perr and "reconnected" in serr and not missing,
          f"pub={pcode} {perr!r} missing={len(missing)} {missing[:5]} sub: {serr!r}")
    stop(broker)


def check_reconnect_tern_broker():
    """tern-broker keeps no session across a restart: tern-pub reconnects and resends what
    was not acknowledged; a tern-sub --reconnect subscribes again."""
    broker, port = base.start_tern_broker()
    # The broker stops only once "before" went through it, so tern-pub's first connection is
    # to the first broker however slowly the machine starts it.
    out0 = open(os.path.join(WORK, "rt-before.out"), "w+")
    err0 = open(os.path.join(WORK, "rt-before.err"), "w+")
    sub0 = spawn([SUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "rt/#", "-C", "1",
                  "-d"], stdout=out0, stderr=err0)
    wait_for(lambda: "subscribed" in open(err0.name).read())
    pub = spawn([PUB, "-h", "127.0.0.1", "-p", str(port), "-t", "rt/t", "-q", "1", "-l",
                 "--reconnect"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    pub.stdin.write(b"before\n")
    pub.stdin.flush()
    wait_for(lambda: "before" in open(out0.name).read(), 20)
    stop(sub0)
    stop(broker)
    time.sleep(0.3)
    # tern-broker picks a port with -p 0: start it on the same one.
    log = open(os.path.join(WORK, "broker2.log"), "w+")
    broker = spawn([os.path.join(base.BIN, "tern-broker"), "-p", str(port)], stderr=log)
    if not base.wait_port(port):
        check("tern-broker restarted on the same port", False, "did not start")
        return
    sub = tern_sub(port, ["-t", "rt/#", "-q", "1", "-C", "1", "-W", "20"])
    pub.stdin.write(b"after\n")
    pub.stdin.close()
    code, out, _ = finish(sub, 25)
    try:
        pcode = pub.wait(30)
    except subprocess.TimeoutExpired:
        pub.kill()
        pcode = None
    perr = pub.stderr.read()
    check("--reconnect (tern-broker restarted): tern-pub reconnects, 'after' is delivered, exit 0",
          pcode == 0 and b"reconnected" in perr and out == b"after\n",
          f"{pcode} {perr!r} {code} {out!r}")
    stop(broker)


def main():
    try:
        if MOSQ:
            for tool in (base.MOSQUITTO,):
                if not os.path.exists(tool):
                    print("SKIP: mosquitto not installed")
                    return 77
            broker, port = base.start_mosquitto("allow_anonymous true\nmax_queued_messages 0")
        else:
            broker, port = base.start_tern_broker()
        check_will(port)
        check_properties(port)
        check_json_in(port)
        check_sub_options(port)
        check_format_string(port)
        check_json_error()
        check_lost_without_reconnect()
        if MOSQ:
            check_reconnect()
        else:
            check_reconnect_tern_broker()
    finally:
        for p in base.PROCS:
            stop(p)
        import shutil
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"{len(base.FAILURES)} failed" if base.FAILURES else "all passed")
    return 1 if base.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
