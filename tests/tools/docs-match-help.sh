#!/usr/bin/env bash
# The man page and the bash, zsh and fish completions of every tool name exactly the options
# its --help lists: each option in --help is documented, and no document names an option
# that --help does not know (a flag renamed or removed).
#
#   docs-match-help.sh BIN_DIR SOURCE_DIR TOOL...
set -uo pipefail

bin=${1:?usage: $0 BIN_DIR SOURCE_DIR TOOL...}
src=${2:?usage: $0 BIN_DIR SOURCE_DIR TOOL...}
shift 2
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Option names from the left column of --help ("  -t,--topic TOPIC   ..."), one per line,
# with those of each subcommand listed under "Subcommands:" (from TOOL SUBCOMMAND --help).
option_names() { awk '/^  +-/ { n = split($1, names, ","); for (i = 1; i <= n; i++) print names[i] }'; }
help_options() {
    local text sub
    text=$("$1" --help)
    {
        option_names <<< "$text"
        for sub in $(awk '/^Subcommands:/ { on = 1; next } /^[^ ]/ { on = 0 } on && /^  [a-z]/ { print $1 }' <<< "$text"); do
            "$1" "$sub" --help | option_names
        done
    } | sort -u
}
# Long options a document names, from a text where they are written --name.
long_options_in() { grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }

for tool in "$@"; do
    man="$src/man/$tool.1"
    bash_c="$src/completions/bash/$tool"
    zsh_c="$src/completions/zsh/_$tool"
    fish_c="$src/completions/fish/$tool.fish"
    for f in "$man" "$bash_c" "$zsh_c" "$fish_c"; do
        [ -f "$f" ] || fail "$tool: $f is missing"
    done
    [ -x "$bin/$tool" ] || { fail "$tool: $bin/$tool is missing"; continue; }

    # The completions must at least parse (zsh and fish only where they are installed).
    bash -n "$bash_c" 2>/dev/null || fail "$tool: bash cannot parse $bash_c"
    if command -v zsh > /dev/null; then zsh -n "$zsh_c" 2>/dev/null || fail "$tool: zsh cannot parse $zsh_c"; fi
    if command -v fish > /dev/null; then fish -n "$fish_c" 2>/dev/null || fail "$tool: fish cannot parse $fish_c"; fi

    options=$(help_options "$bin/$tool")
    longs=$(grep -- '^--' <<< "$options")
    [ -n "$longs" ] || { fail "$tool: no options found in --help"; continue; }
    man_text=$(sed 's/\\-/-/g' "$man" 2>/dev/null)
    fish_longs=$(grep -oE -- '-l [a-z][a-z0-9-]*' "$fish_c" 2>/dev/null | sed 's/^-l /--/' | sort -u)

    # Every option of --help is documented (short ones in the man page too).
    while read -r opt; do
        grep -qE -- "(^|[^a-z0-9-])$opt([^a-z0-9-]|\$)" <<< "$man_text" ||
            fail "$tool: $opt is missing from man/$tool.1"
    done <<< "$options"
    while read -r opt; do
        grep -qF -- "$opt" "$bash_c" 2>/dev/null || fail "$tool: $opt is missing from the bash completion"
        grep -qF -- "$opt" "$zsh_c" 2>/dev/null || fail "$tool: $opt is missing from the zsh completion"
        grep -qxF -- "$opt" <<< "$fish_longs" || fail "$tool: $opt is missing from the fish completion"
    done <<< "$longs"

    # ...and nothing documented is unknown to --help.
    for doc in man bash zsh fish; do
        case $doc in
            man) named=$(long_options_in <<< "$man_text") ;;
            bash) named=$(long_options_in 2>/dev/null < "$bash_c") ;;
            zsh) named=$(long_options_in 2>/dev/null < "$zsh_c") ;;
            fish) named=$fish_longs ;;
        esac
        while read -r opt; do
            [ -z "$opt" ] || grep -qxF -- "$opt" <<< "$longs" ||
                fail "$tool: the $doc documentation names $opt, which --help does not list"
        done <<< "$named"
    done
done

echo "docs: $# tools checked against --help, $failures failure(s)"
[ "$failures" -eq 0 ]
