#!/usr/bin/env bash
# `cmake --install` into a scratch prefix and the .deb from cpack, unpacked with dpkg-deb -x
# into a scratch root (never dpkg -i: that would change the machine): the five tools run
# (--version), the man pages, completions, example configuration, systemd unit and sysusers.d
# file are where docs/install.md says; the unit names the installed broker and configuration
# and passes `systemd-analyze verify` (when systemd-analyze is there); the example
# configuration is accepted by the installed broker; the .deb's Depends and conffiles are right.
# Uses the binaries of BUILD_DIR as they are (nothing is compiled).
#
# usage: install_test.sh BUILD_DIR VERSION
# exit:  0 all passed, 1 a check failed, 77 cpack or dpkg-deb missing (skipped)
set -uo pipefail

build=${1:?usage: $0 BUILD_DIR VERSION}
version=${2:?usage: $0 BUILD_DIR VERSION}
for tool in cmake cpack dpkg-deb; do
    command -v "$tool" > /dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
tools=(tern-broker tern-pub tern-sub tern-bridge tern-bench)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check_tree ROOT PREFIX ETC: the files of an install under ROOT (PREFIX and ETC as the
# installed system sees them, e.g. /usr and /etc).
check_tree() {
    local root=$1 prefix=$2 etc=$3 missing=0 f t
    local files=("$prefix/share/man/man5/tern.conf.5" "$prefix/share/doc/tern/examples/tern.conf"
                 "$prefix/lib/systemd/system/tern-broker.service" "$prefix/lib/sysusers.d/tern.conf"
                 "$etc/tern/tern.conf")
    for t in "${tools[@]}"; do
        files+=("$prefix/bin/$t" "$prefix/share/man/man1/$t.1"
                "$prefix/share/bash-completion/completions/$t"
                "$prefix/share/zsh/vendor-completions/_$t"
                "$prefix/share/fish/vendor_completions.d/$t.fish")
    done
    for f in "${files[@]}"; do
        [[ -f $root$f ]] || { fail "$root: $f missing"; missing=$((missing + 1)); }
    done
    ((missing == 0)) && pass "$root: all ${#files[@]} files at their paths"
    for t in "${tools[@]}"; do
        [[ -x $root$prefix/bin/$t ]] || continue
        out=$("$root$prefix/bin/$t" --version 2>&1)
        [[ $out == "$t $version" ]] || fail "$t --version: $out"
    done
    out=$("$root$prefix/bin/tern-broker" --version 2>&1) && [[ $out == "tern-broker $version" ]] &&
        pass "installed tern-broker --version: $out"
    # The man pages are found by name through the installed tree.
    if command -v man > /dev/null; then
        MANPATH=$root$prefix/share/man man -w 5 tern.conf > /dev/null 2>&1 &&
            MANPATH=$root$prefix/share/man man -w tern-broker > /dev/null 2>&1 &&
            pass "man finds tern-broker(1) and tern.conf(5) under $prefix/share/man" ||
            fail "man does not find the installed pages"
    fi
    # The unit runs the installed broker on the installed configuration, as user tern.
    local unit=$root$prefix/lib/systemd/system/tern-broker.service
    grep -qxF "ExecStart=$prefix/bin/tern-broker -c $etc/tern/tern.conf" "$unit" &&
        grep -qx 'User=tern' "$unit" && grep -qx 'StateDirectory=tern' "$unit" &&
        grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" &&
        pass "unit: ExecStart, User, StateDirectory, ExecReload" || fail "unit: $(grep -E '^(ExecStart|User)=' "$unit")"
    for h in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
             CapabilityBoundingSet=; do
        grep -qx "$h" "$unit" || fail "unit: no $h"
    done
    # The example configuration is one the installed broker accepts.
    if "$root$prefix/bin/tern-broker" -c "$root$etc/tern/tern.conf" --print-config > "$work/print.json" 2> "$work/print.err"; then
        grep -q '"persistence_location":"/var/lib/tern"' "$work/print.json" &&
            pass "example configuration accepted (--print-config)" || fail "example: $(head -c 300 "$work/print.json")"
    else
        fail "the example configuration is refused: $(cat "$work/print.err")"
    fi
}

# ---- cmake --install
prefix=$work/prefix
if cmake --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1; then
    check_tree "" "$prefix" "$prefix/etc"
    if command -v systemd-analyze > /dev/null; then
        # The unit's binary exists here, and Documentation= is looked up in MANPATH.
        if MANPATH=$prefix/share/man systemd-analyze verify \
            "$prefix/lib/systemd/system/tern-broker.service" > "$work/verify.log" 2>&1; then
            pass "systemd-analyze verify"
        else
            fail "systemd-analyze verify:"; sed 's/^/    /' "$work/verify.log"
        fi
    else
        echo "SKIP: systemd-analyze not installed"
    fi
else
    fail "cmake --install failed"; tail -n 20 "$work/install.log"
fi

# ---- the .deb
if cpack --config "$build/CPackConfig.cmake" -B "$work/deb" > "$work/cpack.log" 2>&1; then
    deb=$(find "$work/deb" -maxdepth 1 -name "tern_${version}_*.deb" | head -n 1)
    if [[ -n $deb ]]; then
        pass "cpack made $(basename "$deb") ($(stat -c %s "$deb") bytes)"
        dpkg-deb -f "$deb" Depends > "$work/depends"
        for dep in libc6 libssl3 'libstdc\+\+6'; do
            grep -qE "(^|, )$dep( |,|$)" "$work/depends" || fail "Depends lacks $dep: $(cat "$work/depends")"
        done
        pass "Depends: $(cat "$work/depends")"
        dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$work" ./conffiles ./postinst 2> /dev/null
        grep -qx /etc/tern/tern.conf "$work/conffiles" && pass "conffiles: /etc/tern/tern.conf" ||
            fail "conffiles: $(cat "$work/conffiles" 2>/dev/null)"
        sh -n "$work/postinst" && grep -q 'systemd-sysusers tern.conf' "$work/postinst" &&
            pass "postinst parses and creates the tern user" || fail "postinst"
        mkdir -p "$work/root"
        dpkg-deb -x "$deb" "$work/root"
        check_tree "$work/root" /usr /etc
    else
        fail "no .deb in $work/deb"; ls "$work/deb"
    fi
else
    fail "cpack failed"; tail -n 30 "$work/cpack.log"
fi

echo "$failures failure(s)"
[[ $failures == 0 ]]
