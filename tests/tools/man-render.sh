#!/usr/bin/env bash
# Every man page renders without a warning: groff with all warnings on (-ww) and `man -l`
# (man-db, --warnings=all), both of which print troff's warnings on standard error. A page
# made broken on purpose must be caught, so the check cannot pass by seeing nothing.
#
#   man-render.sh SOURCE_DIR
# exit: 0 clean, 1 a warning or an error, 77 groff or man not installed (skipped)
set -uo pipefail

src=${1:?usage: $0 SOURCE_DIR}
for tool in groff man; do
    command -v "$tool" > /dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints the warnings (and errors) of rendering one page; empty when clean.
warnings_of() {
    local page=$1
    {
        LC_ALL=C.UTF-8 groff -man -ww -Tutf8 "$page" 2>&1 > /dev/null
        LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all -l "$page" 2>&1 > /dev/null
    } | sort -u
}

printf '.TH BROKEN 1\n.SH NAME\nbroken \\- a page with an unknown macro\n.XX\n' > "$work/broken.1"
if [ -z "$(warnings_of "$work/broken.1")" ]; then
    fail "the check saw no warning in a page with an undefined macro"
fi

pages=("$src"/man/*.1 "$src"/man/*.5)
for page in "${pages[@]}"; do
    out=$(warnings_of "$page")
    if [ -n "$out" ]; then
        fail "${page#"$src"/} renders with warnings:"
        sed 's/^/    /' <<< "$out"
    fi
    # The page has the sections a reader looks for.
    for section in NAME SYNOPSIS DESCRIPTION; do
        grep -qE "^\.SH \"?$section" "$page" || fail "${page#"$src"/} has no $section section"
    done
done
echo "man: ${#pages[@]} pages rendered, $failures failure(s)"
[ "$failures" -eq 0 ]
