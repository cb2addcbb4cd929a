#!/usr/bin/env bash
# bench/run.sh BUILD_DIR - wsgate against nginx and HAProxy, same machine, same run (bench/README.md).
#
# Environment knobs (defaults in brackets; BENCH_QUICK=1 changes the defaults marked q:):
#   BENCH_QUICK [0]        1: a fast smoke run (about 1.5 minutes): 1 rep, 1 s, sizes "64 262144", ...
#   BENCH_IDLE [5000, q: 300] idle TLS WebSocket connections for the memory measurement (0: skip)
#   BENCH_REPS [3, q: 1]   repetitions of each measurement
#   BENCH_SECONDS [5, q: 1] measured seconds per echo repetition (after BENCH_WARMUP [1, q: 0.5] s)
#   BENCH_CONNS [64]       connections of the echo measurement
#   BENCH_SIZES ["64 1024 16384 262144", q: "64 262144"] message sizes in bytes
#   BENCH_CIPHER [TLS_AES_128_GCM_SHA256]  the TLS 1.3 suite every proxy uses for the echo runs
#                          (wsgate's own choice for clients that offer it); "negotiated": the client's
#                          OpenSSL order (then wsgate takes AES-128-GCM, nginx and HAProxy AES-256-GCM)
#   BENCH_PORT_BASE [random 20000-32000]  upstream = base, wsgate = base+1, nginx = base+2, haproxy = base+3
#                          (below the kernel's ephemeral range, so the idle run's 15,000 client ports and
#                          their TIME_WAITs can never hold a proxy's port)
#   BENCH_PROXIES ["wsgate nginx haproxy"]
#   BENCH_HS_SECONDS [3, q: 1]  seconds per handshakes/s measurement (after 0.5 s warm-up)
#   BENCH_HS_CONC [16]     handshakes in flight (closed loop)
#   BENCH_HS_TLS12 [1]     also measure TLS 1.2 full/resumed handshakes (0: TLS 1.3 only)
#   BENCH_RAW_SECONDS [3, q: 0.5] seconds per mbedtls_raw measurement (0: skip mbedtls_raw)
#   BENCH_RATE [1]         p50/p99 at 50% of nginx's 64 B msgs/s, every proxy (BENCH_RATE_MSGS: fix the rate)
#   BENCH_POLICIES [1]     wsgate 64 B with all policy rules on (generous limits) vs off, interleaved
#   BENCH_ALL_WORKERS [0]  also echo with all workers (wsgate --workers nproc, nginx worker_processes auto,
#                          HAProxy nbthread nproc), proxies not pinned; BENCH_ALL_SIZES ["64 1024"]
#   BENCH_REDIS [1]        with BENCH_POLICIES: a third interleaved row, policies on with the per-IP
#                          rules synced through a redis-server on loopback (issue 14: within 5%)
#   BENCH_DEFLATE [1]      also a compressed 1 KiB JSON-like echo (loadgen --deflate: permessage-deflate
#                          with context takeover), every proxy: wsgate inflates both directions to
#                          check them, nginx and HAProxy pass them blind (issue 13)
#   BENCH_DEFLATE_LEVEL [1] the generator's zlib level for it (browsers use 6; at 6 the generator's
#                          compression, not the proxy, limits the rate on 2 CPUs)
#   BENCH_WSGATE_ARGS []   extra wsgate flags for every wsgate run
set -uo pipefail

BUILD=${1:-build/release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
WSGATE="$BUILD/wsgate"
OUT="$ROOT/build/bench"
RUN="$OUT/last-run"
QUICK=${BENCH_QUICK:-0}
has_proxy() { case " $PROXIES " in *" $1 "*) return 0 ;; esac; return 1; }
if [ "$QUICK" = 1 ]; then
    q() { echo "$1"; }
else
    q() { echo "$2"; }
