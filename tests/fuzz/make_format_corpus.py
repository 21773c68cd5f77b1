#!/usr/bin/python3
"""Writes the seed corpus of format_fuzz (tests/fuzz/corpus/format/): PUBLISH packets of
MQTT 3.1.1 and 5.0 (text, binary, JSON and empty payloads; every property a PUBLISH can
carry), lines for tern-pub --json-in, and -F format strings followed by a PUBLISH. The
first byte of each is the target's knob (see format_fuzz.cpp). Files already in the
directory (inputs a fuzzer found) are kept.

usage: make_format_corpus.py [OUT_DIR]   (default: tests/fuzz/corpus/format)
"""

import os
import struct
import sys

from seed_files import write_seeds

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus", "format")

V5 = 4  # knob bits: mode in bits 0-1, version bit 2, payload_json bit 3, pretty bit 4
JSON_OUT, JSON_IN, FORMAT = 0, 2, 3


def utf8_string(b):
    return struct.pack(">H", len(b)) + b


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def publish(topic, payload, qos=0, retain=False, dup=False, v5=False, properties=b""):
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = utf8_string(topic)
    if qos:
        body += struct.pack(">H", 7)
    if v5:
        body += props(properties) if properties else b"\x00"
    return bytes([flags]) + body + payload


ALL_PROPS = (b"\x02" + struct.pack(">I", 60) + b"\x03" + utf8_string(b"text/plain")
             + b"\x08" + utf8_string(b"reply/to") + b"\x09" + utf8_string(b"\x00\xffid")
             + b"\x0b\x05" + b"\x23" + struct.pack(">H", 3)
             + b"\x26" + utf8_string(b"k") + utf8_string(b"v")
             + b"\x26" + utf8_string(b"k") + utf8_string(b"v2"))


def main():
    seeds = []
    for v5 in (False, True):
        knob = V5 if v5 else 0
        p = ALL_PROPS if v5 else b""
        text = b"\x01\x01" + ALL_PROPS if v5 else b""  # payload format indicator: UTF-8
        seeds += [
            bytes([knob]) + publish(b"a/b", b"hello", v5=v5),
            bytes([knob]) + publish(b"sensors/t1", b"\x00\xff\xfe binary", qos=1, v5=v5, properties=p),
            bytes([knob]) + publish(b"x", b"", qos=2, retain=True, v5=v5),
            bytes([knob | 8]) + publish(b"j", b'{"t": 21.5, "u": ["a", null]}', v5=v5),
            bytes([knob | 8 | 16]) + publish(b"j", b"[1, 2, {\"k\": true}]", qos=1, v5=v5, properties=p),
            bytes([knob | 16]) + publish("ü/☃".encode(), "caf\u00e9 \u2603".encode(), dup=True, qos=1, v5=v5),
            bytes([knob]) + publish(b"t/u", b"text", qos=1, v5=v5, properties=text),
            # Past the nesting limit (1,000): written as text, %J refuses it.
            bytes([knob | 8]) + publish(b"deep", b"[" * 1001 + b"]" * 1001, v5=v5),
            bytes([FORMAT | knob]) + b"%J\0" + publish(b"deep", b"{\"a\":" * 1001 + b"1" + b"}" * 1001, v5=v5),
            bytes([FORMAT | knob]) + b"%t %p %x %l %q %r %m %I %j\0" + publish(b"f/g", b"pay", qos=1, v5=v5, properties=p),
            bytes([FORMAT | knob]) + b"%-10.3t|%08l|%A %C %D %E %F %P %R %S %J @Y-@m-@d @N \\n\0"
            + publish(b"f", b'{"a":1}', v5=v5, properties=p),
        ]
    for line in [
        b'{"topic":"a/b","payload":"hello","qos":1,"retain":true}',
        b'{"topic":"a","payload_base64":"AP8=","dup":false,"mid":3,"received_at":"x"}',
        b'{"topic":"p","payload":"","properties":{"content_type":"t","user_properties":[["k","v"]],'
        b'"message_expiry_interval":5,"correlation_data":"c","response_topic":"r","payload_format_indicator":1}}',
        b'{"topic":"a/+","payload":"x"}',
        b'{"payload":"x","qos":3}',
        b"not json",
    ]:
        seeds.append(bytes([JSON_IN]) + line)

    write_seeds(OUT, seeds)


if __name__ == "__main__":
    main()
