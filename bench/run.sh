#!/usr/bin/env bash
# bench/run.sh BUILD_DIR - wsgate against nginx, same machine, same run (see bench/README.md).
#
# Environment knobs (defaults in brackets):
#   BENCH_IDLE [5000]      idle TLS WebSocket connections for the memory measurement
#   BENCH_REPS [3]         repetitions of each echo measurement
#   BENCH_SECONDS [5]      measured seconds per repetition (after BENCH_WARMUP [1] s)
#   BENCH_CONNS [64]       connections of the echo measurement
#   BENCH_SIZES ["64 1024"] message sizes in bytes
#   BENCH_CIPHER []        a TLS 1.3 suite to force (e.g. TLS_AES_128_GCM_SHA256); empty: negotiated
#   BENCH_PORT_BASE [random 20000-39000]  upstream = base, wsgate = base+1, nginx = base+2
#   BENCH_PROXIES ["wsgate nginx"]
set -uo pipefail

BUILD=${1:-build/release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
WSGATE="$BUILD/wsgate"
OUT="$ROOT/build/bench"
RUN="$OUT/last-run"
IDLE=${BENCH_IDLE:-5000}
REPS=${BENCH_REPS:-3}
DUR=${BENCH_SECONDS:-5}
WARM=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNS:-64}
SIZES=${BENCH_SIZES:-"64 1024"}
CIPHER=${BENCH_CIPHER:-}
PROXIES=${BENCH_PROXIES:-"wsgate nginx"}
BASE=${BENCH_PORT_BASE:-$((20000 + RANDOM % 19000))}
UPORT=$BASE
WPORT=$((BASE + 1))
NPORT=$((BASE + 2))

