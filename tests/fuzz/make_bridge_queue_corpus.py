#!/usr/bin/python3
"""Writes the seed corpus of bridge_queue_fuzz (tests/fuzz/corpus/bridge_queue/) in its
input encoding: a knob byte, files until 0xFF, then operations (see bridge_queue_fuzz.cpp).
Run it again after changing either."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "bridge_queue")
NEXT, DONE, PUBREC, APPEND, SAVE, REOPEN = 0, 2, 3, 4, 5, 6


def u16(v):
    return bytes([v & 0xFF, v >> 8])


def segment(first, records, kind=0):
    """records: (flags, body); flags 0x20 adds a source packet id, 0x40 a bad CRC,
    0x80 cuts the record short, 0x10 a gap before it."""
    out = bytes([kind]) + u16(first) + bytes([len(records)])
    for flags, body in records:
        out += bytes([flags])
        if flags & 0x10:
            out += bytes([3])
        if flags & 0x20:
            out += u16(7)
        out += bytes([len(body)]) + body
    return out


def state(slot, generation, acked, sent, entries, flags=0):
    out = bytes([2 + 6 * slot, flags, generation]) + u16(acked) + u16(sent)
    out += bytes([len(entries)])
    for seq, phase in entries:
        out += u16(seq) + bytes([phase])
    return out


def ops(*items):
    out = b""
    for item in items:
        if isinstance(item, bytes):
            out += item
        elif isinstance(item, tuple):
            out += bytes(item)
        else:
            out += bytes([item])
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        # An empty directory: append, send, acknowledge, reopen.
        "empty_then_traffic": bytes([0x00, 0xFF]) + ops(
            bytes([APPEND, 5]) + b"hello" + u16(0), bytes([APPEND, 3]) + b"two" + u16(9), NEXT, NEXT,
            (DONE, 0), SAVE, REOPEN, NEXT),
        # Three records, a state that acknowledged the first, then traffic and a reopen.
        "segment_and_state": bytes([0x00]) + segment(0, [(0, b"a"), (0x20, b"bb"), (0, b"ccc")])
        + state(0, 1, 1, 2, [(2, 1)]) + b"\xff" + ops(NEXT, NEXT, (PUBREC, 0), SAVE, REOPEN, NEXT),
        # Two segments, the last torn; both state slots, one with a bad CRC.
        "torn_tail_two_slots": bytes([0x08]) + segment(0, [(0, b"x" * 10)] * 3)
        + segment(3, [(0, b"y"), (0x80, b"torn record")])
        + state(0, 4, 0, 1, []) + state(1, 5, 1, 3, [(1, 2)], flags=2) + b"\xff"
        + ops(NEXT, NEXT, NEXT, bytes([APPEND, 1]) + b"z" + u16(0), REOPEN, NEXT, NEXT),
        # A bad CRC in the middle, a gap in the sequences, odd files; a small bound.
        "damage_and_odd_files": bytes([0x01]) + segment(10, [(0, b"ok"), (0x40, b"bad"), (0x10, b"gap")])
        + bytes([4]) + u16(99) + bytes([5, 4]) + b"note" + b"\xff"
        + ops(NEXT, NEXT, bytes([APPEND, 60]) + b"q" * 60 + u16(0), bytes([APPEND, 60]) + b"r" * 60 + u16(0), REOPEN),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
