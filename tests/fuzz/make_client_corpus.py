#!/usr/bin/python3
"""Writes the seed corpus of client_fuzz (tests/fuzz/corpus/client/): for each protocol
version and a few session options, operation sequences that connect, subscribe, take
messages of every QoS, publish with acknowledgements, lose the connection and reconnect
(see client_fuzz.cpp for the operation bytes). Files already in the directory (inputs a
fuzzer found) are kept.

usage: make_client_corpus.py [OUT_DIR]   (default: tests/fuzz/corpus/client)
"""

import os
import sys

from seed_files import write_seeds

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus", "client")

# Operations (op % 20) and their argument bytes.
RAW, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK = 0, 1, 2, 4, 5, 6, 7, 8, 9
PINGRESP, DISCONNECT, APP_PUBLISH, SUBSCRIBE, UNSUBSCRIBE, ACK, TIME, RECONNECT = 10, 11, 12, 14, 15, 16, 17, 18


def session(connack_flags=0x00):
    ops = [CONNACK, connack_flags]
    if connack_flags & 4:
        ops += [3]  # receive maximum
    if connack_flags & 8:
        ops += [2]  # topic alias maximum
    ops += [SUBSCRIBE, 1, 1, 2, SUBACK, 0, 1, 2]
    ops += [PUBLISH, 0x10, 3, ord("h"), ord("e"), ord("y")]            # QoS 0 on a/b
    ops += [PUBLISH, 0x21, 250, 2, ord("o"), ord("k")]                 # QoS 1, id 251
    ops += [PUBLISH, 0x32, 250, 0, PUBREL, 250]                        # QoS 2, id 251, PUBREL
    ops += [ACK, 0, 0, ACK, 0, 0]
    ops += [APP_PUBLISH, 0x09, 2, ord("m"), ord("1"), PUBACK, 0, 0]     # QoS 1 out, acked
    ops += [APP_PUBLISH, 0x0A, 2, ord("m"), ord("2"), PUBREC, 0, 0, PUBCOMP, 0]
    ops += [APP_PUBLISH, 0x09, 1, ord("x"), TIME, 0x07, 0xD0]          # keep alive passes
    ops += [RECONNECT, CONNACK, 0x01, PUBACK, 0, 0]                     # resumed, resend acked
    ops += [UNSUBSCRIBE, UNSUBACK, 0, PINGRESP, 19, 0]                  # then disconnect
    return ops


def main():
    seeds = []
    for knob in (0x00, 0x01, 0x02, 0x09, 0x19, 0x39, 0x4D):
        seeds.append(bytes([knob] + session()))
        seeds.append(bytes([knob] + session(0x0C)))
    # Garbage from the broker before and after the CONNACK, a refused CONNACK, a DISCONNECT.
    seeds.append(bytes([0x01, RAW, 4, 0x20, 0x02, 0x00, 0x00, RAW, 3, 0xF0, 0x00, 0x00]))
    seeds.append(bytes([0x01, CONNACK, 0x02, 0x87, APP_PUBLISH, 0x09, 0]))
    seeds.append(bytes([0x01, CONNACK, 0x00, DISCONNECT, 0x8E, RECONNECT, CONNACK, 0x00]))
    seeds.append(bytes([0x01, CONNACK, 0x88, 2, PUBLISH, 0x90, 1, 0, 0, PUBLISH, 0x90, 1, 1, 0]))
    write_seeds(OUT, seeds)


if __name__ == "__main__":
    main()