say() { printf '%s\n' "bench: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# ------------------------------------------------------------------ dependencies (idempotent)
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
command -v timeout >/dev/null || need+=(coreutils)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
dpkg -s libssl-dev >/dev/null 2>&1 || [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root or install them"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 ||
        die "apt-get install ${need[*]} failed"
    # the Debian package starts a system nginx on :80; it is not ours to keep running
    if printf '%s\n' "${need[@]}" | grep -q nginx && command -v systemctl >/dev/null; then
        systemctl stop nginx >/dev/null 2>&1 || true
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$WSGATE" ] || die "$WSGATE not found: build it first (make)"

# ------------------------------------------------------------------ build the tools
mkdir -p "$OUT"
rm -rf "$RUN"
mkdir -p "$RUN/nginx-tmp"
CFLAGS_B="-O2 -g -Wall -Wextra -D_GNU_SOURCE"
if [ ! -x "$OUT/loadgen" ] || [ bench/loadgen.c -nt "$OUT/loadgen" ]; then
    gcc $CFLAGS_B -o "$OUT/loadgen" bench/loadgen.c -lssl -lcrypto -lm || die "building loadgen failed"
fi
if [ ! -x "$OUT/echo_upstream" ] || [ bench/echo_upstream.c -nt "$OUT/echo_upstream" ]; then
    gcc $CFLAGS_B -o "$OUT/echo_upstream" bench/echo_upstream.c -lcrypto -lpthread || die "building echo_upstream failed"
fi
LOADGEN="$OUT/loadgen"
ECHO="$OUT/echo_upstream"

# ------------------------------------------------------------------ machine, limits, pinning
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$CPU_MODEL" ] || CPU_MODEL=unknown
if [ "$NPROC" -ge 2 ]; then
    PROXY_CPU=0
    GEN_CPU=1
    PIN_PROXY=(taskset -c $PROXY_CPU)
    PIN_GEN=(taskset -c $GEN_CPU)
    PIN_NOTE="proxy pinned to CPU 0; loadgen and echo_upstream pinned to CPU 1"
else
    PROXY_CPU=0
    GEN_CPU=0
    PIN_PROXY=()
    PIN_GEN=()
    PIN_NOTE="1 CPU: nothing pinned, proxy and generator share it (numbers are indicative only)"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# a proxied connection costs the proxy two descriptors (client + upstream)
if [ "$NOFILE" != unlimited ] && [ $((IDLE * 2 + 100)) -gt "$NOFILE" ]; then
    say "warning: ulimit -n is $NOFILE, too low for $IDLE idle connections through a proxy (needs $((IDLE * 2 + 100)))"
fi
NGX_NOFILE=$NOFILE
[ "$NGX_NOFILE" = unlimited ] && NGX_NOFILE=1048576
NGX_WCONN=$((NGX_NOFILE > 100000 ? 100000 : NGX_NOFILE))

# ------------------------------------------------------------------ process bookkeeping
PIDS=()
cleanup() {
    local p kids=""
    for p in "${PIDS[@]}"; do
        kids="$kids $(cat /proc/"$p"/task/*/children 2>/dev/null)"
        kill -TERM "$p" 2>/dev/null
    done
    for _ in $(seq 1 30); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}" $kids; do kill -KILL "$p" 2>/dev/null; done
    PIDS=()
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, KILL (and its direct children, e.g. nginx workers)
    local p=$1 kids
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null)
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    for k in $kids; do kill -KILL "$k" 2>/dev/null; done
    wait "$p" 2>/dev/null
    forget_pid "$p"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT PID
    for _ in $(seq 1 100); do
        port_open "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

for p in $UPORT $WPORT $NPORT; do
    port_open "$p" && die "port $p is in use; set BENCH_PORT_BASE"
done

# ------------------------------------------------------------------ certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$RUN/key.pem" -out "$RUN/cert.pem" \
    >/dev/null 2>&1 || die "openssl req failed"

# ------------------------------------------------------------------ upstream
"${PIN_GEN[@]}" "$ECHO" -p "$UPORT" >"$RUN/echo_upstream.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_port "$UPORT" "$ECHO_PID" || die "echo_upstream did not start ($(cat "$RUN/echo_upstream.log"))"

# ------------------------------------------------------------------ proxies
# BENCH_WSGATE_ARGS: extra wsgate flags, e.g. the policy rules for the policies-on run
# shellcheck disable=SC2206
WSGATE_CMD=("$WSGATE" --listen "127.0.0.1:$WPORT" --upstream "127.0.0.1:$UPORT" --workers 1 --access_log off
    --cert "$RUN/cert.pem" --key "$RUN/key.pem" ${BENCH_WSGATE_ARGS:-})
NGINX_CONF="$RUN/nginx.conf"
NGX_USER=""
[ "$(id -u)" = 0 ] && NGX_USER="user root;"
cat >"$NGINX_CONF" <<EOF
# the seed's WebSocket proxy config, plus TLS with the same certificate as wsgate
$NGX_USER
worker_processes 1;
worker_rlimit_nofile $NGX_NOFILE;
daemon off;
master_process on;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
events {
    worker_connections $NGX_WCONN;
    use epoll;
}
http {
    access_log off;
    client_body_temp_path $RUN/nginx-tmp/body;
    proxy_temp_path $RUN/nginx-tmp/proxy;
    fastcgi_temp_path $RUN/nginx-tmp/fastcgi;
    uwsgi_temp_path $RUN/nginx-tmp/uwsgi;
    scgi_temp_path $RUN/nginx-tmp/scgi;
    upstream app {
        ip_hash;
        server 127.0.0.1:$UPORT;
    }
    server {
        listen 127.0.0.1:$NPORT ssl;
        server_name localhost;
        ssl_certificate $RUN/cert.pem;
        ssl_certificate_key $RUN/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
EOF
NGINX_CMD=("$NGINX" -p "$RUN" -c "$NGINX_CONF" -e "$RUN/nginx-error.log")
"${NGINX_CMD[@]}" -t >"$RUN/nginx-t.log" 2>&1 || die "nginx -t failed: $(cat "$RUN/nginx-t.log")"

PROXY_PID=""
start_proxy() { # start_proxy NAME -> PROXY_PID, PROXY_PORT
    local name=$1 log="$RUN/$1.log"
    echo "---- start $(date +%T)" >>"$log"
    case $name in
    wsgate)
        "${PIN_PROXY[@]}" "${WSGATE_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$WPORT
        ;;
    nginx)
        "${PIN_PROXY[@]}" "${NGINX_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$NPORT
        ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port "$PROXY_PORT" "$PROXY_PID" || die "$name did not start: $(tail -5 "$log")"
}

stop_proxy() {
    local name=$1
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        wait "$PROXY_PID" 2>/dev/null
        problem "$name (pid $PROXY_PID) had exited (status $?) before it was stopped; see $RUN/$name.log"
    fi
    stop_pid "$PROXY_PID"
    [ "$name" = nginx ] && [ -f "$RUN/nginx-error.log" ] && cat "$RUN/nginx-error.log" >>"$RUN/nginx.log" &&
        : >"$RUN/nginx-error.log"
    PROXY_PID=""
}

proxy_rss_kb() { # master + direct children (nginx workers), VmRSS in kB
    local total=0 p kids
    kids=$(cat /proc/"$PROXY_PID"/task/*/children 2>/dev/null)
    for p in $PROXY_PID $kids; do
        local v
        v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo $total
}
CLK_TCK=$(getconf CLK_TCK)
pid_ticks() { # utime+stime of PID and its direct children (nginx workers)
    local p t=0 kids
    kids=$(cat /proc/"$1"/task/*/children 2>/dev/null)
    for p in $1 $kids; do
        t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
    done
    echo $t
}
cpu_busy_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
now_ms() { date +%s%3N; }
tcp_mem_pages() { awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat; }
tcp_inuse() { awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "inuse") print $(i + 1)}' /proc/net/sockstat; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

