#!/usr/bin/env bash
# bench/instructions.sh - instructions per echoed message in wsgate, counted by callgrind.
#
#   bench/instructions.sh [BUILD_DIR] [SIZE ...]        (make bench-instructions)
#   BENCH_CIPHER=TLS_AES_256_GCM_SHA384 bench/instructions.sh build/release 64 1024
#
# Wall-clock rates on a shared 2-core VM move by 10-20% from run to run; instruction counts do
# not, so this is the number to compare before and after a change. For each size it runs wsgate
# (one worker) under valgrind --tool=callgrind twice, with the same 64 connections of
# build/bench/loadgen in a closed loop echoing through build/bench/echo_upstream, once for 1 s
# and once for 9 s of traffic, and prints
#     (Ir of the long run - Ir of the short run) / (messages of the long run - of the short run)
# which removes the start-up and the 64 TLS handshakes. A message is one echo: the client's frame
# decrypted, checked, re-masked to the upstream, and the upstream's answer encrypted back.
# A second line splits the same difference: "tls" is everything under tls/'s entry points
# (wsg_tls_handshake, wsg_tls_read, wsg_tls_write, wsg_tls_close_notify: mbedTLS and its libc
# calls), "outside tls" the rest of wsgate's user space (libev, system call wrappers, the
# gateway, the relay), "relay" what frames/ws.c's entry points cost with everything they call
# (the sinks' copies included), and "wslay" the self cost of wslay's own functions.
# The callgrind files stay in build/bench/instructions/ (callgrind_annotate FILE shows where).
# A size written zN (e.g. z1024, `make bench-instructions BENCH_SIZES="1024 z1024"`) is the
# compressed echo of bench/run.sh's deflate row: loadgen --deflate-level BENCH_DEFLATE_LEVEL (1)
# sends N-byte JSON-like texts compressed with permessage-deflate, which wsgate inflates both
# ways to check; the second line then also gives zlib's own (self) instructions.
# BENCH_CIPHER: the TLS 1.3 suite loadgen offers (default TLS_AES_128_GCM_SHA256, what wsgate picks).
# BENCH_INSTR_CONNS: connections (default 64). Messages still in flight when a run stops cost
# instructions but are not counted: at 256 KiB, where a 9 s callgrind run echoes a few hundred
# messages, 4 connections keep that error small.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B=${1:-build/release}
shift || true
SIZES=("${@:-64 1024}")
read -r -a SIZES <<<"${SIZES[*]}"
CIPHER=${BENCH_CIPHER:-TLS_AES_128_GCM_SHA256}
CONNS=${BENCH_INSTR_CONNS:-64}
W=$(realpath "$B/wsgate") || { echo "instructions: no $B/wsgate (run make)"; exit 1; }
OUT=build/bench
DIR=$OUT/instructions
mkdir -p "$DIR"
command -v valgrind >/dev/null || { echo "instructions: valgrind is missing (apt-get install valgrind)"; exit 1; }
CFLAGS_B="-O2 -g -Wall -Wextra -D_GNU_SOURCE"
[ -x "$OUT/loadgen" ] && [ ! bench/loadgen.c -nt "$OUT/loadgen" ] ||
    gcc $CFLAGS_B -o "$OUT/loadgen" bench/loadgen.c -lssl -lcrypto -lm -lz || exit 1
[ -x "$OUT/echo_upstream" ] && [ ! bench/echo_upstream.c -nt "$OUT/echo_upstream" ] ||
    gcc $CFLAGS_B -o "$OUT/echo_upstream" bench/echo_upstream.c -lcrypto -lpthread || exit 1
