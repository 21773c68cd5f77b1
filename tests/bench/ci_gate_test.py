#!/usr/bin/env python3
"""bench/ci-gate, the CI job of docs/ci.md, run for real against tern-broker on loopback:
a clean run passes and keeps its reports; a baseline it cannot reach fails it with status 4;
a baseline of another scenario is a usage error (2).

    ci_gate_test.py SOURCE_DIR BIN_DIR
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

SRC, BIN = sys.argv[1], sys.argv[2]
GATE = os.path.join(SRC, "bench", "ci-gate")
WORK = tempfile.mkdtemp(prefix="tern-ci-gate-")
FAILURES = []
NAMES = ("pairs-q1", "fanin-q0", "conn")


def check(name, ok, detail=""):
    print(("PASS: " if ok else "FAIL: ") + name + ("" if ok else f"\n    {detail}"), flush=True)
    if not ok:
        FAILURES.append(name)
    return ok


def gate(out, baseline=None):
    env = dict(os.environ, TERN_GATE_COUNT="2000")
    cmd = [GATE, BIN, os.path.join(WORK, out)] + ([os.path.join(WORK, baseline)] if baseline
                                                  else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    return p.returncode, p.stdout + p.stderr


def report(out, name):
    with open(os.path.join(WORK, out, name + ".json")) as f:
        return json.load(f)


def main():
    code, log = gate("first")
    check("a clean run exits 0", code == 0, log)
    for name in NAMES:
        try:
            d = report("first", name)
        except (OSError, ValueError) as e:
            check(f"{name}: report kept", False, str(e))
            continue
        check(f"{name}: report kept, status ok", d.get("status") == "ok", json.dumps(d)[:300])

    # A baseline 100 times faster than this machine: the pairs run regresses.
    os.makedirs(os.path.join(WORK, "fast"))
    for name in NAMES:
        d = report("first", name)
        if name == "pairs-q1":
            d["rates"]["headline"] *= 100
        with open(os.path.join(WORK, "fast", name + ".json"), "w") as f:
            json.dump(d, f)
    code, log = gate("second", "fast")
    check("an unreachable baseline exits 4", code == 4, log)
    check("the gate names the run that regressed",
          "pairs-q1: threshold missed or regressed" in log, log)
    d = report("second", "pairs-q1")
    names = [v["name"] for v in d["thresholds"]["violations"]]
    check("the kept report says regression-rate", "regression-rate" in names, str(names))
    # Whether they pass depends on the machine's noise; that they were compared does not.
    check("the other runs were compared with their baselines",
          all(report("second", n)["thresholds"]["limits"].get("baseline") for n in NAMES))

    # A baseline of another scenario cannot be compared: a usage error.
    os.makedirs(os.path.join(WORK, "wrong"))
    shutil.copy(os.path.join(WORK, "first", "conn.json"),
                os.path.join(WORK, "wrong", "pairs-q1.json"))
    code, log = gate("third", "wrong")
    check("a baseline of another scenario exits 2", code == 2, log)

    print(f"{len(FAILURES)} failure(s)" + (": " + ", ".join(FAILURES) if FAILURES else ""))
    shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
