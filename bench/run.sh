#!/usr/bin/env bash
# Benchmark mod_auth_teleport on 127.0.0.1: throughput and server CPU per
# request against httpd without authentication and against
# mod_auth_openidc, JWKS downloads per case, and memory under load.
#
# Usage: bench/run.sh [options]   (see --help)
#
# Every server listens on 127.0.0.1 only: one httpd per case (event MPM,
# one small static file) and one httpd with mod_ssl that plays the Teleport
# proxy's JWKS endpoint, with a CA made for the run. Load comes from wrk
# (-t1 -c32, keep-alive), each run bounded by its duration. Nothing is sent
# to any other address.
set -euo pipefail
umask 022

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly BENCH_DIR=$REPO_ROOT/bench
readonly HTTPD=/usr/sbin/apache2
readonly MODULES_DIR=/usr/lib/apache2/modules
readonly MODULE_FILE=$REPO_ROOT/.libs/mod_auth_teleport.so
readonly OPENIDC_MODULE=$MODULES_DIR/mod_auth_openidc.so
readonly ISSUER=bench.teleport.example
readonly STATIC_PATH=/index.txt

# Seconds to wait for an httpd to respond after a start and to exit after a
# stop.
readonly START_TIMEOUT=15
readonly STOP_TIMEOUT=15
# Seconds of load that fill the token caches before the memory check's
# long run.
readonly MEMORY_FILL_SECONDS=5
# wrk's fixed shape: one thread and 32 keep-alive connections.
readonly WRK_THREADS=1
readonly WRK_CONNECTIONS=32

duration=10
warmup=2
token_count=5000
token_cache=1024
memory_requests=1000000
memory_seconds=90
port_base=19180
run_peer=1
run_cases=1
run_memory=1
run_speed=1
install=1
build=1
keep_work_dir=0
wait_for_tests_seconds=0
perf_dir=""
report_file=""

log() {
    printf 'bench: %s %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

warn() {
    printf 'bench: warning: %s\n' "$*" >&2
}

die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
Usage: bench/run.sh [options]

Installs what it needs from Debian (wrk, mod_auth_openidc, the build and
token-minting packages), builds the module, and measures each case with
wrk -t$WRK_THREADS -c$WRK_CONNECTIONS against an httpd on 127.0.0.1. Prints a table of
requests/s, server CPU per request, the ratio to no authentication and the
JWKS downloads per case, the openssl speed verify rates, and a memory
check. With the defaults the whole run takes about 7 minutes.

Options:
  --duration SECONDS        measured time per case (default: $duration)
  --warmup SECONDS          warm-up time before each case (default: $warmup)
  --tokens N                tokens in each distinct-token file (default: $token_count)
  --token-cache N           TeleportTokenCache entries (default: $token_cache)
  --memory-requests N       stop sending in the long memory run after N
                            requests (default: $memory_requests)
  --memory-seconds SECONDS  length of the long memory run; wrk runs this
                            long even when the request limit stops it
                            sending earlier (default: $memory_seconds)
  --port-base PORT          first of the 3 ports used on 127.0.0.1:
                            PORT the measured httpd, PORT+1 and PORT+2 the
                            JWKS endpoints (default: $port_base)
  --no-peer                 skip mod_auth_openidc (neither installed nor run)
  --no-cases                skip the throughput cases (for example to run
                            only a long memory check)
  --no-memory               skip the memory check
  --no-speed                skip openssl speed
  --no-install              install no packages; fail if one is missing
  --no-build                use the module already built in .libs/
  --wait-for-tests SECONDS  before each case, wait up to this long while
                            the test suite (a t/TEST process) runs on this
                            machine (default: $wait_for_tests_seconds, no waiting)
  --report FILE             also write the report to FILE
  --perf DIR                record a CPU profile of httpd (perf record with
                            call graphs) during each measured run, and write
                            it and a summary (bench/perf-breakdown) per case
                            into DIR; perf slows httpd, so the figures of
                            such a run are not comparable with others
  --keep                    keep the work directory (configs, logs, tokens);
                            a failed run always keeps it
  --help                    show this help

Run as root to install packages; httpd's children then run as www-data.
EOF
}

