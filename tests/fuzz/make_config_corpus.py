#!/usr/bin/python3
"""Writes the seed corpus of config_fuzz (tests/fuzz/corpus/config/): the configuration,
acl_file and password examples of docs/*.md and packaging/tern.conf, and a few hand-made
inputs for each of the target's six modes (see config_fuzz.cpp: a mode byte, then parts
split on NUL bytes). Files already in the directory (inputs a fuzzer found) are kept.

usage: make_config_corpus.py [OUT_DIR]   (default: tests/fuzz/corpus/config)
"""

import base64
import hashlib
import os
import re
import sys

from seed_files import write_seeds

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus", "config")

BROKER, BRIDGE, ACL, FILTERS, PASSWORDS, HTTP = range(6)

ACL_WORDS = {"user", "topic", "pattern"}
BRIDGE_WORDS = {"connection", "address", "addresses"}
BROKER_WORDS = {
    "listener", "allow_anonymous", "persistence", "password_file", "acl_file", "max_queued_messages",
    "max_inflight_messages", "per_listener_settings", "protocol", "certfile", "require_certificate",
    "sys_interval", "log_type", "metrics_listener", "threads", "persistence_sync", "include_dir",
    "max_packet_size", "message_size_limit", "retain_available", "max_keepalive", "mqttsn_listener",
}


def seed(seeds, mode, *parts):
    seeds.append(bytes([mode]) + b"\0".join(p.encode() if isinstance(p, str) else p for p in parts))


def doc_blocks():
    paths = [os.path.join(ROOT, "docs", n) for n in sorted(os.listdir(os.path.join(ROOT, "docs")))]
    for path in paths:
        if not path.endswith(".md"):
            continue
        text = open(path, encoding="utf-8").read()
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
            yield block
        # Indented examples: four spaces, after a blank line.
        for block in re.findall(r"(?:^\n)((?:^    .*\n)+)", text, flags=re.M):
            yield "\n".join(line[4:] for line in block.splitlines()) + "\n"


def first_word(block):
    for line in block.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split()[0]
    return ""


def pbkdf2_line(user, password, iterations=101):
    salt = hashlib.sha256(user.encode()).digest()[:12]
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def sha512_line(user, password):
    salt = hashlib.sha256(b"s" + user.encode()).digest()[:12]
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def main():
    seeds = []
    for block in doc_blocks():
        word = first_word(block)
        if word in ACL_WORDS:
            seed(seeds, ACL, block, "alice", "sensor-1", "a/b", "sensors/sensor-1/t", "#", "a/+")
        elif word in BRIDGE_WORDS or word.startswith("bridge_"):
            seed(seeds, BRIDGE, block)
            seed(seeds, BROKER, "listener 1883 127.0.0.1\n" + block)
        elif word in BROKER_WORDS:
            seed(seeds, BROKER, block)
    seed(seeds, BROKER, open(os.path.join(ROOT, "packaging", "tern.conf"), encoding="utf-8").read())
    seed(seeds, BROKER, "listener 1883\ninclude_dir /etc/tern/conf.d\n",
         "allow_anonymous true\n", "listener 8883\ncertfile /x.pem\nkeyfile /y.pem\n")
    seed(seeds, BROKER, "per_listener_settings true\nlistener 1883\nallow_anonymous false\n"
         "password_file /p\nacl_file /a\nlistener 9001\nprotocol websockets\nmax_connections 10\n")
    seed(seeds, BROKER, "listener 1883\nconnection b1\naddress 127.0.0.1:1884\ntopic # both 1\n")

    bridge = ("connection central\naddress central.example.com:8883\n"
              "bridge_cafile /etc/ssl/certs/ca-certificates.crt\ntopic sensors/# out 1 \"\" site1/\n"
              "topic cmd/# in 1\nremote_username site1\nremote_password secret\n"
              "bridge_protocol_version mqttv50\nqueue_max_bytes 64K\nqueue full drop-oldest\n")
    seed(seeds, BRIDGE, bridge)
    seed(seeds, BRIDGE, "queue_max_bytes 1G\nconnection a\naddresses h1:1883 h2:1884\ntopic # both 2\n"
         "cleansession false\nkeepalive_interval 30\nconnection b\naddress ws://h/mqtt\ntopic x in\n")
    seed(seeds, ACL, "user alice\ntopic readwrite a/#\ntopic deny a/secret\n"
         "pattern read %u/%c/#\npattern deny $SYS/#\n",
         "alice", "c1", "a/b", "a/secret", "alice/c1/x", "a/#", "+/c1/#", "$SYS/x")
    seed(seeds, ACL, "topic read public/#\nuser bob\ntopic write cmd/+\n", "", "anon", "public/x",
         "cmd/y", "#")
    seed(seeds, FILTERS, "a/+", "+/b", "a/b", "a/c", "x/b")
    seed(seeds, FILTERS, "a/#", "+/+", "a", "a/b", "a/b/c")
    seed(seeds, FILTERS, "$SYS/#", "#", "$SYS/broker", "x")
    seed(seeds, FILTERS, "+/+/#", "a/+/c", "a/b/c", "a/b", "a/b/c/d")
    seed(seeds, PASSWORDS, "\n".join([pbkdf2_line("alice", "a"), "# comment",
                                      sha512_line("bob", "b"), "broken line", ""]),
         "carol", "alice", "bob")
    seed(seeds, PASSWORDS, pbkdf2_line("alice", "a") + "\n" + pbkdf2_line("alice", "b") + "\n",
         "alice")
    seed(seeds, PASSWORDS, "", "dave")
    for request in ["GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                    "GET /healthz?x=1 HTTP/1.0\r\n\r\nbody",
                    "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                    "GET /nope HTTP/1.1\r\n\r\n", "BAD\r\n\r\n", "1h", "64K", "[::1]:1883",
                    "drop-oldest", "mqtts://host:8883"]:
        seed(seeds, HTTP, request)

    write_seeds(OUT, seeds)


if __name__ == "__main__":
    main()
