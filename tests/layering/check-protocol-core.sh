#!/usr/bin/env bash
# Fails if the sans-I/O protocol core includes an I/O or threading header: Boost.Asio,
# Boost.Beast, <sys/socket.h> or <thread>. Time and I/O come in as arguments instead.
#
#   check-protocol-core.sh DIR...     check every file under the DIRs
#   check-protocol-core.sh --self-test   make sure the check catches each forbidden include
set -euo pipefail

forbidden='^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]((boost/(asio|beast))([./][^>"]*)?|sys/socket\.h|thread)[>"]'

check() {
    local files hits
    files=$(find "$@" -type f \( -name '*.hpp' -o -name '*.h' -o -name '*.cpp' -o -name '*.ipp' \) | wc -l)
    if hits=$(grep -rEn "$forbidden" "$@"); then
        echo "The protocol core must stay free of I/O; these includes break the layering:"
        echo "$hits"
        return 1
    fi
    echo "protocol core: $files files checked, no I/O or threading include"
}

self_test() {
    local dir status=0 header
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' RETURN
    printf '#include <cstdint>\n#include "mqtt/protocol/types.hpp"\n' > "$dir/clean.hpp"
    check "$dir" > /dev/null || { echo "self-test: a clean file was rejected"; return 1; }
    for header in '<boost/asio.hpp>' '<boost/asio/ip/tcp.hpp>' '<boost/beast/core.hpp>' \
                  '<sys/socket.h>' '<thread>' '"boost/asio/io_context.hpp"'; do
        printf '  #  include %s\n' "$header" > "$dir/bad.cpp"
        if check "$dir" > /dev/null; then
            echo "self-test: #include $header was not caught"
            status=1
        fi
    done
    [ "$status" -eq 0 ] && echo "self-test: every forbidden include was caught"
    return "$status"
}

if [ "${1:-}" = "--self-test" ]; then
    self_test
else
    [ $# -gt 0 ] || { echo "usage: $0 DIR... | --self-test" >&2; exit 2; }
    check "$@"
fi