# Check that $2 is an integer from $3 to $4; $1 names the option.
require_integer() {
    local name=$1 value=$2 min=$3 max=$4
    [[ $value =~ ^[0-9]+$ ]] \
        || die "$name must be a whole number, not '$value'"
    # 10# reads a value with leading zeros as decimal, not octal.
    ((10#$value >= min && 10#$value <= max)) \
        || die "$name must be from $min to $max, not $value"
}

parse_args() {
    while (($# > 0)); do
        case $1 in
            --duration | --warmup | --tokens | --token-cache \
                | --memory-requests | --memory-seconds | --port-base \
                | --report | --wait-for-tests | --perf)
                (($# >= 2)) || die "option $1 needs a value; see --help"
                case $1 in
                    --duration) duration=$2 ;;
                    --warmup) warmup=$2 ;;
                    --tokens) token_count=$2 ;;
                    --token-cache) token_cache=$2 ;;
                    --memory-requests) memory_requests=$2 ;;
                    --memory-seconds) memory_seconds=$2 ;;
                    --port-base) port_base=$2 ;;
                    --report) report_file=$2 ;;
                    --wait-for-tests) wait_for_tests_seconds=$2 ;;
                    --perf) perf_dir=$2 ;;
                esac
                shift
                ;;
            --no-peer) run_peer=0 ;;
            --no-cases) run_cases=0 ;;
            --no-memory) run_memory=0 ;;
            --no-speed) run_speed=0 ;;
            --no-install) install=0 ;;
            --no-build) build=0 ;;
            --keep) keep_work_dir=1 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option '$1'" ;;
        esac
        shift
    done

    require_integer --duration "$duration" 1 600
    require_integer --warmup "$warmup" 0 60
    require_integer --tokens "$token_count" 1 100000
    require_integer --token-cache "$token_cache" 0 1000000
    require_integer --memory-requests "$memory_requests" 1 100000000
    require_integer --memory-seconds "$memory_seconds" 1 3600
    require_integer --port-base "$port_base" 1024 65533
    require_integer --wait-for-tests "$wait_for_tests_seconds" 0 3600
    duration=$((10#$duration))
    warmup=$((10#$warmup))
    token_count=$((10#$token_count))
    token_cache=$((10#$token_cache))
    memory_requests=$((10#$memory_requests))
    memory_seconds=$((10#$memory_seconds))
    port_base=$((10#$port_base))
    wait_for_tests_seconds=$((10#$wait_for_tests_seconds))
    check_port_range "$port_base"
    if ((token_count <= token_cache)); then
        warn "--tokens $token_count is not more than --token-cache" \
            "$token_cache: the distinct-token cases will mostly hit the" \
            "token cache, and the memory check will not fill it"
    fi
    if [[ -n $perf_dir ]]; then
        mkdir -p -- "$perf_dir" || die "cannot create the --perf directory" \
            "$perf_dir"
        perf_dir=$(cd "$perf_dir" && pwd)
    fi
    if [[ -n $report_file && -e $report_file && ! -f $report_file ]]; then
        die "--report $report_file exists and is not a regular file"
    fi
}

# Refuse ports that the test suite (8529-8600) and the demo (3080, 8080,
# 8081) use, so a benchmark never disturbs them.
check_port_range() {
    local first=$1 last=$(($1 + 2)) port
    for port in 3080 8080 8081; do
        if ((port >= first && port <= last)); then
            die "--port-base $first would use port $port, which demo/run.sh" \
                "uses; choose another base"
        fi
    done
    if ((last >= 8529 && first <= 8600)); then
        die "--port-base $first overlaps ports 8529-8600, which the test" \
            "suite uses; choose another base"
    fi
}

# Return success when something accepts TCP connections on 127.0.0.1:port.
port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Packages and build

is_installed() {
    local status
    status=$(dpkg-query --show --showformat='${db:Status-Abbrev}' "$1" \
        2>/dev/null) || return 1
    [[ $status == ii* ]]
}

install_packages() {
    local required=(wrk curl) missing=() package

    if ((run_peer)); then
        required+=(libapache2-mod-auth-openidc)
    fi
    if [[ -n $perf_dir ]]; then
        required+=(linux-perf)
    fi
    if ((install)); then
        log "checking the build and token-minting packages" \
            "(scripts/install-deps.sh --demo)"
        "$REPO_ROOT/scripts/install-deps.sh" --demo >&2 \
            || die "scripts/install-deps.sh --demo failed; see its output above"
    fi

    for package in "${required[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi

    if ((install == 0)); then
        die "missing packages: ${missing[*]}; install them or run without" \
            "--no-install"
    fi
    ((EUID == 0)) \
        || die "installing ${missing[*]} needs root: run bench/run.sh as root"

    log "installing ${missing[*]}"
    # The full apache2 package is never installed: its post-install script
    # starts a server on port 80. apache2-bin has the server and modules.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed (see above);" \
               "run 'apt-get update' and try again, or pass --no-peer to" \
               "skip mod_auth_openidc"
    for package in "${missing[@]}"; do
        is_installed "$package" \
            || die "package $package is still not installed after apt-get"
    done
}

# Build in the repository root, as demo/run.sh does: autogen.sh and
# configure only when their output is missing, then make.
build_module() {
    local build_log=$WORK_DIR/build.log
    if ((build)); then
        log "building the module (log: $build_log)"
        if ! (
            cd "$REPO_ROOT"
            if [[ ! -x configure ]]; then ./autogen.sh; fi
            if [[ ! -f Makefile ]]; then ./configure; fi
            make
        ) >"$build_log" 2>&1; then
            tail -n 30 -- "$build_log" >&2
            die "building the module failed; the full output is in $build_log"
        fi
    fi
    [[ -f $MODULE_FILE ]] \
        || die "$MODULE_FILE does not exist; run without --no-build"
}

# Work directory and cleanup

WORK_DIR=""
STARTED_SERVERS=()
SAMPLER_PID=""

# Stop what this run started and remove its work directory (unless --keep
# or the run failed); the EXIT trap runs it.
# shellcheck disable=SC2317  # reached only through the trap
cleanup() {
    local status=$? dir
    if [[ -n $PERF_PID ]] && kill -0 "$PERF_PID" 2>/dev/null; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
    fi
    if [[ -n $SAMPLER_PID ]] && kill -0 "$SAMPLER_PID" 2>/dev/null; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    for dir in "${STARTED_SERVERS[@]}"; do
        stop_server "$dir" || true
    done
    if [[ -n $WORK_DIR && -d $WORK_DIR ]]; then
        # A failed run keeps it: its warnings name logs in it.
        if ((keep_work_dir || status != 0)); then
            log "kept the work directory $WORK_DIR"
        else
            rm -rf -- "$WORK_DIR"
        fi
    fi
    exit "$status"
}

make_work_dir() {
    WORK_DIR=$(mktemp -d /tmp/mod_auth_teleport-bench.XXXXXX)
    # httpd's children (www-data when started as root) read the static
    # file, the JWKS documents and the CA certificate below it.
    chmod 0755 -- "$WORK_DIR"
    mkdir -p -- "$WORK_DIR/htdocs" "$WORK_DIR/pki" "$WORK_DIR/servers" \
        "$WORK_DIR/wrk"
    # One small static file, the same for every case.
    printf 'mod_auth_teleport benchmark: a small static file.\n' \
        >"$WORK_DIR/htdocs${STATIC_PATH}"
}

# Print a warning, and remember it for the report, when the test suite
# (t/TEST) runs on this machine: it competes for the same 2 cores.
INTERFERENCE=""
check_interference() {
    local pid command_line age found=""
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        command_line=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") \
            || continue
        if [[ $command_line == *t/TEST* ]]; then
            age=$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ') || age="?"
            found+="${found:+, }pid $pid running for ${age} s"
        fi
    done
    if [[ -n $found ]]; then
        INTERFERENCE+="${INTERFERENCE:+; }$1: test suite running ($found)"
        warn "the test suite (t/TEST) is running ($found): figures measured" \
            "now are noisy"
    fi
}

# With --wait-for-tests, wait up to that many seconds for the test suite
# to finish before a case starts; $1 names the case.
wait_for_tests() {
    local waited=0
    ((wait_for_tests_seconds > 0)) || return 0
    while test_suite_running; do
        if ((waited >= wait_for_tests_seconds)); then
            warn "$1: the test suite still runs after $waited s of" \
                "waiting; starting anyway"
            return 0
        fi
        if ((waited == 0)); then
            log "$1: waiting up to $wait_for_tests_seconds s for the test" \
                "suite (t/TEST) to finish"
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

# Return success when a t/TEST process runs.
test_suite_running() {
    local pid command_line
    for pid in /proc/[0-9]*; do
        command_line=$(tr '\0' ' ' 2>/dev/null <"$pid/cmdline") || continue
        if [[ $command_line == *t/TEST* ]]; then
            return 0
        fi
    done
    return 1
}

# TLS and keys

make_pki() {
    local pki=$WORK_DIR/pki
    log "creating a CA and the JWKS endpoint's certificate for 127.0.0.1"
    openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$pki/ca-key.pem"
    openssl req -new -x509 -key "$pki/ca-key.pem" -out "$pki/ca.pem" \
        -days 2 -subj "/CN=mod_auth_teleport bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$pki/server-key.pem"
    openssl req -new -key "$pki/server-key.pem" -out "$pki/server.csr" \
        -subj "/CN=localhost"
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$pki/server.ext"
    openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" \
        -CAkey "$pki/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
        -days 2 -extfile "$pki/server.ext" -out "$pki/server.pem" 2>/dev/null
    rm -f -- "$pki/server.csr" "$pki/server.ext"
    chmod 0600 -- "$pki/ca-key.pem" "$pki/server-key.pem"
    chmod 0644 -- "$pki/ca.pem" "$pki/server.pem"
}

mint_tokens() {
    log "minting tokens: $token_count distinct RS256, ES256 and kid-less" \
        "RS256 tokens, and the JWKS documents"
    "$BENCH_DIR/mint-tokens" --out "$WORK_DIR/mint" --count "$token_count" \
        --issuer "$ISSUER" --audience "$AUDIENCE" \
        || die "bench/mint-tokens failed; see its message above"
    TOKENS=$WORK_DIR/mint/tokens
    local name
    for name in rs256-one es256-one rs256-nokid-one rs256-tampered \
        es256-tampered rs256-distinct es256-distinct rs256-nokid-distinct; do
        [[ -s $TOKENS/$name.txt ]] \
            || die "bench/mint-tokens wrote no $TOKENS/$name.txt"
    done
}

# Print a token with the payload and signature of $1 and a header naming
# kid $2, which no JWKS of this run contains.
token_with_kid() {
    local token=$1 kid=$2 header
    header=$(printf '{"alg":"RS256","kid":"%s","typ":"JWT"}' "$kid" \
        | base64 -w0 | tr '+/' '-_' | tr -d '=')
    printf '%s.%s\n' "$header" "${token#*.}"
}

# httpd servers

# Print "User" and "Group" lines for httpd's children when running as root.
user_lines() {
    if ((EUID == 0)); then
        if id -u www-data >/dev/null 2>&1; then
            printf 'User www-data\nGroup www-data\n'
        else
            printf 'User nobody\nGroup nogroup\n'
        fi
    fi
}

# Write the part every httpd config of this run shares.
write_common_conf() {
    local dir=$1
    cat <<EOF
# Generated by bench/run.sh.
ServerRoot "$dir"
ServerName localhost
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
$(user_lines)

LoadModule mpm_event_module $MODULES_DIR/mod_mpm_event.so
LoadModule authn_core_module $MODULES_DIR/mod_authn_core.so
LoadModule authz_core_module $MODULES_DIR/mod_authz_core.so
LoadModule authz_user_module $MODULES_DIR/mod_authz_user.so
LoadModule mime_module $MODULES_DIR/mod_mime.so

TypesConfig /dev/null
AddType text/plain .txt
ErrorLog "$dir/error_log"
LogLevel warn
EOF
}

# Write the config of a measured server: kind $2 is noauth, teleport or
# openidc, $4 contains directives for its <Location "/">, $5 is the JWKS URL.
write_measured_conf() {
    local dir=$1 kind=$2 port=$3 location_extra=$4 jwks_url=$5
    write_common_conf "$dir"
    # Two child processes of 32 threads each, all started at once and never
    # stopped by the idle-thread check, so that no process starts or exits
    # during a run. No access log: every case pays the same, and disk
    # writes would only add noise. Connections stay open for the whole run.
    cat <<EOF

StartServers 2
ServerLimit 2
ThreadsPerChild 32
MinSpareThreads 1
MaxSpareThreads 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0

Listen 127.0.0.1:$port
DocumentRoot "$WORK_DIR/htdocs"
<Directory "$WORK_DIR/htdocs">
    AllowOverride None
    Require all granted
</Directory>
EOF
    case $kind in
        noauth)
            ;;
        teleport)
            cat <<EOF

LoadModule socache_shmcb_module $MODULES_DIR/mod_socache_shmcb.so
LoadModule auth_teleport_module $MODULE_FILE
TeleportTokenCache $token_cache
<Location "/">
    AuthType Teleport
    AuthName "bench"
    TeleportProxyURL $jwks_url
    TeleportCAFile "$WORK_DIR/pki/ca.pem"
    TeleportAudience $AUDIENCE
    TeleportIssuer $ISSUER
$location_extra
    Require valid-user
</Location>
EOF
            ;;
        openidc)
            # OAuth 2.0 resource-server mode: tokens in "Authorization:
            # Bearer", verified against the same JWKS over TLS with the
            # run's CA. The passphrase protects mod_auth_openidc's cache
            # entries; it is made for this run.
            cat <<EOF

LoadModule auth_openidc_module $OPENIDC_MODULE
OIDCCryptoPassphrase $(openssl rand -hex 16)
OIDCCABundlePath "$WORK_DIR/pki/ca.pem"
OIDCOAuthVerifyJwksUri $jwks_url
OIDCOAuthRemoteUserClaim username
OIDCOAuthAcceptTokenAs header
<Location "/">
    AuthType oauth20
$location_extra
    Require valid-user
</Location>
EOF
            ;;
        *)
            die "unknown server kind '$kind'"
            ;;
    esac
}

# Write the JWKS endpoint's config: two TLS virtual hosts, the main JWKS on
# $JWKS_PORT and the 20-key JWKS on $LARGE_JWKS_PORT, with an access log
# that counts downloads.
write_jwks_conf() {
    local dir=$1
    write_common_conf "$dir"
    cat <<EOF

LoadModule socache_shmcb_module $MODULES_DIR/mod_socache_shmcb.so
LoadModule ssl_module $MODULES_DIR/mod_ssl.so
AddType application/json .json
SSLSessionCache "shmcb:$dir/ssl_scache(512000)"

StartServers 1
ServerLimit 1
ThreadsPerChild 8
MinSpareThreads 1
MaxSpareThreads 8
MaxRequestWorkers 8

LogFormat "%{local}p \"%r\" %>s %B %{%s}t \"%{User-Agent}i\"" jwks
CustomLog "$dir/access_log" jwks

Listen 127.0.0.1:$JWKS_PORT https
Listen 127.0.0.1:$LARGE_JWKS_PORT https
<Directory "$WORK_DIR/mint/jwks">
    Require all granted
</Directory>
<VirtualHost 127.0.0.1:$JWKS_PORT>
    SSLEngine on
    SSLCertificateFile "$WORK_DIR/pki/server.pem"
    SSLCertificateKeyFile "$WORK_DIR/pki/server-key.pem"
    DocumentRoot "$WORK_DIR/mint/jwks/main"
</VirtualHost>
<VirtualHost 127.0.0.1:$LARGE_JWKS_PORT>
    SSLEngine on
    SSLCertificateFile "$WORK_DIR/pki/server.pem"
    SSLCertificateKeyFile "$WORK_DIR/pki/server-key.pem"
    DocumentRoot "$WORK_DIR/mint/jwks/large"
</VirtualHost>
EOF
}

# Print the pid of the httpd whose directory is $1, or fail when it does not
# run. The pid must belong to an apache2 process started with that
# directory's config, so a stale pid file never leads to signalling another
# process.
server_pid() {
    local dir=$1 pid command_line
    [[ -f $dir/httpd.pid ]] || return 1
    pid=$(<"$dir/httpd.pid")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    command_line=$(tr '\0' ' ' <"/proc/$pid/cmdline") || return 1
    [[ $command_line == "$HTTPD "*"-f $dir/httpd.conf"* ]] || return 1
    printf '%s\n' "$pid"
}

# Start the httpd configured in $1/httpd.conf and wait until $2 (a URL and
# curl options) gets any HTTP response.
start_server() {
    local dir=$1 waited=0
    shift
    # No separate "httpd -t": mod_auth_teleport fetches the JWKS when the
    # configuration is loaded, so a config test would add a download.
    "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -k start \
        || die "httpd did not start with $dir/httpd.conf (its message is" \
               "above); see also $dir/error_log"
    STARTED_SERVERS+=("$dir")
    until curl -s -o /dev/null --max-time 2 "$@"; do
        if ((waited >= START_TIMEOUT * 10)); then
            tail -n 20 -- "$dir/error_log" >&2 || true
            die "httpd with $dir/httpd.conf did not respond within" \
                "$START_TIMEOUT s; see $dir/error_log"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    server_pid "$dir" >/dev/null \
        || die "httpd responds but $dir/httpd.pid names no httpd of this run"
}

stop_server() {
    local dir=$1 pid waited=0 remaining=() entry
    for entry in "${STARTED_SERVERS[@]}"; do
        [[ $entry == "$dir" ]] || remaining+=("$entry")
    done
    STARTED_SERVERS=("${remaining[@]}")
    pid=$(server_pid "$dir") || return 0
    kill -TERM "$pid"
    while [[ -e /proc/$pid ]]; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            warn "httpd (pid $pid) did not exit within $STOP_TIMEOUT s"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Print the pids of the processes whose parent is $1.
child_pids() {
    local parent=$1 stat_file stat fields
    for stat_file in /proc/[0-9]*/stat; do
        { stat=$(<"$stat_file"); } 2>/dev/null || continue
        # The fields after the command name, which is in parentheses and
        # may contain spaces: fields[0] is field 3 of proc(5), the state,
        # and fields[1] field 4, the ppid.
        read -r -a fields <<<"${stat##*) }"
        if [[ ${fields[1]} == "$parent" ]]; then
            stat_file=${stat_file#/proc/}
            printf '%s\n' "${stat_file%/stat}"
        fi
    done
}

# Print the CPU time, in clock ticks, that httpd $1 and its children used:
# utime + stime of each live process, plus cutime + cstime of the parent,
# which contains the time of children that exited and were reaped.
server_cpu_ticks() {
    local parent=$1 pid stat fields total=0
    for pid in "$parent" $(child_pids "$parent"); do
        { stat=$(<"/proc/$pid/stat"); } 2>/dev/null || continue
        # fields[k] is field k + 3 of proc(5): utime (14) is fields[11],
        # stime fields[12], cutime fields[13], cstime fields[14].
        read -r -a fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
        if [[ $pid == "$parent" ]]; then
            total=$((total + fields[13] + fields[14]))
        fi
    done
    printf '%s\n' "$total"
}

# Print "busy total" jiffies of all CPUs from /proc/stat.
host_cpu_jiffies() {
    local label user nice system idle iowait irq softirq steal rest
    read -r label user nice system idle iowait irq softirq steal rest \
        </proc/stat
    printf '%s %s\n' "$((user + nice + system + irq + softirq + steal))" \
        "$((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# Print the CPU time, in clock ticks, of the reaped children of this shell
# (cutime + cstime of proc(5)): wrk's time is added once its timeout
# process has exited.
client_cpu_ticks() {
    local stat fields
    stat=$(<"/proc/$$/stat")
    read -r -a fields <<<"${stat##*) }"
    printf '%s\n' "$((fields[13] + fields[14]))"
}

# Print the summed VmRSS, in KiB, of the children of httpd $1.
children_rss_kib() {
    local parent=$1 pid rss total=0
    for pid in $(child_pids "$parent"); do
        rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" \
            2>/dev/null) || continue
        total=$((total + ${rss:-0}))
    done
    printf '%s\n' "$total"
}

# Print how many times the main JWKS was downloaded so far.
jwks_downloads() {
    local log_file=$JWKS_SERVER/access_log
    [[ -f $log_file ]] || { printf '0\n'; return; }
    awk -v port="$JWKS_PORT" \
        '$1 == port && $3 == "/.well-known/jwks.json" { n++ }
         END { print n + 0 }' "$log_file"
}

# Load generation

# Run wrk for $1 seconds with the load of a case and write its output to
# $2. The load is "fixed HEADER TOKEN_FILE", "rotate HEADER TOKEN_FILE
# [MAX_REQUESTS]" or "random TOKEN_FILE".
run_wrk() {
    local seconds=$1 output=$2 load=$3 header file limit
    local arguments=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${seconds}s"
        --timeout 5s)
    read -r kind header file limit <<<"$load"
    case $kind in
        fixed)
            local token
            token=$(head -n 1 -- "$file")
            if [[ ${header,,} == authorization ]]; then
                token="Bearer $token"
            fi
            arguments+=(-H "$header: $token" "$APP_URL")
            ;;
        rotate)
            arguments+=(-s "$BENCH_DIR/rotate-tokens.lua" "$APP_URL" --
                "$file" "$header" "${limit:-0}")
            ;;
        random)
            # Here the second word is the token file.
            arguments+=(-s "$BENCH_DIR/random-kid.lua" "$APP_URL" -- "$header")
            ;;
        *)
            die "unknown load '$load'"
            ;;
    esac
    # timeout bounds the run even if wrk stops responding to its own clock.
    if ! timeout --kill-after=5 $((seconds + 30)) wrk "${arguments[@]}" \
        >"$output" 2>&1; then
        cat -- "$output" >&2
        die "wrk failed (load: $kind); its output is above"
    fi
}

# Print "requests requests_per_second non2xx socket_errors" from wrk output.
parse_wrk() {
    awk '
        / requests in / { requests = $1 }
        /^Requests\/sec:/ { rate = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ {
            errors = 0
            for (i = 3; i <= NF; i += 2) { v = $(i + 1); sub(/,/, "", v); errors += v }
        }
        END { printf "%s %s %d %d\n", requests + 0, rate + 0, non2xx, errors }
    ' "$1"
}

# Print $1 clock ticks per request, $2 requests, in microseconds.
per_request_us() {
    awk -v ticks="$1" -v hz="$CLOCK_TICKS" -v n="$2" \
        'BEGIN { printf "%.1f\n", ticks * 1e6 / hz / n }'
}

# Print $1 as a percentage of $2, or 0 when $2 is 0.
percent() {
    awk -v part="$1" -v whole="$2" \
        'BEGIN { printf "%.0f\n", (whole > 0 ? 100 * part / whole : 0) }'
}

# Profiles (--perf)

PERF_PID=""

# Record httpd $2 and its children for the measured run of case $1.
start_profile() {
    local id=$1 pids
    pids=$({ printf '%s\n' "$2"; child_pids "$2"; } | paste -sd, -)
    perf record -q -F 499 --call-graph dwarf,16384 \
        -o "$perf_dir/$id.data" -p "$pids" -- sleep "$duration" \
        >"$perf_dir/$id.log" 2>&1 &
    PERF_PID=$!
}

# Wait for the recording of case $1 and summarize it into $perf_dir/$1.txt.
finish_profile() {
    local id=$1
    if ! wait "$PERF_PID"; then
        PERF_PID=""
        die "perf record failed for $id; see $perf_dir/$id.log"
    fi
    PERF_PID=""
    perf script -i "$perf_dir/$id.data" 2>/dev/null \
        | "$BENCH_DIR/perf-breakdown" --top 40 --focus authenticate \
            --focus verify --focus verify_with_keys \
            --focus teleport_jwt_verify --focus teleport_keys_acquire \
            --focus oidc_check_user_id >"$perf_dir/$id.txt" \
        || warn "summarizing the profile of $id failed; the data is in" \
                "$perf_dir/$id.data"
    log "$id: profile in $perf_dir/$id.data, summary in $perf_dir/$id.txt"
}

# Guard checks: the responses a user gets before the load starts

CHECK_FAILURES=0

# Send one request with header $2 set to token $3 (none when empty) and
# compare the status with $4; $1 describes the request.
check_status() {
    local description=$1 header=$2 token=$3 expected=$4 status
    local curl_arguments=(-s -o /dev/null -w '%{http_code}' --max-time 10)
    if [[ -n $token ]]; then
        if [[ ${header,,} == authorization ]]; then
            token="Bearer $token"
        fi
        curl_arguments+=(-H "$header: $token")
    fi
    status=$(curl "${curl_arguments[@]}" "$APP_URL") || status="no response"
    if [[ $status != "$expected" ]]; then
        warn "check failed: $description: expected $expected, got $status"
        CHECK_FAILURES=$((CHECK_FAILURES + 1))
        return 1
    fi
}

# Results

# Case ids in the order they ran, their labels, and their measurements
# (see field()); a case whose checks failed has no measurements.
CASE_IDS=()
declare -A CASE_LABELS=()
declare -A RESULTS_BY_ID=()

# Print wrk's "Socket errors" line of output file $1 without its label.
socket_error_line() {
    sed -n 's/^ *Socket errors: *//p' -- "$1" | head -n 1
}

# Print where wrk's output stays, or how to keep it: the work directory
# is removed at exit unless --keep is given.
kept_note() {
    if ((keep_work_dir)); then
        printf '; wrk output in %s/wrk' "$WORK_DIR"
    else
        printf '; run with --keep to keep wrk output'
    fi
}

# Run one case: $1 id, $2 label, $3 server kind, $4 directives for the
# <Location>, $5 load, $6 the status every response must have.
run_case() {
    local id=$1 label=$2 kind=$3 location_extra=$4 load=$5 expected=$6
    local dir=$WORK_DIR/servers/$id header file pid failed=0
    local jwks_start jwks_before jwks_after cpu_before cpu_after
    local host_before host_after requests rate non2xx socket_errors
    local unexpected cpu_us host_busy client_before client_after client_us
    local other busy_before total_before busy_after total_after

    wait_for_tests "$label"
    check_interference "$label"
    mkdir -p -- "$dir"
    write_measured_conf "$dir" "$kind" "$APP_PORT" "$location_extra" \
        "https://127.0.0.1:$JWKS_PORT/.well-known/jwks.json" \
        >"$dir/httpd.conf"
    jwks_start=$(jwks_downloads)
    start_server "$dir" "$APP_URL"
    pid=$(server_pid "$dir")

    read -r _ header file _ <<<"$load"
    if [[ $load == random* ]]; then
        file=$header
        header=Teleport-Jwt-Assertion
    fi
    # Checks as a user would see them: a good token passes, and a missing
    # or tampered token or an unknown kid gets 401.
    if [[ $kind == noauth ]]; then
        check_status "$label: static file" "$header" "" 200 || failed=1
    else
        local alg=rs256 good_token
        if [[ $file == *es256* ]]; then
            alg=es256
        fi
        good_token=$(head -n 1 -- "$TOKENS/$alg-one.txt")
        check_status "$label: valid $alg token" "$header" "$good_token" 200 \
            || failed=1
        check_status "$label: no token" "$header" "" 401 || failed=1
        check_status "$label: tampered $alg token" "$header" \
            "$(head -n 1 -- "$TOKENS/$alg-tampered.txt")" 401 || failed=1
        if [[ $load == random* ]]; then
            # Only here: an unknown kid may start a JWKS download, which
            # would show in the download counts of the other cases.
            check_status "$label: unknown kid" "$header" \
                "$(token_with_kid "$good_token" bench-unknown-kid)" 401 \
                || failed=1
        else
            check_status "$label: first token of the load" "$header" \
                "$(head -n 1 -- "$file")" "$expected" || failed=1
        fi
    fi
    if ((failed)); then
        warn "$label: skipped the load because a check failed; see" \
            "$dir/error_log"
        stop_server "$dir"
        CASE_IDS+=("$id")
        CASE_LABELS[$id]=$label
        return 0
    fi

    if ((warmup > 0)); then
        run_wrk "$warmup" "$WORK_DIR/wrk/$id-warmup.txt" "$load"
    fi
    jwks_before=$(jwks_downloads)
    cpu_before=$(server_cpu_ticks "$pid")
    client_before=$(client_cpu_ticks)
    host_before=$(host_cpu_jiffies)
    if [[ -n $perf_dir ]]; then
        start_profile "$id" "$pid"
    fi
    run_wrk "$duration" "$WORK_DIR/wrk/$id.txt" "$load"
    if [[ -n $perf_dir ]]; then
        finish_profile "$id"
    fi
    host_after=$(host_cpu_jiffies)
    client_after=$(client_cpu_ticks)
    cpu_after=$(server_cpu_ticks "$pid")
    jwks_after=$(jwks_downloads)
    stop_server "$dir"

    read -r requests rate non2xx socket_errors \
        <<<"$(parse_wrk "$WORK_DIR/wrk/$id.txt")"
    if ((requests == 0)); then
        cat -- "$WORK_DIR/wrk/$id.txt" >&2
        die "$label: wrk completed no request; its output is above"
    fi
    if [[ $expected == 200 ]]; then
        unexpected=$non2xx
    else
        unexpected=$((requests - non2xx))
    fi
    if ((unexpected > 0)); then
        warn "$label: $unexpected of $requests responses had another status" \
            "than $expected; see $dir/error_log"
        CHECK_FAILURES=$((CHECK_FAILURES + 1))
    fi
    if ((socket_errors > 0)); then
        warn "$label: wrk counted $socket_errors socket errors" \
            "($(socket_error_line "$WORK_DIR/wrk/$id.txt"))$(kept_note)"
    fi

    cpu_us=$(per_request_us $((cpu_after - cpu_before)) "$requests")
    client_us=$(per_request_us $((client_after - client_before)) "$requests")
    read -r busy_before total_before <<<"$host_before"
    read -r busy_after total_after <<<"$host_after"
    host_busy=$(percent $((busy_after - busy_before)) \
        $((total_after - total_before)))
    # CPU time of everything else on the machine: busy time less httpd's
    # and wrk's. Clock ticks and /proc/stat jiffies both count USER_HZ.
    other=$(percent $((busy_after - busy_before - (cpu_after - cpu_before) \
        - (client_after - client_before))) $((total_after - total_before)))
    CASE_IDS+=("$id")
    CASE_LABELS[$id]=$label
    RESULTS_BY_ID[$id]="$rate $cpu_us $host_busy $((jwks_after - jwks_before)) $((jwks_after - jwks_start)) $unexpected $socket_errors $client_us $other"
    log "$label: $rate requests/s, $cpu_us us server CPU per request," \
        "JWKS downloads $((jwks_after - jwks_before)) in the run," \
        "$((jwks_after - jwks_start)) in all"
}

# Memory check

MEMORY_LINES=()

memory_check() {
    local dir=$WORK_DIR/servers/memory pid mixed=$WORK_DIR/mint/tokens/mixed.txt
    local rss_start rss_keys rss_full rss_end requests fill
    local samples=$WORK_DIR/memory-samples.txt

    check_interference "memory check"
    mkdir -p -- "$dir"
    write_measured_conf "$dir" teleport "$APP_PORT" "" \
        "https://127.0.0.1:$LARGE_JWKS_PORT/.well-known/jwks.json" \
        >"$dir/httpd.conf"
    start_server "$dir" "$APP_URL"
    pid=$(server_pid "$dir")
    rss_start=$(children_rss_kib "$pid")

    # RS256 and ES256 tokens, interleaved, so that both key types verify.
    paste -d '\n' "$TOKENS/rs256-distinct.txt" "$TOKENS/es256-distinct.txt" \
        | grep -v '^$' >"$mixed"
    check_status "memory check: valid token with the 20-key JWKS" \
        Teleport-Jwt-Assertion "$(head -n 1 -- "$TOKENS/rs256-one.txt")" 200 \
        || die "the memory check's server rejects a valid token; see" \
               "$dir/error_log"
    rss_keys=$(children_rss_kib "$pid")

    # Each child receives about half the requests, so each has verified
    # more distinct tokens than its cache can store once the requests
    # exceed twice that. wrk waits for its whole -d duration even when the script
    # stops sending, so the fill is bounded by time.
    run_wrk "$MEMORY_FILL_SECONDS" "$WORK_DIR/wrk/memory-fill.txt" \
        "rotate Teleport-Jwt-Assertion $mixed"
    read -r fill _ <<<"$(parse_wrk "$WORK_DIR/wrk/memory-fill.txt")"
    if ((fill <= 2 * token_cache)); then
        warn "memory check: the fill sent only $fill requests, so the token" \
            "caches of $token_cache entries may not be full"
    fi
    rss_full=$(children_rss_kib "$pid")

    # Sample the children's RSS every 10 s during the long run.
    (
        while sleep 10; do
            printf '%s %s\n' "$(date +%s)" "$(children_rss_kib "$pid")"
        done
    ) >"$samples" &
    SAMPLER_PID=$!
    run_wrk "$memory_seconds" "$WORK_DIR/wrk/memory-long.txt" \
        "rotate Teleport-Jwt-Assertion $mixed $memory_requests"
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    rss_end=$(children_rss_kib "$pid")
    read -r requests _ non2xx socket_errors \
        <<<"$(parse_wrk "$WORK_DIR/wrk/memory-long.txt")"
    if ((non2xx > 0)); then
        warn "memory check: $non2xx of $requests responses were not 200;" \
            "see $dir/error_log"
        CHECK_FAILURES=$((CHECK_FAILURES + 1))
    fi
    if ((socket_errors > 0)); then
        local detail
        detail=$(socket_error_line "$WORK_DIR/wrk/memory-long.txt")
        warn "memory check: wrk counted $socket_errors socket errors" \
            "($detail)$(kept_note)"
        MEMORY_LINES+=("wrk socket errors during the long run: $detail")
    fi
    stop_server "$dir"

    local long_seconds
    # wrk prints the time as "12.03s," or "4.00m,".
    long_seconds=$(awk '/ requests in / { sub(/,$/, "", $4); print $4 }' \
        "$WORK_DIR/wrk/memory-long.txt")
    MEMORY_LINES+=(
        "JWKS: 20 keys (10 RSA-2048, 10 P-256), each listed with its kid and with kid \"\""
        "TeleportTokenCache $token_cache per child, 2 children; $((2 * token_count)) distinct tokens (RS256 and ES256 alternating)"
        "VmRSS summed over the children, KiB:"
        "  $(printf '%-50s %8s' 'after start, no request yet' "$rss_start")"
        "  $(printf '%-50s %8s' 'after the first request (keys loaded)' "$rss_keys")"
        "  $(printf '%-50s %8s' "token caches full ($fill requests)" "$rss_full")"
        "  $(printf '%-50s %8s' "after the long run ($requests requests in $long_seconds)" "$rss_end")"
        "  $(printf '%-50s %+8d' 'change during the long run' "$((rss_end - rss_full))")"
        "samples every 10 s during the long run: $(awk '{ printf "%s ", $2 }' "$samples")"
    )
}

# openssl speed

SPEED_LINES=()

run_openssl_speed() {
    local output=$WORK_DIR/openssl-speed.txt
    check_interference "openssl speed"
    log "running openssl speed -seconds 3 rsa2048 ecdsap256 (about 12 s)"
    openssl speed -seconds 3 rsa2048 ecdsap256 >"$output" 2>/dev/null \
        || die "openssl speed failed; run it by hand to see why"
    SPEED_LINES+=("$(openssl version)")
    SPEED_LINES+=("$(awk '/^rsa 2048 bits/ {
            printf "RSA-2048: %s verify/s (%s sign/s)", $NF, $(NF - 1) }' \
        "$output")")
    SPEED_LINES+=("$(awk '/ecdsa \(nistp256\)/ {
            printf "ECDSA P-256: %s verify/s (%s sign/s)", $NF, $(NF - 1) }' \
        "$output")")
}

# Report

# Print field $2 of the measurements of case $1, or nothing when the case
# has none. Fields: 1 requests/s, 2 httpd CPU us per request, 3 busy %,
# 4 downloads in the run, 5 downloads since the server started,
# 6 unexpected responses, 7 socket errors, 8 wrk CPU us per request,
# 9 CPU % of other processes.
field() {
    local values
    read -r -a values <<<"${RESULTS_BY_ID[$1]:-}"
    printf '%s\n' "${values[$(($2 - 1))]:-}"
}

# Print the mean of field $1 over the no-auth runs (at the start, in the
# middle and at the end), the baseline of every ratio.
baseline() {
    local id values=()
    for id in noauth noauth-mid noauth-end; do
        if [[ -n ${RESULTS_BY_ID[$id]:-} ]]; then
            values+=("$(field "$id" "$1")")
        fi
    done
    if ((${#values[@]} > 0)); then
        printf '%s\n' "${values[@]}" \
            | awk '{ sum += $1; n++ } END { printf "%.1f\n", sum / n }'
    fi
}

# Print the ratio of case $1's requests/s to the baseline, or "-".
ratio_of() {
    local rate base
    rate=$(field "$1" 1)
    base=$(baseline 1)
    if [[ -z $rate || -z $base ]]; then
        printf '%s\n' -
        return
    fi
    awk -v a="$rate" -v b="$base" 'BEGIN { printf "%.2f\n", a / b }'
}

# Print "met" or "not met" for condition $1 (an awk expression).
verdict() {
    awk "BEGIN { print ($1) ? \"met\" : \"not met\" }"
}

print_targets() {
    local id minimum ratio
    printf '\nTargets (from this run; ratio = req/s over the no-auth mean):\n'
    for id in rs256-one es256-one rs256-distinct es256-distinct; do
        [[ -n ${RESULTS_BY_ID[$id]:-} ]] || continue
        case $id in
            *-one) minimum=0.95 ;;
            rs256-distinct) minimum=0.65 ;;
            es256-distinct) minimum=0.38 ;;
        esac
        ratio=$(ratio_of "$id")
        printf '  %-38s ratio %s, target >= %s: %s\n' "${CASE_LABELS[$id]}" \
            "$ratio" "$minimum" "$(verdict "$ratio >= $minimum")"
    done
    local pair with without
    for pair in "rs256-one rs256-nokid-one" \
        "rs256-distinct rs256-nokid-distinct"; do
        read -r with without <<<"$pair"
        [[ -n ${RESULTS_BY_ID[$with]:-} && -n ${RESULTS_BY_ID[$without]:-} ]] \
            || continue
        printf '  %-38s %s vs %s req/s with kid, target within 10%%: %s;\n' \
            "${CASE_LABELS[$without]}" "$(field "$without" 1)" \
            "$(field "$with" 1)" \
            "$(verdict "$(field "$without" 1) >= 0.9 * $(field "$with" 1)")"
        printf '  %-38s %s downloads in the run, target 0: %s\n' "" \
            "$(field "$without" 4)" "$(verdict "$(field "$without" 4) == 0")"
    done
    if [[ -n ${RESULTS_BY_ID[random-kid]:-} ]]; then
        # The startup fetch, then at most one forced refresh (for a kid the
        # keys lack) per 60 s over the case's lifetime: the checks, about
        # 5 s, the warm-up and the run.
        local forced=$(((duration + warmup + 5) / 60 + 1))
        ratio=$(ratio_of random-kid)
        printf '  %-38s ratio %s, target >= 0.50: %s;\n' \
            "${CASE_LABELS[random-kid]}" "$ratio" \
            "$(verdict "$ratio >= 0.50")"
        printf '  %-38s %s downloads since start, target <= 1 at startup + %s forced: %s\n' \
            "" "$(field random-kid 5)" "$forced" \
            "$(verdict "$(field random-kid 5) <= 1 + $forced")"
    fi
}

print_table() {
    local id base_cpu base_total rate cpu client
    base_cpu=$(baseline 2)
    base_total=$(awk -v a="$base_cpu" -v b="$(baseline 8)" \
        'BEGIN { print a + b }')
    printf '\n%-40s %8s %5s %6s %6s %5s %5s %5s %7s %5s %4s\n' case 'req/s' \
        ratio httpd '+httpd' wrk CPU other JWKS wrong err
    printf '%-40s %8s %5s %6s %6s %5s %5s %5s %7s %5s %4s\n' '' '' '' \
        'us/req' 'us/req' us/r ratio '%' run/all stat ''
    for id in "${CASE_IDS[@]}"; do
        if [[ -z ${RESULTS_BY_ID[$id]:-} ]]; then
            printf '%-40s %8s\n' "${CASE_LABELS[$id]}" 'checks failed: not run'
            continue
        fi
        rate=$(field "$id" 1)
        cpu=$(field "$id" 2)
        client=$(field "$id" 8)
        printf '%-40s %8.0f %5s %6s %6s %5s %5s %5s %7s %5s %4s\n' \
            "${CASE_LABELS[$id]}" "$rate" "$(ratio_of "$id")" "$cpu" \
            "$(awk -v a="$cpu" -v b="${base_cpu:-0}" \
                'BEGIN { printf "%+.1f", a - b }')" \
            "$client" \
            "$(awk -v a="${base_total:-0}" -v b="$cpu" -v c="$client" \
                'BEGIN { printf "%.2f", a / (b + c) }')" \
            "$(field "$id" 9)" "$(field "$id" 4)/$(field "$id" 5)" \
            "$(field "$id" 6)" "$(field "$id" 7)"
    done
    cat <<EOF

req/s: wrk's Requests/sec. ratio: req/s over the mean of the three no-auth
runs (first, middle and last case). httpd us/req: utime+stime of all httpd
processes of the case (from /proc) during the run, per request; +httpd: the
same minus the no-auth mean. wrk us/r: wrk's CPU time per request. CPU
ratio: (httpd + wrk) CPU per request of no auth over that of the case, what
the ratio would be on 2 otherwise idle cores that httpd and wrk saturate.
other %: CPU time of every other process during the run, in % of both
cores (other work on the machine disturbs req/s). JWKS run/all: downloads
of the JWKS during the measured run / since the case's server started
(startup, checks and warm-up included). wrong stat: responses of another
status class than the case expects (200; 401 for unknown kids). err: wrk's
socket errors (connect, read, write, timeout).
EOF
}

print_report() {
    printf '\nmod_auth_teleport benchmark, %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'Script: bench/run.sh%s\n' "$COMMAND_LINE"
    printf 'Module: %s, built from %s\n' "$MODULE_FILE" "$SOURCE_VERSION"
    printf 'Machine: %s cores, %s, %s MiB memory; %s; %s\n' "$(nproc)" \
        "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
        "$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)" \
        "$("$HTTPD" -v | awk -F': ' '/version/ { print $2 }')" \
        "$(wrk --version 2>&1 | awk 'NR == 1 { print $1, $2 }')"
    printf 'Load: wrk -t%s -c%s -d%ss after a %ss warm-up, keep-alive, GET %s (%s bytes)\n' \
        "$WRK_THREADS" "$WRK_CONNECTIONS" "$duration" "$warmup" "$STATIC_PATH" \
        "$(wc -c <"$WORK_DIR/htdocs$STATIC_PATH")"
    printf 'Server: event MPM, 2 children x 32 threads, no access log, TeleportTokenCache %s\n' \
        "$token_cache"
    printf 'Load average at start: %s; at end: %s\n' "$LOAD_AT_START" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"

    if [[ -n $perf_dir ]]; then
        printf 'Profiled with perf record (--perf %s): httpd ran slower than without\n' \
            "$perf_dir"
    fi
    if [[ -n $INTERFERENCE ]]; then
        printf 'Interference: %s\n' "$INTERFERENCE"
    else
        printf 'Interference: no test suite (t/TEST) process seen\n'
    fi

    if ((${#CASE_IDS[@]} > 0)); then
        print_table
        print_targets
    fi

    if ((${#SPEED_LINES[@]} > 0)); then
        printf '\nopenssl speed -seconds 3 rsa2048 ecdsap256 (one core):\n'
        printf '  %s\n' "${SPEED_LINES[@]}"
    fi
    if ((${#MEMORY_LINES[@]} > 0)); then
        printf '\nMemory check:\n'
        printf '  %s\n' "${MEMORY_LINES[@]}"
    fi
    if ((CHECK_FAILURES > 0)); then
        printf '\n%s check(s) failed; see the warnings above.\n' \
            "$CHECK_FAILURES"
    fi
}

# Run every throughput case, with no auth first, in the middle and last.
run_all_cases() {
    local t=Teleport-Jwt-Assertion a=Authorization
    local n=$token_count
    log "running each case for $duration s after a $warmup s warm-up"
    run_case noauth "no auth" noauth "" "fixed $t $TOKENS/rs256-one.txt" 200

    run_case rs256-one "ours RS256, one token" teleport "" \
        "fixed $t $TOKENS/rs256-one.txt" 200
    run_case es256-one "ours ES256, one token" teleport "" \
        "fixed $t $TOKENS/es256-one.txt" 200
    run_case rs256-distinct "ours RS256, $n distinct tokens" teleport "" \
        "rotate $t $TOKENS/rs256-distinct.txt" 200
    run_case es256-distinct "ours ES256, $n distinct tokens" teleport "" \
        "rotate $t $TOKENS/es256-distinct.txt" 200
    run_case rs256-nokid-one "ours RS256 without kid, one token" teleport \
        "" "fixed $t $TOKENS/rs256-nokid-one.txt" 200
    run_case rs256-nokid-distinct "ours RS256 without kid, $n distinct" \
        teleport "" "rotate $t $TOKENS/rs256-nokid-distinct.txt" 200

    run_case random-kid "ours random unknown kid, MinRefresh 60" teleport \
        "" "random $TOKENS/rs256-one.txt" 401
    # The same load with a 2 s limit: the downloads it counts show that the
    # counter and the rate limit work, so a 0 above means something.
    run_case random-kid-2 "ours random unknown kid, MinRefresh 2" teleport \
        "    TeleportJWKSMinRefresh 2" "random $TOKENS/rs256-one.txt" 401

    # No auth in the middle too: the baseline is the mean of three runs
    # spread over the invocation, not of its two ends only.
    run_case noauth-mid "no auth, again in the middle" noauth "" \
        "fixed $t $TOKENS/rs256-one.txt" 200

    if ((run_peer)); then
        run_case oidc-rs256-one "mod_auth_openidc RS256, one token" \
            openidc "" "fixed $a $TOKENS/rs256-one.txt" 200
        run_case oidc-es256-one "mod_auth_openidc ES256, one token" \
            openidc "" "fixed $a $TOKENS/es256-one.txt" 200
        run_case oidc-rs256-distinct "mod_auth_openidc RS256, $n distinct" \
            openidc "" "rotate $a $TOKENS/rs256-distinct.txt" 200
        run_case oidc-es256-distinct "mod_auth_openidc ES256, $n distinct" \
            openidc "" "rotate $a $TOKENS/es256-distinct.txt" 200
    fi

    # No auth again, so that drift over the run (other load on the
    # machine) shows; ratios use the mean of both.
    run_case noauth-end "no auth, again at the end" noauth "" \
        "fixed $t $TOKENS/rs256-one.txt" 200
}

main() {
    COMMAND_LINE=$(printf ' %q' "$@")
    parse_args "$@"
    readonly APP_PORT=$port_base
    readonly JWKS_PORT=$((port_base + 1))
    readonly LARGE_JWKS_PORT=$((port_base + 2))
    readonly APP_URL=http://127.0.0.1:$APP_PORT$STATIC_PATH
    # The application's uri as Teleport would put it in "aud".
    readonly AUDIENCE=http://127.0.0.1:$APP_PORT
    CLOCK_TICKS=$(getconf CLK_TCK)
    LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

    local port
    for port in "$APP_PORT" "$JWKS_PORT" "$LARGE_JWKS_PORT"; do
        if port_in_use "$port"; then
            die "127.0.0.1:$port is already in use; stop that program or" \
                "pick other ports with --port-base"
        fi
    done

    install_packages
    if ((run_peer)) && [[ ! -f $OPENIDC_MODULE ]]; then
        die "$OPENIDC_MODULE is missing although" \
            "libapache2-mod-auth-openidc is installed; reinstall it or pass" \
            "--no-peer"
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    make_work_dir
    build_module
    SOURCE_VERSION=$(git -C "$REPO_ROOT" describe --always --dirty \
        2>/dev/null) || SOURCE_VERSION="an unknown commit (no git)"
    if [[ $SOURCE_VERSION == *-dirty ]]; then
        SOURCE_VERSION+=" (uncommitted changes in the work tree)"
    fi
    make_pki
    mint_tokens

    if ((run_speed)); then
        run_openssl_speed
    fi

    JWKS_SERVER=$WORK_DIR/servers/jwks
    mkdir -p -- "$JWKS_SERVER"
    write_jwks_conf "$JWKS_SERVER" >"$JWKS_SERVER/httpd.conf"
    start_server "$JWKS_SERVER" --cacert "$WORK_DIR/pki/ca.pem" \
        "https://127.0.0.1:$JWKS_PORT/.well-known/jwks.json"

    if ((run_cases)); then
        run_all_cases
    fi

    if ((run_memory)); then
        log "memory check: filling the token cache, then a long run of at" \
            "most $memory_requests requests or $memory_seconds s"
        memory_check
    fi

    if [[ -n $report_file ]]; then
        print_report | tee -- "$report_file"
    else
        print_report
    fi
    ((CHECK_FAILURES == 0))
}

# "exit" on the same line: bash reads a script while it runs it, so this
# keeps an edit of the file during a run from being executed afterwards.
{ main "$@"; exit; }
