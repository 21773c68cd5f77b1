#!/usr/bin/env bash
# Every tool answers --help (status 0, a real help text with the exit status section) and
# --version ("<tool> <project version>", the same for all), and a bad flag exits 2 with a
# one-line message naming the tool.
#
#   help-and-version.sh BIN_DIR VERSION TOOL...
set -uo pipefail

bin=${1:?usage: $0 BIN_DIR VERSION TOOL...}
version=${2:?usage: $0 BIN_DIR VERSION TOOL...}
shift 2
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

for tool in "$@"; do
    exe="$bin/$tool"
    [ -x "$exe" ] || { fail "$tool: $exe is missing"; continue; }

    help=$("$exe" --help 2>&1); status=$?
    [ "$status" -eq 0 ] || fail "$tool --help exited $status, not 0"
    lines=$(printf '%s\n' "$help" | wc -l)
    [ "$lines" -ge 15 ] || fail "$tool --help printed only $lines lines"
    for section in "Usage: $tool" "Examples:" "Exit status:" "--version"; do
        grep -qF -- "$section" <<< "$help" || fail "$tool --help lacks '$section'"
    done

    out=$("$exe" --version 2>&1); status=$?
    [ "$status" -eq 0 ] || fail "$tool --version exited $status, not 0"
    [ "$out" = "$tool $version" ] || fail "$tool --version printed '$out', not '$tool $version'"

    err=$("$exe" --no-such-flag 2>&1 >/dev/null); status=$?
    [ "$status" -eq 2 ] || fail "$tool --no-such-flag exited $status, not 2"
    grep -q "^$tool: .*--no-such-flag" <<< "$err" || fail "$tool --no-such-flag said: $err"
done

echo "tools: $# checked, $failures failure(s)"
[ "$failures" -eq 0 ]