: >"$RUN/problems.txt"
problem() {
    say "PROBLEM: $*"
    echo "$*" >>"$RUN/problems.txt"
}
RESULTS="$RUN/results.jsonl"
: >"$RESULTS"
COMMANDS="$RUN/commands.txt"
: >"$COMMANDS"

jget() { # jget FIELD < json line
    sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p"
}

run_echo() { # run_echo LABEL PORT MODE(--tls|--plain) SIZE SERVER_PID
    local label=$1 port=$2 mode=$3 size=$4 spid=$5 cmd out rc pt0 pt1 gt0 gt1 w0 w1
    cmd=("$LOADGEN" -u "127.0.0.1:$port" "$mode" -c "$CONNS" -s "$size" -d "$DUR" --warmup "$WARM" --label "$label")
    [ -n "$CIPHER" ] && [ "$mode" = --tls ] && cmd+=(--cipher "$CIPHER")
    echo "${cmd[*]}" >>"$COMMANDS"
    pt0=$(pid_ticks "$spid")
    gt0=$(cpu_busy_ticks $GEN_CPU)
    w0=$(now_ms)
    out=$("${PIN_GEN[@]}" timeout $((DUR + WARM + 150)) "${cmd[@]}" 2>>"$RUN/loadgen.log")
    rc=$?
    w1=$(now_ms)
    pt1=$(pid_ticks "$spid")
    gt1=$(cpu_busy_ticks $GEN_CPU)
    # CPU use over the whole loadgen run (connect + warm-up + measurement), in % of one CPU
    local pc gc
    pc=$(awk -v a="$pt0" -v b="$pt1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    gc=$(awk -v a="$gt0" -v b="$gt1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    [ -n "$out" ] && out=$(echo "$out" | sed "s/}\$/,\"server_cpu_pct\":$pc,\"gen_cpu_pct\":$gc}/")
    if [ -z "$out" ]; then
        problem "$label: loadgen printed nothing (exit $rc)"
        return
    fi
    echo "$out" >>"$RESULTS"
    local f c s v
    f=$(echo "$out" | jget failed)
    c=$(echo "$out" | jget closed_by_peer)
    s=$(echo "$out" | jget stalled)
    v=$(echo "$out" | jget verify_errors)
    if [ "$rc" != 0 ] || [ "${f:-0}" != 0 ] || [ "${c:-0}" != 0 ] || [ "${s:-0}" != 0 ] || [ "${v:-0}" != 0 ]; then
        problem "$label: exit $rc, failed=$f closed=$c stalled=$s verify_errors=$v: $out"
    fi
    say "$(echo "$out" | sed 's/^{"mode":"echo",//; s/,"first_error":"".*//')"
}

IDLE_RES="$RUN/idle.txt"
: >"$IDLE_RES"
run_idle() { # run_idle NAME PORT
    local name=$1 port=$2 cmd
    # warm-up: a few connections and messages, so one-time allocations are in "before"
    "${PIN_GEN[@]}" timeout 30 "$LOADGEN" -u "127.0.0.1:$port" --tls -c 8 -s 64 -d 0.5 --warmup 0 --label warm \
        >/dev/null 2>>"$RUN/loadgen.log"
    sleep 1
    local rss0 mem0 inuse0 slab0 rss1 mem1 inuse1 slab1
    rss0=$(proxy_rss_kb)
    mem0=$(tcp_mem_pages)
    inuse0=$(tcp_inuse)
    slab0=$(slab_kb)
    cmd=("$LOADGEN" -u "127.0.0.1:$port" --tls --idle "$IDLE" --concurrency 100 --label "$name-idle")
    [ -n "$CIPHER" ] && cmd+=(--cipher "$CIPHER")
    echo "${cmd[*]}" >>"$COMMANDS"
    local fifo="$RUN/idle-$name.out"
    : >"$fifo"
    "${PIN_GEN[@]}" timeout 400 "${cmd[@]}" >"$fifo" 2>>"$RUN/loadgen.log" &
    local lg=$!
    PIDS+=("$lg")
    local t0=$SECONDS
    while ! grep -q '^idle .* ready' "$fifo"; do
        if ! kill -0 "$lg" 2>/dev/null || [ $((SECONDS - t0)) -gt 300 ]; then
            break
        fi
        sleep 0.2
    done
    local ready
    ready=$(awk '/^idle .* ready/ {print $2}' "$fifo")
    sleep 2 # let lazily freed/allocated memory settle
    rss1=$(proxy_rss_kb)
    mem1=$(tcp_mem_pages)
    inuse1=$(tcp_inuse)
    slab1=$(slab_kb)
    # still all alive after the settle time?
    kill -TERM "$lg" 2>/dev/null
    wait "$lg" 2>/dev/null
    forget_pid "$lg"
    local js
    js=$(grep '^{' "$fifo")
    echo "$js" >>"$RESULTS"
    local closed failed setup
    closed=$(echo "$js" | jget closed_by_peer)
    failed=$(echo "$js" | jget failed)
    setup=$(echo "$js" | jget setup_s)
    if [ -z "$ready" ] || [ "$ready" = 0 ]; then
        problem "$name idle: no connection came up: $js"
        echo "$name 0 0 0 0 0 0" >>"$IDLE_RES"
        return
    fi
    [ "$ready" != "$IDLE" ] || [ "${closed:-0}" != 0 ] || [ "${failed:-0}" != 0 ] &&
        problem "$name idle: ready=$ready of $IDLE, failed=$failed, closed while held=$closed: $js"
    echo "$name $ready $((rss1 - rss0)) $((mem1 - mem0)) $((inuse1 - inuse0)) $((slab1 - slab0)) ${setup:-0} $rss0 $rss1" >>"$IDLE_RES"
    say "$name idle: $ready conns, RSS $rss0 -> $rss1 kB, TCP mem $mem0 -> $mem1 pages, TCP sockets $inuse0 -> $inuse1, slab $slab0 -> $slab1 kB"
}

# ------------------------------------------------------------------ the runs
say "results and logs in $RUN"
for size in $SIZES; do
    for r in $(seq 1 "$REPS"); do
        run_echo "direct-$size-$r" "$UPORT" --plain "$size" "$ECHO_PID"
    done
done
for px in $PROXIES; do
    start_proxy "$px"
    for size in $SIZES; do
        for r in $(seq 1 "$REPS"); do
            run_echo "$px-$size-$r" "$PROXY_PORT" --tls "$size" "$PROXY_PID"
            kill -0 "$PROXY_PID" 2>/dev/null || {
                problem "$px exited during $px-$size-$r"
                start_proxy "$px"
            }
        done
    done
    stop_proxy "$px"
    start_proxy "$px"
    run_idle "$px" "$PROXY_PORT"
    stop_proxy "$px"
done
kill -0 "$ECHO_PID" 2>/dev/null || problem "echo_upstream exited during the run"

# ------------------------------------------------------------------ the table
agg() { # agg LABEL_PREFIX FIELD -> "median min max" (or "- - -")
    grep "\"label\":\"$1-[0-9]*\"" "$RESULTS" | jget "$2" | sort -g |
        awk '{v[NR] = $1} END {
            if (NR == 0) { print "- - -"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            print m, v[1], v[NR] }'
}
cell() { # cell "median min max" FORMAT
    echo "$1" | awk -v f="$2" '$1 == "-" {print "-"; next} {printf f " [" f "-" f "]\n", $1, $2, $3}'
}
ratio() { # ratio A B
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}
has() { case " $PROXIES " in *" $1 "*) return 0 ;; esac; return 1; }

