#!/usr/bin/env bash
# The committed man pages and completions are exactly what scripts/gen-docs makes from the
# current --help texts: a changed description or example needs `scripts/gen-docs build/bin`.
#
#   docs-up-to-date.sh BIN_DIR SOURCE_DIR
set -uo pipefail

bin=${1:?usage: $0 BIN_DIR SOURCE_DIR}
src=${2:?usage: $0 BIN_DIR SOURCE_DIR}
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT

python3 "$src/scripts/gen-docs" "$bin" "$fresh" > /dev/null || { echo "FAIL: scripts/gen-docs failed"; exit 1; }
stale=0
while read -r file; do
    rel=${file#"$fresh"/}
    if ! diff -u "$src/$rel" "$file"; then
        stale=$((stale + 1))
    fi
done < <(find "$fresh" -type f | sort)
if [ "$stale" -ne 0 ]; then
    echo "FAIL: $stale generated file(s) differ from --help; run scripts/gen-docs $bin and commit"
    exit 1
fi
echo "docs: $(find "$fresh" -type f | wc -l) generated files match the committed ones"
