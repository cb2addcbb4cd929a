#!/usr/bin/env bash
# tests/layering-check.sh [ROOT] - checks which module includes which (docs/ARCHITECTURE.md,
# "Modules and what each may include"). `make test` runs it first; it fails with one line per
# offending #include, naming the file, the line and the rule.
#
#   gateway/         the top: may include tls/, frames/, policies/ (certs/ is a separate tool)
#   certs/           certs/, tls/ and the base layer
#   tls/ frames/     their own folder and the base layer (never each other, never gateway/)
#   policies/        policies/ and the base layer
#   policies/base/   the base layer (buffer, return codes): includes nothing of the project
#
# Also: <ev.h> (the event loop) only in gateway/; <wslay/...> only in frames/; a private header
# (NAME-int.h) only from its own folder (fuzz/pipeline.c reads gateway/conn-int.h on purpose).
# fuzz/, tests/ and bench/ drive the modules from outside and may include anything.
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 1

# allowed project prefixes for each module folder (first match of the file's path wins)
allowed_for() {
    case $1 in
    policies/base/*) echo "policies/base/" ;;
    policies/*) echo "policies/ policies/base/" ;;
    frames/*) echo "frames/ policies/base/" ;;
    tls/*) echo "tls/ policies/base/" ;;
    certs/*) echo "certs/ tls/ policies/base/" ;;
    gateway/*) echo "gateway/ tls/ frames/ policies/" ;;
    *) echo "" ;;
    esac
}
module_of() {
    case $1 in
    policies/base/*) echo "policies/base/" ;;
    *) echo "${1%%/*}/" ;;
    esac
}

bad=0
files=0
while IFS= read -r f; do
    files=$((files + 1))
    mod=$(module_of "$f")
    allow=$(allowed_for "$f")
    while IFS=: read -r line inc; do
        [ -n "$line" ] || continue
        # quoted includes: the project's own headers
        if [[ $inc =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
            h=${BASH_REMATCH[1]}
            ok=0
            for p in $allow; do
                [[ $h == "$p"* ]] && ok=1
            done
            # a sibling header (#include "x.h") resolves to the file's own folder
            [[ $h != */* ]] && ok=1
            if [ $ok -eq 0 ]; then
                why=""
                [[ $h == gateway/* ]] && why="gateway/ is the top layer, nothing below may reach up into it; "
                echo "layering: $f:$line includes \"$h\": $why$mod may include only: $allow"
                bad=$((bad + 1))
                continue
            fi
            if [[ $h == *-int.h ]]; then
                hdir=$(dirname "$h")/
                fdir=$(dirname "$f")/
                if [ "$hdir" != "$fdir" ]; then
                    echo "layering: $f:$line includes \"$h\": a private header is for its own folder ($hdir) only"
                    bad=$((bad + 1))
                fi
            fi
        elif [[ $inc =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<(ev\.h|wslay/[^\>]*)\> ]]; then
            h=${BASH_REMATCH[1]}
            if [[ $h == ev.h && $mod != gateway/ ]]; then
                echo "layering: $f:$line includes <ev.h>: only gateway/ runs the event loop"
                bad=$((bad + 1))
            elif [[ $h == wslay/* && $mod != frames/ ]]; then
                echo "layering: $f:$line includes <$h>: only frames/ uses wslay"
                bad=$((bad + 1))
            fi
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$f")
done < <(find gateway tls frames policies certs -type f \( -name '*.c' -o -name '*.h' \) | sort)

if [ "$files" -eq 0 ]; then
    echo "layering: no source files under $root"
    exit 1
fi
echo "layering: $files files checked, $bad violations"
[ "$bad" -eq 0 ]