negotiated() { grep "\"label\":\"$1-" "$RESULTS" | head -1 | { read -r l; echo "$(echo "$l" | jget proto) $(echo "$l" | jget cipher)"; }; }

{
    echo
    echo "== wsgate bench, $(date -u '+%Y-%m-%d %H:%M UTC') =="
    echo "machine: nproc=$NPROC, CPU: $CPU_MODEL, kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "wsgate: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') ($WSGATE); nginx: $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'); loadgen TLS: $(openssl version | cut -d' ' -f1-2)"
    echo "$PIN_NOTE; ulimit -n $NOFILE"
    echo "echo: $CONNS connections, closed loop (1 message in flight each), $REPS x ${DUR} s (+${WARM} s warm-up): median [min-max]"
    for px in $PROXIES; do echo "TLS with $px: $(negotiated "$px")"; done
    echo
    fmt_row() { printf '%-30s %-28s %-28s %-8s %s\n' "$@"; }
    fmt_row "metric" "wsgate" "nginx" "ws/ngx" "direct plaintext (ceiling)"
    for size in $SIZES; do
        lab="$size B"
        [ "$size" = 1024 ] && lab="1 KiB"
        for f in msgs_per_s p50_us p99_us p999_us server_cpu_pct gen_cpu_pct; do
            case $f in
            msgs_per_s) name="echo $lab msgs/s"; fm="%.0f" ;;
            p50_us) name="echo $lab p50 latency us"; fm="%.0f" ;;
            p99_us) name="echo $lab p99 latency us"; fm="%.0f" ;;
            p999_us) name="echo $lab p99.9 latency us"; fm="%.0f" ;;
            server_cpu_pct) name="  proxy/upstream CPU %"; fm="%.0f" ;;
            gen_cpu_pct) name="  generator CPU (CPU $GEN_CPU) %"; fm="%.0f" ;;
            esac
            w=$(agg "wsgate-$size" $f)
            n=$(agg "nginx-$size" $f)
            d=$(agg "direct-$size" $f)
            fmt_row "$name" "$(cell "$w" $fm)" "$(cell "$n" $fm)" "$(ratio "${w%% *}" "${n%% *}")" "$(cell "$d" $fm)"
        done
    done
    idle_field() { awk -v p="$1" -v k="$2" '$1 == p {print $k}' "$IDLE_RES"; }
    per() { awk -v a="$1" -v n="$2" -v m="$3" -v f="$4" 'BEGIN { if (a == "" || n == "" || n + 0 == 0) print "-"; else printf f "\n", a * m / n }'; }
    wn=$(idle_field wsgate 2); nn=$(idle_field nginx 2)
    wr=$(per "$(idle_field wsgate 3)" "$wn" 1 "%.1f"); nr=$(per "$(idle_field nginx 3)" "$nn" 1 "%.1f")
    fmt_row "idle conns held" "${wn:--}" "${nn:--}" "" ""
    fmt_row "idle: proxy RSS KiB/conn" "$wr" "$nr" "$(ratio "$wr" "$nr")" "(process VmRSS delta / conns)"
    wk=$(per "$(idle_field wsgate 4)" "$wn" 4096 "%.0f"); nk=$(per "$(idle_field nginx 4)" "$nn" 4096 "%.0f")
    fmt_row "idle: kernel TCP mem B/conn" "$wk" "$nk" "$(ratio "$wk" "$nk")" "(sockstat TCP mem pages delta, all 4 sockets)"
    ws=$(per "$(idle_field wsgate 6)" "$wn" 1 "%.1f"); ns=$(per "$(idle_field nginx 6)" "$nn" 1 "%.1f")
    fmt_row "idle: kernel slab KiB/conn" "$ws" "$ns" "$(ratio "$ws" "$ns")" "(meminfo Slab delta, informative)"
    wh=$(per "$wn" "$(idle_field wsgate 7)" 1 "%.0f"); nh=$(per "$nn" "$(idle_field nginx 7)" 1 "%.0f")
    fmt_row "idle: conns set up /s" "$wh" "$nh" "$(ratio "$wh" "$nh")" "(TLS+upgrade, 100 in flight; informative)"
    echo
    echo "commands (ports: upstream $UPORT, wsgate $WPORT, nginx $NPORT; nginx config: $NGINX_CONF):"
    echo "  $ECHO -p $UPORT   (pinned with taskset to the generator CPU)"
    echo "  ${WSGATE_CMD[*]}"
    echo "  ${NGINX_CMD[*]}"
    sed 's/^/  /' "$COMMANDS" | awk '!seen[$0]++' | sed 's/--label [^ ]*-[0-9]*$/--label .../' | awk '!seen[$0]++'
    if [ -s "$RUN/problems.txt" ]; then
        echo
        echo "PROBLEMS seen during the run ($RUN/problems.txt; proxy logs in $RUN/*.log):"
        sed 's/^/  /' "$RUN/problems.txt"
    fi
} | tee "$RUN/table.txt"
[ -s "$RUN/problems.txt" ] && exit 1
exit 0