fi
IDLE=${BENCH_IDLE:-$(q 300 5000)}
REPS=${BENCH_REPS:-$(q 1 3)}
DUR=${BENCH_SECONDS:-$(q 1 5)}
WARM=${BENCH_WARMUP:-$(q 0.5 1)}
CONNS=${BENCH_CONNS:-64}
SIZES=${BENCH_SIZES:-$(q "64 262144" "64 1024 16384 262144")}
CIPHER=${BENCH_CIPHER:-TLS_AES_128_GCM_SHA256}
[ "$CIPHER" = negotiated ] && CIPHER=""
PROXIES=${BENCH_PROXIES:-"wsgate nginx haproxy"}
HS_SECONDS=${BENCH_HS_SECONDS:-$(q 1 3)}
HS_CONC=${BENCH_HS_CONC:-16}
HS_TLS12=${BENCH_HS_TLS12:-1}
RAW_SECONDS=${BENCH_RAW_SECONDS:-$(q 0.5 3)}
DO_RATE=${BENCH_RATE:-1}
RATE_MSGS=${BENCH_RATE_MSGS:-}
DO_POLICIES=${BENCH_POLICIES:-1}
DO_DEFLATE=${BENCH_DEFLATE:-1}
DEFLATE_LEVEL=${BENCH_DEFLATE_LEVEL:-1}
DO_REDIS=${BENCH_REDIS:-1}
command -v redis-server >/dev/null || DO_REDIS=0
ALL_WORKERS=${BENCH_ALL_WORKERS:-0}
ALL_SIZES=${BENCH_ALL_SIZES:-"64 1024"}
BASE=${BENCH_PORT_BASE:-$((20000 + RANDOM % 12000))}
UPORT=$BASE
WPORT=$((BASE + 1))
NPORT=$((BASE + 2))
HPORT=$((BASE + 3))
# issue 3's rules, all on, at limits the benchmark never reaches (the policies-on row)
POLICY_ARGS=(--rate_messages 1000000 --rate_bytes 1g --ip_rate_messages 1000000 --ip_rate_bytes 1g
    --ip_max_conns 100000 --ip_upgrades 100000 --max_fragments 100000 --slow_consumer_bytes 64m
    --max_lifetime 1h --origins https://bench.test --subprotocols chat)
POLICY_CLIENT=(--origin https://bench.test --subprotocol chat)

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
case " ${PROXIES} " in *" haproxy "*)
    [ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || need+=(haproxy) ;;
esac
dpkg -s libssl-dev >/dev/null 2>&1 || [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || [ -f /usr/include/zlib.h ] || need+=(zlib1g-dev) # loadgen --deflate
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root or install them"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 ||
        die "apt-get install ${need[*]} failed"
    # the Debian packages start a system nginx on :80 / haproxy; they are not ours to keep running
    if command -v systemctl >/dev/null; then
        printf '%s\n' "${need[@]}" | grep -q nginx && systemctl stop nginx >/dev/null 2>&1
        printf '%s\n' "${need[@]}" | grep -q haproxy && systemctl stop haproxy >/dev/null 2>&1
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$WSGATE" ] || die "$WSGATE not found: build it first (make)"

# ------------------------------------------------------------------ build the tools
mkdir -p "$OUT"
rm -rf "$RUN"
mkdir -p "$RUN/nginx-tmp"
CFLAGS_B="-O2 -g -Wall -Wextra -D_GNU_SOURCE"
if [ ! -x "$OUT/loadgen" ] || [ bench/loadgen.c -nt "$OUT/loadgen" ]; then
    gcc $CFLAGS_B -o "$OUT/loadgen" bench/loadgen.c -lssl -lcrypto -lm -lz || die "building loadgen failed"
fi
if [ ! -x "$OUT/echo_upstream" ] || [ bench/echo_upstream.c -nt "$OUT/echo_upstream" ]; then
    gcc $CFLAGS_B -o "$OUT/echo_upstream" bench/echo_upstream.c -lcrypto -lpthread || die "building echo_upstream failed"
fi
LOADGEN="$OUT/loadgen"
ECHO="$OUT/echo_upstream"
# mbedtls_raw is built twice: against wsgate's own mbedTLS (tls/mbedtls/build.sh: our configuration
# and the nettle PSA driver inside libmbedcrypto.a) and against mbedTLS as Debian 13 builds it (its
# binary packages, unpacked under build/deps/mbedtls-debian by `.ci/deps.sh bench`), so the table
# shows what our build buys. nettle_raw measures nettle itself, the driver's ceiling.
RAW="$OUT/mbedtls_raw"
RAW_DEB="$OUT/mbedtls_raw-debian"
NETTLE_RAW="$OUT/nettle_raw"
OUR_MBED="$ROOT/build/deps/mbedtls-current"
DEB_MBED="$ROOT/build/deps/mbedtls-debian/usr"
DEB_LIB="$DEB_MBED/lib/x86_64-linux-gnu"
if [ "$RAW_SECONDS" != 0 ]; then
    if [ ! -f "$OUR_MBED/lib/libmbedtls.a" ]; then
        say "warning: wsgate's mbedTLS build is missing (run make first); mbedtls_raw skipped"
        RAW_SECONDS=0
    else
        if [ ! -x "$RAW" ] || [ bench/mbedtls_raw.c -nt "$RAW" ] || [ "$OUR_MBED/lib/libmbedcrypto.a" -nt "$RAW" ]; then
            gcc $CFLAGS_B -o "$RAW" bench/mbedtls_raw.c -isystem "$OUR_MBED/include" "$OUR_MBED/lib/libmbedtls.a" \
                "$OUR_MBED/lib/libmbedx509.a" "$OUR_MBED/lib/libmbedcrypto.a" -lhogweed -lnettle -lgmp -lpthread ||
                die "building mbedtls_raw failed"
        fi
        if [ -f "$DEB_LIB/libmbedtls.a" ]; then
            if [ ! -x "$RAW_DEB" ] || [ bench/mbedtls_raw.c -nt "$RAW_DEB" ]; then
                gcc $CFLAGS_B -o "$RAW_DEB" bench/mbedtls_raw.c -isystem "$DEB_MBED/include" "$DEB_LIB/libmbedtls.a" \
                    "$DEB_LIB/libmbedx509.a" "$DEB_LIB/libmbedcrypto.a" -lpthread || die "building mbedtls_raw-debian failed"
            fi
        else
            say "warning: Debian's mbedTLS packages are missing under build/deps/mbedtls-debian; its ceilings are skipped"
            RAW_DEB=""
        fi
        if [ ! -x "$NETTLE_RAW" ] || [ bench/nettle_raw.c -nt "$NETTLE_RAW" ]; then
            gcc $CFLAGS_B -o "$NETTLE_RAW" bench/nettle_raw.c -lhogweed -lnettle -lgmp || die "building nettle_raw failed"
        fi
    fi
fi

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
    [ "$ALL_WORKERS" = 1 ] && PIN_NOTE="$PIN_NOTE (all-workers runs: proxy not pinned)"
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

for p in $UPORT $WPORT $NPORT $HPORT; do
    port_open "$p" && die "port $p is in use; set BENCH_PORT_BASE"
done

# ------------------------------------------------------------------ certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$RUN/key.pem" -out "$RUN/cert.pem" \
    >/dev/null 2>&1 || die "openssl req failed"
cat "$RUN/cert.pem" "$RUN/key.pem" >"$RUN/haproxy.pem" # HAProxy wants both in one file

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
WSGATE_POL_CMD=("${WSGATE_CMD[@]}" "${POLICY_ARGS[@]}")
RPORT=$((BASE + 5))
WSGATE_POLR_CMD=("${WSGATE_POL_CMD[@]}" --redis "127.0.0.1:$RPORT")
WSGATE_ALL_CMD=("${WSGATE_CMD[@]}" --workers "$NPROC") # the later --workers wins
NGX_USER=""
[ "$(id -u)" = 0 ] && NGX_USER="user root;"
gen_nginx_conf() { # gen_nginx_conf FILE WORKER_PROCESSES
cat >"$1" <<EOF
# the seed's WebSocket proxy config, plus TLS with the same certificate as wsgate
$NGX_USER
worker_processes $2;
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
}
NGINX_CONF="$RUN/nginx.conf"
gen_nginx_conf "$NGINX_CONF" 1
gen_nginx_conf "$RUN/nginx-all.conf" auto
NGINX_CMD=("$NGINX" -p "$RUN" -c "$NGINX_CONF" -e "$RUN/nginx-error.log")
NGINX_ALL_CMD=("$NGINX" -p "$RUN" -c "$RUN/nginx-all.conf" -e "$RUN/nginx-error.log")
if has_proxy nginx; then
    "${NGINX_CMD[@]}" -t >"$RUN/nginx-t.log" 2>&1 || die "nginx -t failed: $(cat "$RUN/nginx-t.log")"
fi

# HAProxy (Debian's), the same job: HTTP mode, balance source (its ip_hash), the tunnel timeout
# that governs an upgraded connection, TLS with the same certificate (cert + key in one PEM).
# maxconn: the idle connections plus room, but HAProxy refuses to start when 2 x maxconn does not fit
# in the descriptor limit (this VM: a hard limit of 20,000 that even root cannot raise).
HAP_MAXCONN=$((IDLE + 2000))
[ "$HAP_MAXCONN" -gt $(((NGX_NOFILE - 200) / 2)) ] && HAP_MAXCONN=$(((NGX_NOFILE - 200) / 2))
gen_haproxy_cfg() { # gen_haproxy_cfg FILE NBTHREAD
cat >"$1" <<EOF
global
    nbthread $2
    maxconn $HAP_MAXCONN
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    maxconn $HAP_MAXCONN
frontend fe
    bind 127.0.0.1:$HPORT ssl crt $RUN/haproxy.pem alpn http/1.1
    default_backend app
backend app
    balance source
    server s1 127.0.0.1:$UPORT
EOF
}
HAP_CFG="$RUN/haproxy.cfg"
gen_haproxy_cfg "$HAP_CFG" 1
gen_haproxy_cfg "$RUN/haproxy-all.cfg" "$NPROC"
HAPROXY_CMD=("$HAPROXY" -db -f "$HAP_CFG")
HAPROXY_ALL_CMD=("$HAPROXY" -db -f "$RUN/haproxy-all.cfg")
if has_proxy haproxy; then
    "$HAPROXY" -c -f "$HAP_CFG" >"$RUN/haproxy-c.log" 2>&1 || die "haproxy -c failed: $(cat "$RUN/haproxy-c.log")"
fi

PROXY_PID=""
start_proxy() { # start_proxy NAME -> PROXY_PID, PROXY_PORT (NAME: wsgate nginx haproxy, wsgate-pol, *-all)
    local name=$1 log="$RUN/${1%%-*}.log"
    echo "---- start $name $(date +%T)" >>"$log"
    case $name in
    wsgate)
        "${PIN_PROXY[@]}" "${WSGATE_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$WPORT
        ;;
    wsgate-pol)
        "${PIN_PROXY[@]}" "${WSGATE_POL_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$WPORT
        ;;
    wsgate-polr)
        "${PIN_PROXY[@]}" "${WSGATE_POLR_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$WPORT
        ;;
    wsgate-all)
        "${WSGATE_ALL_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$WPORT
        ;;
    nginx)
        "${PIN_PROXY[@]}" "${NGINX_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$NPORT
        ;;
    nginx-all)
        "${NGINX_ALL_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$NPORT
        ;;
    haproxy)
        "${PIN_PROXY[@]}" "${HAPROXY_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$HPORT
        ;;
    haproxy-all)
        "${HAPROXY_ALL_CMD[@]}" >>"$log" 2>&1 &
        PROXY_PORT=$HPORT
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
    case $name in nginx*) [ -f "$RUN/nginx-error.log" ] && cat "$RUN/nginx-error.log" >>"$RUN/nginx.log" &&
        : >"$RUN/nginx-error.log" ;; esac
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
pid_ticks() { # utime+stime of PID and its direct children (nginx workers); "user": utime only
    local p t=0 kids fields='$14 + $15'
    [ "${2:-}" = user ] && fields='$14'
    kids=$(cat /proc/"$1"/task/*/children 2>/dev/null)
    for p in $1 $kids; do
        t=$((t + $(awk "{print $fields}" /proc/"$p"/stat 2>/dev/null || echo 0)))
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

run_echo() { # run_echo LABEL PORT MODE(--tls|--plain) SIZE SERVER_PID [LOADGEN ARGS...]
    local label=$1 port=$2 mode=$3 size=$4 spid=$5 cmd out rc pt0 pt1 ut0 ut1 gt0 gt1 w0 w1
    cmd=("$LOADGEN" -u "127.0.0.1:$port" "$mode" -c "$CONNS" -s "$size" -d "$DUR" --warmup "$WARM" "${@:6}"
        --label "$label")
    [ -n "$CIPHER" ] && [ "$mode" = --tls ] && cmd+=(--cipher "$CIPHER")
    echo "${cmd[*]}" >>"$COMMANDS"
    loadavg_note
    pt0=$(pid_ticks "$spid")
    ut0=$(pid_ticks "$spid" user)
    gt0=$(cpu_busy_ticks $GEN_CPU)
    w0=$(now_ms)
    out=$("${PIN_GEN[@]}" timeout $((${DUR%.*} + ${WARM%.*} + 150)) "${cmd[@]}" 2>>"$RUN/loadgen.log")
    rc=$?
    w1=$(now_ms)
    pt1=$(pid_ticks "$spid")
    ut1=$(pid_ticks "$spid" user)
    gt1=$(cpu_busy_ticks $GEN_CPU)
    # CPU use over the whole loadgen run (connect + warm-up + measurement), in % of one CPU
    local pc uc gc
    pc=$(awk -v a="$pt0" -v b="$pt1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    uc=$(awk -v a="$ut0" -v b="$ut1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    gc=$(awk -v a="$gt0" -v b="$gt1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    [ -n "$out" ] && out=$(echo "$out" | sed "s/}\$/,\"server_cpu_pct\":$pc,\"server_user_pct\":$uc,\"gen_cpu_pct\":$gc}/")
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

# ------------------------------------------------------------------ handshakes/s, mbedTLS ceilings
run_hs() { # run_hs LABEL PORT SERVER_PID [LOADGEN ARGS...]: closed-loop handshakes/s
    local label=$1 port=$2 spid=$3 cmd out rc pt0 pt1 gt0 gt1 w0 w1
    cmd=("$LOADGEN" -u "127.0.0.1:$port" --tls --handshakes 10000000 --concurrency "$HS_CONC" -d "$HS_SECONDS"
        --warmup 0.5 "${@:4}" --label "$label")
    echo "${cmd[*]}" >>"$COMMANDS"
    loadavg_note
    pt0=$(pid_ticks "$spid")
    gt0=$(cpu_busy_ticks $GEN_CPU)
    w0=$(now_ms)
    out=$("${PIN_GEN[@]}" timeout $((${HS_SECONDS%.*} + 60)) "${cmd[@]}" 2>>"$RUN/loadgen.log")
    rc=$?
    w1=$(now_ms)
    pt1=$(pid_ticks "$spid")
    gt1=$(cpu_busy_ticks $GEN_CPU)
    local pc uc gc
    pc=$(awk -v a="$pt0" -v b="$pt1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    uc=$(awk -v a="$ut0" -v b="$ut1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    gc=$(awk -v a="$gt0" -v b="$gt1" -v t="$CLK_TCK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", (b - a) / t * 100000 / w}')
    if [ -z "$out" ]; then
        problem "$label: loadgen printed nothing (exit $rc)"
        return
    fi
    out=$(echo "$out" | sed "s/}\$/,\"server_cpu_pct\":$pc,\"gen_cpu_pct\":$gc}/")
    echo "$out" >>"$RESULTS"
    [ "$rc" != 0 ] && problem "$label: exit $rc (a handshake failed, or a resumption was refused): $out"
    say "$(echo "$out" | sed 's/^{"mode":"handshake",//; s/,"first_error":"".*//')"
}

hs_modes() { # the handshake rows: "NAME ARGS"
    echo "hs13full"
    echo "hs13res --resume"
    if [ "$HS_TLS12" = 1 ]; then
        echo "hs12full --tls12"
        echo "hs12res --tls12 --resume"
    fi
}

LOADAVG="$RUN/loadavg.txt"
: >"$LOADAVG"
loadavg_note() { cut -d' ' -f1 /proc/loadavg >>"$LOADAVG"; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ the runs
say "results and logs in $RUN"
RAW_RES="$RUN/mbedtls_raw.jsonl"
: >"$RAW_RES"
if [ "$RAW_SECONDS" != 0 ]; then
    # pinned to the proxy CPU, nothing of ours running meanwhile; CPU-time based (robust to noise)
    # each line of mbedtls_raw's output gets the build it measured: "ours" or "debian"
    for build in ours debian; do
        bin=$RAW
        [ "$build" = debian ] && bin=$RAW_DEB
        [ -n "$bin" ] || continue
        RAW_CMD=("$bin" --cert "$RUN/cert.pem" --key "$RUN/key.pem" -d "$RAW_SECONDS" --primitives)
        echo "${RAW_CMD[*]}" >>"$COMMANDS"
        loadavg_note
        "${PIN_PROXY[@]}" timeout 120 "${RAW_CMD[@]}" 2>"$RUN/mbedtls_raw-$build.log" |
            sed "s/^{/{\"build\":\"$build\",/" >>"$RAW_RES" ||
            problem "mbedtls_raw ($build) failed: $(tail -2 "$RUN/mbedtls_raw-$build.log")"
        grep '^mbedtls_raw ' "$RUN/mbedtls_raw-$build.log" | while read -r l; do say "$build: $l"; done
    done
    NETTLE_CMD=("$NETTLE_RAW" -d "$RAW_SECONDS")
    echo "${NETTLE_CMD[*]}" >>"$COMMANDS"
    "${PIN_PROXY[@]}" timeout 120 "${NETTLE_CMD[@]}" >"$RUN/nettle_raw.txt" 2>&1 ||
        problem "nettle_raw failed: $(tail -2 "$RUN/nettle_raw.txt")"
fi
for size in $SIZES; do
    for r in $(seq 1 "$REPS"); do
        run_echo "direct-$size-$r" "$UPORT" --plain "$size" "$ECHO_PID"
    done
done
if [ "$DO_DEFLATE" = 1 ]; then
    for r in $(seq 1 "$REPS"); do
        run_echo "direct-z1024-$r" "$UPORT" --plain 1024 "$ECHO_PID" --deflate-level "$DEFLATE_LEVEL"
    done
fi
check_alive() { # check_alive NAME WHAT: restart the proxy if it died
    kill -0 "$PROXY_PID" 2>/dev/null || {
        problem "$1 exited during $2"
        forget_pid "$PROXY_PID"
        start_proxy "$1"
    }
}
# Repetitions are interleaved: repetition 1 of every proxy, then repetition 2, ... On a shared VM the
# machine's speed drifts over a run (other tenants); interleaved, the drift hits every proxy alike
# instead of whichever ran last, and the min-max shows it.
for r in $(seq 1 "$REPS"); do
    for px in $PROXIES; do
        start_proxy "$px"
        for size in $SIZES; do
            run_echo "$px-$size-$r" "$PROXY_PORT" --tls "$size" "$PROXY_PID"
            check_alive "$px" "$px-$size-$r"
        done
        if [ "$DO_DEFLATE" = 1 ]; then
            run_echo "$px-z1024-$r" "$PROXY_PORT" --tls 1024 "$PROXY_PID" --deflate-level "$DEFLATE_LEVEL"
            check_alive "$px" "$px-z1024-$r"
        fi
        while read -r mode args; do
            # shellcheck disable=SC2086
            run_hs "$px-$mode-$r" "$PROXY_PORT" "$PROXY_PID" $args
            check_alive "$px" "$px-$mode-$r"
        done < <(hs_modes)
        stop_proxy "$px"
    done
done
if [ "$IDLE" != 0 ]; then
    for px in $PROXIES; do
        start_proxy "$px"
        run_idle "$px" "$PROXY_PORT"
        stop_proxy "$px"
    done
fi

agg() { # agg LABEL_PREFIX FIELD -> "median min max" (or "- - -")
    grep "\"label\":\"$1-[0-9]*\"" "$RESULTS" | jget "$2" | sort -g |
        awk '{v[NR] = $1} END {
            if (NR == 0) { print "- - -"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            print m, v[1], v[NR] }'
}

# p50/p99 under a fixed load: 50% of nginx's closed-loop 64 B maximum, the same rate for every proxy
RATE=""
if [ "$DO_RATE" = 1 ]; then
    RATE=$RATE_MSGS
    if [ -z "$RATE" ]; then
        nmax=$(agg nginx-64 msgs_per_s)
        nmax=${nmax%% *}
        [ "$nmax" != "-" ] && RATE=$(awk -v m="$nmax" 'BEGIN {printf "%.0f", m / 2}')
    fi
    if [ -z "$RATE" ] || [ "$RATE" = 0 ]; then
        say "no nginx 64 B result (BENCH_SIZES / BENCH_PROXIES): rate runs skipped; set BENCH_RATE_MSGS"
        RATE=""
    else
        for r in $(seq 1 "$REPS"); do
            for px in $PROXIES; do
                start_proxy "$px"
                run_echo "$px-rate64-$r" "$PROXY_PORT" --tls 64 "$PROXY_PID" --rate "$RATE"
                check_alive "$px" "$px-rate64-$r"
                stop_proxy "$px"
            done
        done
    fi
fi

# policies on vs off: the same wsgate, interleaved (off, on, off, on, ...) so drift hits both
POL_CHECK=""
if [ "$DO_POLICIES" = 1 ] && has_proxy wsgate && [ "$DO_REDIS" = 1 ]; then
    # pinned with the generator (it is the fleet's store, not the proxy)
    "${PIN_GEN[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$RUN/redis.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$RPORT" "$!" || die "redis-server did not start ($(cat "$RUN/redis.log"))"
fi
if [ "$DO_POLICIES" = 1 ] && has_proxy wsgate; then
    for r in $(seq 1 "$REPS"); do
        start_proxy wsgate
        run_echo "wsgate-poloff-64-$r" "$PROXY_PORT" --tls 64 "$PROXY_PID" "${POLICY_CLIENT[@]}"
        stop_proxy wsgate
        start_proxy wsgate-pol
        run_echo "wsgate-polon-64-$r" "$PROXY_PORT" --tls 64 "$PROXY_PID" "${POLICY_CLIENT[@]}"
        if [ "$r" = 1 ]; then
            # the rules are really on: an Origin outside the list must be refused with 403
            o=$("${PIN_GEN[@]}" timeout 20 "$LOADGEN" -u "127.0.0.1:$PROXY_PORT" --tls -c 1 -s 64 -d 0.2 --warmup 0 \
                --origin https://other.test --subprotocol chat --label polcheck 2>/dev/null)
            if echo "$o" | grep -q 'upgrade refused: HTTP/1.1 403'; then
                POL_CHECK="checked: Origin https://other.test refused with 403"
            else
                POL_CHECK="NOT checked"
                problem "policies-on wsgate did not refuse a foreign Origin with 403: $o"
            fi
        fi
        stop_proxy wsgate-pol
        if [ "$DO_REDIS" = 1 ]; then
            start_proxy wsgate-polr
            run_echo "wsgate-polredis-64-$r" "$PROXY_PORT" --tls 64 "$PROXY_PID" "${POLICY_CLIENT[@]}"
            stop_proxy wsgate-polr
        fi
    done
fi

# all workers: every proxy on every CPU (not pinned), the generator still pinned to its CPU
if [ "$ALL_WORKERS" = 1 ]; then
    for r in $(seq 1 "$REPS"); do
        for px in $PROXIES; do
            start_proxy "$px-all"
            for size in $ALL_SIZES; do
                run_echo "$px-all-$size-$r" "$PROXY_PORT" --tls "$size" "$PROXY_PID"
                check_alive "$px-all" "$px-all-$size-$r"
            done
            stop_proxy "$px-all"
        done
    done
fi
kill -0 "$ECHO_PID" 2>/dev/null || problem "echo_upstream exited during the run"

# ------------------------------------------------------------------ the table
cell() { # cell "median min max" FORMAT [DIVISOR]
    echo "$1" | awk -v f="$2" -v d="${3:-1}" '$1 == "-" {print "-"; next}
        {printf f " [" f "-" f "]\n", $1 / d, $2 / d, $3 / d}'
}
ratio() { # ratio A B
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}
med() { local m; m=$(agg "$1" "$2"); echo "${m%% *}"; }
negotiated() { grep "\"label\":\"$1-" "$RESULTS" | head -1 | { read -r l; echo "$(echo "$l" | jget proto) $(echo "$l" | jget cipher)"; }; }
rawget() { # rawget MODE KEY VALUE FIELD: a field of mbedtls_raw's line (our build) whose KEY is VALUE
    grep '"build":"ours"' "$RAW_RES" 2>/dev/null | grep "\"mode\":\"$1\"" 2>/dev/null | grep "\"$2\":\"$3\"" | head -1 | jget "$4"
}
size_name() {
    case $1 in
    1024) echo "1 KiB" ;; 16384) echo "16 KiB" ;; 262144) echo "256 KiB" ;; 65536) echo "64 KiB" ;;
    *) echo "$1 B" ;;
    esac
}
fmt_row() { printf '%-36s %-24s %-24s %-24s %-6s %-6s %s\n' "$@"; }
prow() { # prow NAME LABEL_SUFFIX FIELD FORMAT REFERENCE [DIVISOR]
    local w n h
    w=$(agg "wsgate-$2" "$3")
    n=$(agg "nginx-$2" "$3")
    h=$(agg "haproxy-$2" "$3")
    fmt_row "$1" "$(cell "$w" "$4" "${6:-1}")" "$(cell "$n" "$4" "${6:-1}")" "$(cell "$h" "$4" "${6:-1}")" \
        "$(ratio "${w%% *}" "${n%% *}")" "$(ratio "${w%% *}" "${h%% *}")" "$5"
}
percpu() { # percpu NAME LABEL_SUFFIX FIELD: median FIELD / median proxy CPU share, every proxy
    local w n h
    w=$(percpu1 "wsgate-$2" "$3"); n=$(percpu1 "nginx-$2" "$3"); h=$(percpu1 "haproxy-$2" "$3")
    fmt_row "$1" "$w" "$n" "$h" "$(ratio "$w" "$n")" "$(ratio "$w" "$h")" "(median / median proxy CPU share)"
}
percpu1() {
    awk -v a="$(med "$1" "$2")" -v c="$(med "$1" server_cpu_pct)" \
        'BEGIN { if (a == "-" || a == "" || c == "-" || c + 0 == 0) print "-"; else printf "%.0f\n", a / (c / 100) }'
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.0f%%\n", 100 * a / b }'; }

{
    echo
    echo "== wsgate bench, $(date -u '+%Y-%m-%d %H:%M UTC')$([ "$QUICK" = 1 ] && echo ' (BENCH_QUICK=1 smoke run: numbers are rough)') =="
    echo "machine: nproc=$NPROC, CPU: $CPU_MODEL, kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "load average: before the run $LOAD_BEFORE; 1-min value sampled at each measurement: $(sort -g "$LOADAVG" | awk '{v[NR] = $1} END {if (NR) printf "min %s median %s max %s (n=%d)", v[1], v[int((NR + 1) / 2)], v[NR], NR}') (our proxy + generator account for about 2 of it)"
    echo "wsgate: $WSGATE (built $(date -u -r "$WSGATE" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$WSGATE" | cut -c1-12); tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')); nginx: $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'); haproxy: $("$HAPROXY" -v 2>/dev/null | head -1 | awk '{print $3}'); loadgen TLS: $(openssl version | cut -d' ' -f1-2); mbedTLS: $(sed -n 's/^mbedtls_raw: //p' "$RUN/mbedtls_raw-ours.log" 2>/dev/null | head -1) (our build)"
    echo "$PIN_NOTE; ulimit -n $NOFILE"
    echo "echo: $CONNS connections, closed loop (1 message in flight each), $REPS x ${DUR} s (+${WARM} s warm-up): median [min-max]"
    echo "handshakes: $HS_CONC in flight, closed loop (connect, handshake, close_notify, close), $REPS x ${HS_SECONDS} s (+0.5 s warm-up), ECDSA P-256 certificate"
    for px in $PROXIES; do echo "TLS with $px: echo $(negotiated "$px"), handshakes $(negotiated "$px-hs13full") / $(negotiated "$px-hs12full")"; done
    echo "ratios: ws/ngx = wsgate / nginx, ws/hap = wsgate / HAProxy (medians): above 1 is better for msgs/s and handshakes/s, below 1 for latency, CPU and memory"
    echo
    fmt_row "metric" "wsgate" "nginx" "haproxy" "ws/ngx" "ws/hap" "reference"
    for size in $SIZES; do
        lab=$(size_name "$size")
        d=$(agg "direct-$size" msgs_per_s)
        prow "echo $lab msgs/s" "$size" msgs_per_s "%.0f" "direct plaintext: $(cell "$d" "%.0f")"
        if [ "$size" -ge 16384 ]; then
            d=$(agg "direct-$size" bytes_per_s)
            prow "echo $lab MB/s (payload echoed)" "$size" bytes_per_s "%.1f" "direct plaintext: $(cell "$d" "%.1f" 1e6)" 1e6
        fi
        d=$(agg "direct-$size" p50_us)
        prow "echo $lab p50 latency us" "$size" p50_us "%.0f" "direct: $(cell "$d" "%.0f")"
        d=$(agg "direct-$size" p99_us)
        prow "echo $lab p99 latency us" "$size" p99_us "%.0f" "direct: $(cell "$d" "%.0f")"
        d=$(agg "direct-$size" p999_us)
        prow "echo $lab p99.9 latency us" "$size" p999_us "%.0f" "direct: $(cell "$d" "%.0f")"
        d=$(agg "direct-$size" server_cpu_pct)
        prow "  proxy CPU %" "$size" server_cpu_pct "%.0f" "echo_upstream CPU % (direct): $(cell "$d" "%.0f")"
        d=$(agg "direct-$size" gen_cpu_pct)
        prow "  generator CPU (CPU $GEN_CPU) %" "$size" gen_cpu_pct "%.0f" "direct: $(cell "$d" "%.0f")"
        percpu "  msgs per proxy CPU-second" "$size" msgs_per_s
    done
    if [ "$DO_DEFLATE" = 1 ]; then
        d=$(agg direct-z1024 msgs_per_s)
        zw=$(med direct-z1024 wire_bytes_per_msg)
        prow "echo 1 KiB JSON deflate msgs/s" z1024 msgs_per_s "%.0f" "direct plaintext: $(cell "$d" "%.0f"); about ${zw:--} B per message on the wire"
        d=$(agg direct-z1024 p99_us)
        prow "echo 1 KiB JSON deflate p99 us" z1024 p99_us "%.0f" "direct: $(cell "$d" "%.0f")"
        prow "  proxy CPU %" z1024 server_cpu_pct "%.0f" "wsgate inflates both directions to check them; nginx, HAProxy: blind"
        prow "  generator CPU (CPU $GEN_CPU) %" z1024 gen_cpu_pct "%.0f" "(loadgen compresses, zlib level $DEFLATE_LEVEL, and inflates every message)"
        percpu "  msgs per proxy CPU-second" z1024 msgs_per_s
    fi
    # wsgate's bytes/s at 256 KiB against mbedTLS's own record speed for the suite wsgate negotiated
    big=""
    for size in $SIZES; do [ "$size" = 262144 ] && big=262144; done
    if [ -n "$big" ]; then
        wc=$(grep '"label":"wsgate-262144-' "$RESULTS" | head -1 | jget cipher)
        raw=$(rawget record openssl_name "$wc" mb_per_s)
        rawname=$(rawget record openssl_name "$wc" suite)
        wb=$(med wsgate-262144 bytes_per_s)
        wcpu=$(med wsgate-262144 server_cpu_pct)
        wmb=$(awk -v b="$wb" 'BEGIN { if (b == "-" || b == "") print "-"; else print b / 1e6 }')
        wmbc=$(awk -v b="$wb" -v c="$wcpu" 'BEGIN { if (b == "-" || b == "" || c + 0 == 0) print "-"; else print b / 1e6 / (c / 100) }')
        wucpu=$(med wsgate-262144 server_user_pct)
        wmbu=$(awk -v b="$wb" -v c="$wucpu" 'BEGIN { if (b == "-" || b == "" || c + 0 == 0) print "-"; else print b / 1e6 / (c / 100) }')
        fmt_row "echo 256 KiB: % of mbedTLS raw" "$(pct "$wmb" "$raw") ($(pct "$wmbc" "$raw") per CPU-s, $(pct "$wmbu" "$raw") per user CPU-s)" "(OpenSSL)" "(OpenSSL)" "" "" \
            "mbedTLS raw ${rawname:-?}: ${raw:--} MB/s encrypt+decrypt per core"
    fi
    while read -r mode args; do
        case $mode in
        hs13full) name="TLS 1.3 full handshakes/s"; proto=TLSv1.3 ;;
        hs13res) name="TLS 1.3 resumed (ticket) handshakes/s"; proto=TLSv1.3 ;;
        hs12full) name="TLS 1.2 full handshakes/s"; proto=TLSv1.2 ;;
        hs12res) name="TLS 1.2 resumed (ticket) handshakes/s"; proto=TLSv1.2 ;;
        esac
        ref=""
        case $mode in
        *full)
            ceil=$(rawget handshake proto "$proto" server_per_s)
            ref="mbedTLS server side, full ECDSA+X25519: ${ceil:--}/s per core" ;;
        hs13res)
            ceil=$(rawget resumed proto "$proto" server_per_s)
            ref="mbedTLS server side, resumed (psk_dhe_ke, X25519): ${ceil:--}/s per core" ;;
        *)
            ceil=$(rawget resumed proto "$proto" server_per_s)
            ref="mbedTLS server side, resumed: ${ceil:--}/s per core" ;;
        esac
        [ -s "$RAW_RES" ] || proto=""
        prow "$name" "$mode" handshakes_per_s "%.0f" "$ref"
        prow "  p99 handshake latency us" "$mode" p99_us "%.0f" ""
        prow "  proxy CPU %" "$mode" server_cpu_pct "%.0f" ""
        prow "  generator CPU (CPU $GEN_CPU) %" "$mode" gen_cpu_pct "%.0f" ""
        percpu "  handshakes per proxy CPU-second" "$mode" handshakes_per_s
        if [ -n "$proto" ]; then
            wh=$(med "wsgate-$mode" handshakes_per_s)
            wcpu=$(med "wsgate-$mode" server_cpu_pct)
            whc=$(awk -v b="$wh" -v c="$wcpu" 'BEGIN { if (b == "-" || b == "" || c + 0 == 0) print "-"; else print b / (c / 100) }')
            fmt_row "  wsgate: % of mbedTLS ceiling" "$(pct "$wh" "$ceil") ($(pct "$whc" "$ceil") per CPU-s)" "" "" "" "" ""
        fi
    done < <(hs_modes)
    if [ -n "$RATE" ]; then
        prow "64 B at $RATE msgs/s: p50 us" rate64 p50_us "%.0f" "open loop (--rate), 50% of nginx's 64 B msgs/s"
        prow "64 B at $RATE msgs/s: p99 us" rate64 p99_us "%.0f" ""
        prow "64 B at $RATE msgs/s: p99.9 us" rate64 p999_us "%.0f" ""
        prow "  achieved msgs/s" rate64 msgs_per_s "%.0f" ""
        prow "  proxy CPU %" rate64 server_cpu_pct "%.0f" ""
    fi
    idle_field() { awk -v p="$1" -v k="$2" '$1 == p {print $k}' "$IDLE_RES"; }
    per() { awk -v a="$1" -v n="$2" -v m="$3" -v f="$4" 'BEGIN { if (a == "" || n == "" || n + 0 == 0) print "-"; else printf f "\n", a * m / n }'; }
    if [ "$IDLE" != 0 ]; then
        wn=$(idle_field wsgate 2); nn=$(idle_field nginx 2); hn=$(idle_field haproxy 2)
        fmt_row "idle conns held" "${wn:--}" "${nn:--}" "${hn:--}" "" "" ""
        wr=$(per "$(idle_field wsgate 3)" "$wn" 1 "%.1f"); nr=$(per "$(idle_field nginx 3)" "$nn" 1 "%.1f"); hr=$(per "$(idle_field haproxy 3)" "$hn" 1 "%.1f")
        fmt_row "idle: proxy RSS KiB/conn" "$wr" "$nr" "$hr" "$(ratio "$wr" "$nr")" "$(ratio "$wr" "$hr")" "(process VmRSS delta / conns)"
        wk=$(per "$(idle_field wsgate 4)" "$wn" 4096 "%.0f"); nk=$(per "$(idle_field nginx 4)" "$nn" 4096 "%.0f"); hk=$(per "$(idle_field haproxy 4)" "$hn" 4096 "%.0f")
        fmt_row "idle: kernel TCP mem B/conn" "$wk" "$nk" "$hk" "$(ratio "$wk" "$nk")" "$(ratio "$wk" "$hk")" "(sockstat TCP mem pages delta, all 4 sockets)"
        ws=$(per "$(idle_field wsgate 6)" "$wn" 1 "%.1f"); ns=$(per "$(idle_field nginx 6)" "$nn" 1 "%.1f"); hs=$(per "$(idle_field haproxy 6)" "$hn" 1 "%.1f")
        fmt_row "idle: kernel slab KiB/conn" "$ws" "$ns" "$hs" "$(ratio "$ws" "$ns")" "$(ratio "$ws" "$hs")" "(meminfo Slab delta, informative)"
        wh=$(per "$wn" "$(idle_field wsgate 7)" 1 "%.0f"); nh=$(per "$nn" "$(idle_field nginx 7)" 1 "%.0f"); hh=$(per "$hn" "$(idle_field haproxy 7)" 1 "%.0f")
        fmt_row "idle: conns set up /s" "$wh" "$nh" "$hh" "$(ratio "$wh" "$nh")" "$(ratio "$wh" "$hh")" "(TLS+upgrade, 100 in flight; informative)"
    fi
    if [ "$ALL_WORKERS" = 1 ]; then
        for size in $ALL_SIZES; do
            prow "all workers: echo $(size_name "$size") msgs/s" "all-$size" msgs_per_s "%.0f" "wsgate --workers $NPROC, nginx worker_processes auto, haproxy nbthread $NPROC"
            prow "all workers: echo $(size_name "$size") p99 us" "all-$size" p99_us "%.0f" ""
            prow "  proxy CPU %" "all-$size" server_cpu_pct "%.0f" ""
        done
    fi
    if [ "$DO_POLICIES" = 1 ] && has_proxy wsgate; then
        off=$(agg wsgate-poloff-64 msgs_per_s)
        on=$(agg wsgate-polon-64 msgs_per_s)
        offc=$(agg wsgate-poloff-64 server_cpu_pct)
        onc=$(agg wsgate-polon-64 server_cpu_pct)
        echo
        echo "policies (wsgate, 64 B echo, off and on runs interleaved, same client headers; $POL_CHECK):"
        printf '  %-22s %-26s CPU %% %s\n' "policies off" "$(cell "$off" "%.0f") msgs/s" "$(cell "$offc" "%.0f")"
        printf '  %-22s %-26s CPU %% %s\n' "policies on" "$(cell "$on" "%.0f") msgs/s" "$(cell "$onc" "%.0f")"
        echo "  on/off msgs/s ratio: $(ratio "${on%% *}" "${off%% *}")   (rules: ${POLICY_ARGS[*]})"
        if [ "$DO_REDIS" = 1 ]; then
            onr=$(agg wsgate-polredis-64 msgs_per_s)
            onrc=$(agg wsgate-polredis-64 server_cpu_pct)
            printf '  %-22s %-26s CPU %% %s\n' "policies on + redis" "$(cell "$onr" "%.0f") msgs/s" "$(cell "$onrc" "%.0f")"
            pc_on=$(awk -v m="${on%% *}" -v c="${onc%% *}" 'BEGIN { if (c + 0 > 0) printf "%.0f", m * 100 / c; else print "-" }')
            pc_onr=$(awk -v m="${onr%% *}" -v c="${onrc%% *}" 'BEGIN { if (c + 0 > 0) printf "%.0f", m * 100 / c; else print "-" }')
            echo "  redis/local per proxy CPU-second: $(ratio "$pc_onr" "$pc_on") ($pc_onr vs $pc_on msgs per CPU-s; --redis 127.0.0.1:$RPORT, redis_sync 100ms)"
        fi
    fi
    if [ -s "$RAW_RES" ]; then
        echo
        echo "mbedTLS's own ceilings (bench/mbedtls_raw: client and server in one process over memory, no sockets; per CPU-second, pinned to CPU $PROXY_CPU;"
        echo "ours = wsgate's build with the nettle PSA driver, debian = Debian 13's binary packages):"
        grep '"mode":"record"' "$RAW_RES" | while read -r l; do
            printf '  %-6s %-34s %8s MB/s encrypt+decrypt (encrypt %s, decrypt %s MB/s), %s KiB writes\n' \
                "$(echo "$l" | jget build)" "$(echo "$l" | jget suite)" "$(echo "$l" | jget mb_per_s)" \
                "$(echo "$l" | jget enc_mb_per_s)" "$(echo "$l" | jget dec_mb_per_s)" "$(($(echo "$l" | jget write_size) / 1024))"
        done
        grep '"mode":"handshake"' "$RAW_RES" | while read -r l; do
            printf '  %-6s %-34s %8s full handshakes/s server side per core (%s ms each; client side %s/s)\n' \
                "$(echo "$l" | jget build)" "$(echo "$l" | jget negotiated)" "$(echo "$l" | jget server_per_s)" \
                "$(echo "$l" | jget server_ms)" "$(echo "$l" | jget client_per_s)"
        done
        grep '"mode":"resumed"' "$RAW_RES" | while read -r l; do
            printf '  %-6s %-34s %8s resumed handshakes/s server side per core (%s ms each; client side %s/s)\n' \
                "$(echo "$l" | jget build)" "$(echo "$l" | jget negotiated)" "$(echo "$l" | jget server_per_s)" \
                "$(echo "$l" | jget server_ms)" "$(echo "$l" | jget client_per_s)"
        done
        grep '"mode":"primitive"' "$RAW_RES" | while read -r l; do
            printf '  %-6s PSA %-30s %10s /s%s\n' "$(echo "$l" | jget build)" "$(echo "$l" | jget op)" \
                "$(echo "$l" | jget per_s)" "$(m=$(echo "$l" | jget mb_per_s); [ -n "$m" ] && echo " ($m MB/s)")"
        done
        if [ -s "$RUN/nettle_raw.txt" ]; then
            echo "nettle's own speed (bench/nettle_raw, the driver's ceiling; one core, pinned to CPU $PROXY_CPU):"
            sed 's/^/  /' "$RUN/nettle_raw.txt"
        fi
    fi
    echo
    echo "commands (ports: upstream $UPORT, wsgate $WPORT, nginx $NPORT, haproxy $HPORT; configs: $NGINX_CONF, $HAP_CFG):"
    echo "  $ECHO -p $UPORT   (pinned with taskset to the generator CPU)"
    echo "  ${WSGATE_CMD[*]}"
    [ "$DO_POLICIES" = 1 ] && echo "  ${WSGATE_POL_CMD[*]}"
    echo "  ${NGINX_CMD[*]}"
    echo "  ${HAPROXY_CMD[*]}"
    if [ "$ALL_WORKERS" = 1 ]; then
        echo "  ${WSGATE_ALL_CMD[*]}"
        echo "  ${NGINX_ALL_CMD[*]}"
        echo "  ${HAPROXY_ALL_CMD[*]}"
    fi
    sed 's/--label [^ ]*-[0-9]*$/--label .../' "$COMMANDS" | sed 's/^/  /' | awk '!seen[$0]++'
    if [ -s "$RUN/problems.txt" ]; then
        echo
        echo "PROBLEMS seen during the run ($RUN/problems.txt; proxy logs in $RUN/*.log):"
        sed 's/^/  /' "$RUN/problems.txt"
    fi
} | tee "$RUN/table.txt"
[ -s "$RUN/problems.txt" ] && exit 1
exit 0