if [ ! -s "$DIR/key.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
        -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null || exit 1
fi
PIN0=() PIN1=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi
BASE=$((20000 + RANDOM % 12000)) # below the ephemeral port range
UP=$BASE GW=$((BASE + 1))
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null' EXIT

port_up() { for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }

# one SIZE SECONDS -> "messages Ir"
one() {
    local size=$1 secs=$2 f="$DIR/callgrind.$1.$2" z=()
    if [ "${size#z}" != "$size" ]; then
        size=${size#z}
        z=(--deflate-level "${BENCH_DEFLATE_LEVEL:-1}")
    fi
    "${PIN0[@]}" valgrind --tool=callgrind --callgrind-out-file="$f" "$W" --listen "127.0.0.1:$GW" \
        --upstream "127.0.0.1:$UP" --workers 1 --access_log off --cert "$DIR/cert.pem" --key "$DIR/key.pem" \
        >"$DIR/wsgate.log" 2>&1 &
    local wp=$!
    port_up "$GW" || { echo "instructions: wsgate did not start ($(tail -2 "$DIR/wsgate.log"))" >&2; return 1; }
    local out
    out=$("${PIN1[@]}" timeout 300 "$OUT/loadgen" -u "127.0.0.1:$GW" -c "$CONNS" -s "$size" -d "$secs" --warmup 0 \
        --cipher "$CIPHER" "${z[@]}" 2>/dev/null)
    kill -TERM "$wp"
    wait "$wp"
    local msgs ir
    msgs=$(sed -n 's/.*"msgs":\([0-9]*\).*/\1/p' <<<"$out")
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    [ -n "$msgs" ] && [ -n "$ir" ] || { echo "instructions: no result for $size B ($secs s)" >&2; return 1; }
    echo "$msgs $ir $(split "$f")"
}

# split FILE -> "tls relay wslay": inclusive Ir of tls/'s and frames/ws.c's entry points, self Ir of
# libwslay's functions.
split() {
    callgrind_annotate --inclusive=yes "$1" 2>/dev/null | awk '
        function n(s) { gsub(",", "", s); return s + 0 }
        / tls\/tls\.c:wsg_tls_(handshake|read|write|close_notify) \[/ { tls += n($1) }
        / frames\/ws\.c:wsg_ws_relay_(pump|send_close|send_ping) \[/ { relay += n($1) }
        END { printf "%.0f %.0f", tls, relay }'
    callgrind_annotate "$1" 2>/dev/null | awk '
        function n(s) { gsub(",", "", s); return s + 0 }
        /libwslay\.so/ && /^ *[0-9,]+ / { w += n($1) }
        /libz\.so/ && /^ *[0-9,]+ / { z += n($1) }
        END { printf " %.0f %.0f", w, z }'
}

"${PIN1[@]}" "$OUT/echo_upstream" -p "$UP" >"$DIR/echo_upstream.log" 2>&1 &
PIDS+=($!)
port_up "$UP" || { echo "instructions: echo_upstream did not start"; exit 1; }
echo "wsgate $W (sha256 $(sha256sum "$W" | cut -c1-12), built $(date -u -r "$W" "+%Y-%m-%d %H:%M UTC")), $CIPHER, $CONNS connections, callgrind"
rc=0
for size in "${SIZES[@]}"; do
    a=$(one "$size" 1) && b=$(one "$size" 9) || { rc=1; continue; }
    read -r m1 i1 t1 r1 w1 z1 <<<"$a"
    read -r m9 i9 t9 r9 w9 z9 <<<"$b"
    if [ $((m9 - m1)) -le 0 ]; then echo "$size B: too few messages ($m1, $m9)"; rc=1; continue; fi
    m=$((m9 - m1))
    printf '%8s B: %9d instructions per echoed message  (%d - %d messages, %d - %d Ir)\n' "$size" \
        $(((i9 - i1) / m)) "$m9" "$m1" "$i9" "$i1"
    printf '%8s    %9d tls, %d outside tls (%.1f%%), of which relay %d (%.1f%%), wslay %d, zlib %d\n' "" \
        $(((t9 - t1) / m)) $(((i9 - i1 - t9 + t1) / m)) "$(awk "BEGIN { print 100 * ($i9 - $i1 - $t9 + $t1) / ($i9 - $i1) }")" \
        $(((r9 - r1) / m)) "$(awk "BEGIN { print 100 * ($r9 - $r1) / ($i9 - $i1) }")" $(((w9 - w1) / m)) $(((z9 - z1) / m))
done
exit $rc
