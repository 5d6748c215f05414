#!/usr/bin/env bash
# Run a local demo of mod_auth_teleport on Debian 12: one httpd, listening
# only on 127.0.0.1, that plays three parts:
#   127.0.0.1:3080  a Teleport proxy stand-in serving /.well-known/jwks.json
#                   over TLS, with a CA made for the demo
#   127.0.0.1:8080  the protected application: AuthType Teleport, then a
#                   reverse proxy to the backend with X-Remote-User set
#   127.0.0.1:8081  the backend: a CGI program that prints the request
#                   headers it received
#
# Usage: demo/run.sh [start|stop|status|clean]   (default: start)
#
# start installs the packages (scripts/install-deps.sh --demo), builds the
# module, (re)starts the demo httpd and sends the requests it prints.
set -Eeuo pipefail
umask 022

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly DEFAULT_DEMO_DIR=/tmp/mod_auth_teleport-demo
readonly DEMO_DIR=${MOD_AUTH_TELEPORT_DEMO_DIR:-$DEFAULT_DEMO_DIR}
# A file with this name marks a directory that run.sh created, so that
# start never writes into, and clean never removes, any other directory.
readonly MARKER_FILE=.mod_auth_teleport-demo

readonly HTTPD=/usr/sbin/apache2
readonly MODULES_DIR=/usr/lib/apache2/modules
readonly MODULE_FILE=$REPO_ROOT/.libs/mod_auth_teleport.so

readonly PROXY_PORT=3080
readonly APP_PORT=8080
readonly BACKEND_PORT=8081
readonly AUDIENCE=http://localhost:8081
readonly ISSUER=demo.teleport.example

readonly CONF_FILE=$DEMO_DIR/conf/httpd.conf
readonly PID_FILE=$DEMO_DIR/run/httpd.pid
readonly ERROR_LOG=$DEMO_DIR/logs/error_log
readonly ACCESS_LOG=$DEMO_DIR/logs/access_log
readonly BUILD_LOG=$DEMO_DIR/logs/build.log
readonly CA_FILE=$DEMO_DIR/pki/ca.pem
readonly SIGNING_KEY=$DEMO_DIR/jwt/signing-key.pem
readonly JWKS_FILE=$DEMO_DIR/proxy-htdocs/.well-known/jwks.json
readonly BACKEND_CGI=$DEMO_DIR/cgi-bin/backend.cgi

# Seconds to wait for httpd to respond after a start, and to exit after a stop.
readonly START_TIMEOUT=15
readonly STOP_TIMEOUT=15

log() {
    printf 'demo: %s\n' "$*"
}

die() {
    printf 'demo: error: %s\n' "$*" >&2
    exit 1
}

trap 'die "command failed (exit status $?) at line $LINENO: $BASH_COMMAND"' ERR

usage() {
    cat <<EOF
Usage: demo/run.sh [start|stop|status|clean]

  start   install packages, build the module, start (or restart) the demo
          httpd on 127.0.0.1 ports $PROXY_PORT, $APP_PORT and $BACKEND_PORT, and try it
  stop    stop the demo httpd started by this script
  status  report whether the demo httpd is running
  clean   stop the demo httpd and remove its directory

The demo's files, logs and keys live in $DEMO_DIR
(set MOD_AUTH_TELEPORT_DEMO_DIR to an absolute path to use another).
EOF
}

# Print the pid of the running demo httpd, or fail when there is none. The
# pid must belong to an apache2 process started with this demo's config
# file, so a stale pid file never leads to signalling another process.
running_pid() {
    local pid command_line
    [[ -f $PID_FILE ]] || return 1
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    command_line=$(tr '\0' ' ' <"/proc/$pid/cmdline") || return 1
    [[ $command_line == "$HTTPD "*"-f $CONF_FILE "* ]] || return 1
    printf '%s\n' "$pid"
}

# Stop the demo httpd. With the argument "restart", say nothing when none
# is running.
stop_httpd() {
    local mode=${1:-stop} pid waited=0
    if ! pid=$(running_pid); then
        if [[ $mode != restart ]]; then
            log "the demo httpd is not running"
        fi
        return 0
    fi
    log "stopping the demo httpd (pid $pid)"
    kill -TERM "$pid"
    while [[ -e /proc/$pid ]]; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            die "httpd (pid $pid) did not exit within $STOP_TIMEOUT s;" \
                "see $ERROR_LOG"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "stopped"
}

show_status() {
    local pid
    if pid=$(running_pid); then
        log "the demo httpd is running (pid $pid, config $CONF_FILE)"
    else
        log "the demo httpd is not running"
    fi
}

clean_demo_dir() {
    stop_httpd
    if [[ ! -e $DEMO_DIR ]]; then
        log "$DEMO_DIR does not exist; nothing to remove"
        return 0
    fi
    [[ -f $DEMO_DIR/$MARKER_FILE && ! -L $DEMO_DIR ]] \
        || die "$DEMO_DIR was not created by demo/run.sh (no $MARKER_FILE);" \
               "not removing it"
    rm -rf -- "$DEMO_DIR"
    log "removed $DEMO_DIR"
}

# Create the demo directory, or check that an existing one is ours: it lives
# in a shared directory such as /tmp, so a directory or symbolic link that
# another user planted there must not be used.
prepare_demo_dir() {
    [[ $DEMO_DIR == /* ]] \
        || die "MOD_AUTH_TELEPORT_DEMO_DIR must be an absolute path, not" \
               "'$DEMO_DIR'"
    [[ ! -L $DEMO_DIR ]] \
        || die "$DEMO_DIR is a symbolic link; remove it or set" \
               "MOD_AUTH_TELEPORT_DEMO_DIR to another path"
    if [[ -e $DEMO_DIR ]]; then
        [[ -d $DEMO_DIR ]] || die "$DEMO_DIR exists and is not a directory"
        if [[ ! -f $DEMO_DIR/$MARKER_FILE ]] \
            && [[ -n $(ls -A -- "$DEMO_DIR") ]]; then
            die "$DEMO_DIR is not empty and was not created by demo/run.sh;" \
                "set MOD_AUTH_TELEPORT_DEMO_DIR to another path"
        fi
    else
        mkdir -m 0755 -- "$DEMO_DIR"
    fi
    local owner
    owner=$(stat -c %u -- "$DEMO_DIR")
    [[ $owner == "$EUID" ]] \
        || die "$DEMO_DIR belongs to uid $owner, not to you (uid $EUID);" \
               "remove it or set MOD_AUTH_TELEPORT_DEMO_DIR to another path"
    chmod 0755 -- "$DEMO_DIR"
    touch -- "$DEMO_DIR/$MARKER_FILE"

    local subdir
    for subdir in conf logs run pki jwt cgi-bin htdocs proxy-htdocs/.well-known; do
        mkdir -p -- "$DEMO_DIR/$subdir"
    done
}

install_packages() {
    log "checking packages (scripts/install-deps.sh --demo)"
    "$REPO_ROOT/scripts/install-deps.sh" --demo
}

# Run autogen.sh and configure unless they have run before, then make, all
# in the repository root and prefixed with the given command (may be empty).
# Every step is checked explicitly because set -e does not apply inside a
# function called as an if condition.
run_build() {
    cd "$REPO_ROOT" || return 1
    if [[ ! -x configure ]]; then
        "$@" ./autogen.sh || return 1
    fi
    if [[ ! -f Makefile ]]; then
        "$@" ./configure || return 1
    fi
    "$@" make
}

# Build in the repository as the user who owns it, so that "sudo
# demo/run.sh" leaves no root-owned files in a user's clone.
build_module() {
    local owner
    owner=$(stat -c %U -- "$REPO_ROOT")
    local as_owner=()
    if ((EUID == 0)) && [[ $owner != root ]]; then
        as_owner=(runuser -u "$owner" --)
    fi

    log "building the module as $owner (log: $BUILD_LOG)"
    if ! run_build "${as_owner[@]}" >"$BUILD_LOG" 2>&1; then
        tail -n 30 -- "$BUILD_LOG" >&2
        die "building the module failed; the full output is in $BUILD_LOG"
    fi
    [[ -f $MODULE_FILE ]] \
        || die "the build finished but $MODULE_FILE does not exist"
    log "built $MODULE_FILE"
}

# Return success when something accepts TCP connections on 127.0.0.1:port.
port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

check_ports_free() {
    local port
    for port in "$PROXY_PORT" "$APP_PORT" "$BACKEND_PORT"; do
        if port_in_use "$port"; then
            die "127.0.0.1:$port is already in use by another program;" \
                "stop it and run demo/run.sh again"
        fi
    done
}

# Write the demo CA and the proxy stand-in's certificate (SAN localhost and
# 127.0.0.1). They are made again on every start and are valid for 30 days.
make_tls_files() {
    local pki=$DEMO_DIR/pki
    log "creating the demo CA and the TLS certificate for 127.0.0.1:$PROXY_PORT"
    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$pki/ca-key.pem"
    openssl req -new -x509 -key "$pki/ca-key.pem" -out "$CA_FILE" -days 30 \
        -subj "/CN=mod_auth_teleport demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"

    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$pki/server-key.pem"
    openssl req -new -key "$pki/server-key.pem" -out "$pki/server.csr" \
        -subj "/CN=localhost"
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$pki/server.ext"
    openssl x509 -req -in "$pki/server.csr" -CA "$CA_FILE" \
        -CAkey "$pki/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
        -days 30 -extfile "$pki/server.ext" -out "$pki/server.pem" 2>/dev/null
    rm -f -- "$pki/server.csr" "$pki/server.ext"

    chmod 0600 -- "$pki/ca-key.pem" "$pki/server-key.pem"
    chmod 0644 -- "$CA_FILE" "$pki/server.pem"
}

# Create the token signing key on the first start and keep it afterwards,
# so tokens minted before a restart stay valid. Under sudo the key belongs
# to the invoking user, who can then run demo/mint-token without sudo.
make_signing_key() {
    if [[ ! -f $SIGNING_KEY ]]; then
        log "creating the RSA-2048 token signing key $SIGNING_KEY"
        openssl genpkey -quiet -algorithm RSA \
            -pkeyopt rsa_keygen_bits:2048 -out "$SIGNING_KEY.tmp"
        mv -f -- "$SIGNING_KEY.tmp" "$SIGNING_KEY"
    fi
    chmod 0600 -- "$SIGNING_KEY"
    if ((EUID == 0)) && [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] \
        && id -u -- "$SUDO_USER" >/dev/null 2>&1; then
        chown -- "$SUDO_USER" "$SIGNING_KEY"
    fi
}

write_jwks() {
    "$REPO_ROOT/demo/mint-token" --key "$SIGNING_KEY" --jwks >"$JWKS_FILE.tmp"
    chmod 0644 -- "$JWKS_FILE.tmp"
    mv -f -- "$JWKS_FILE.tmp" "$JWKS_FILE"
}

install_backend() {
    install -m 0755 -- "$REPO_ROOT/demo/backend.cgi" "$BACKEND_CGI"
}

# Print "user group" for httpd's children: www-data, else nobody.
child_user_and_group() {
    if id -u www-data >/dev/null 2>&1; then
        printf 'www-data www-data\n'
    elif getent group nogroup >/dev/null; then
        printf 'nobody nogroup\n'
    else
        printf 'nobody nobody\n'
    fi
}

# As root, httpd's children switch to an unprivileged user, which must be
# able to read the CA file and run the backend.
check_child_access() {
    local child_user=$1
    ((EUID == 0)) || return 0
    if ! runuser -u "$child_user" -- test -r "$CA_FILE" \
        || ! runuser -u "$child_user" -- test -x "$BACKEND_CGI"; then
        die "user $child_user, which httpd's children run as, cannot" \
            "read $CA_FILE or run $BACKEND_CGI; set" \
            "MOD_AUTH_TELEPORT_DEMO_DIR to a directory whose parents" \
            "everyone can search, such as $DEFAULT_DEMO_DIR"
    fi
}

write_httpd_conf() {
    local child_user=$1 child_group=$2
    local user_lines=""
    if ((EUID == 0)); then
        user_lines="User $child_user
Group $child_group"
    fi

    cat >"$CONF_FILE.tmp" <<EOF
# Generated by demo/run.sh; changes are lost on the next start.
ServerRoot "$DEMO_DIR"
ServerName localhost
PidFile "$PID_FILE"
DefaultRuntimeDir "$DEMO_DIR/run"
$user_lines

LoadModule mpm_event_module $MODULES_DIR/mod_mpm_event.so
LoadModule authn_core_module $MODULES_DIR/mod_authn_core.so
LoadModule authz_core_module $MODULES_DIR/mod_authz_core.so
LoadModule authz_user_module $MODULES_DIR/mod_authz_user.so
LoadModule mime_module $MODULES_DIR/mod_mime.so
LoadModule alias_module $MODULES_DIR/mod_alias.so
LoadModule headers_module $MODULES_DIR/mod_headers.so
LoadModule proxy_module $MODULES_DIR/mod_proxy.so
LoadModule proxy_http_module $MODULES_DIR/mod_proxy_http.so
LoadModule socache_shmcb_module $MODULES_DIR/mod_socache_shmcb.so
LoadModule ssl_module $MODULES_DIR/mod_ssl.so
LoadModule cgid_module $MODULES_DIR/mod_cgid.so
LoadModule auth_teleport_module $MODULE_FILE

# A small event MPM: one child process is enough for a demo.
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MinSpareThreads 4
MaxSpareThreads 32
MaxRequestWorkers 32

ErrorLog "$ERROR_LOG"
LogLevel warn auth_teleport:info
LogFormat "%{%Y-%m-%d %H:%M:%S}t %A:%{local}p \"%r\" %>s user=%u teleport-reason=%{teleport-reason}n" demo
CustomLog "$ACCESS_LOG" demo

TypesConfig /dev/null
AddType application/json .json
ScriptSock "$DEMO_DIR/run/cgid.sock"
SSLSessionCache "shmcb:$DEMO_DIR/run/ssl_scache(512000)"

DocumentRoot "$DEMO_DIR/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>

Listen 127.0.0.1:$PROXY_PORT https
Listen 127.0.0.1:$APP_PORT
Listen 127.0.0.1:$BACKEND_PORT

# The Teleport proxy stand-in: the JWKS over TLS, as a proxy serves it.
<VirtualHost 127.0.0.1:$PROXY_PORT>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile "$DEMO_DIR/pki/server.pem"
    SSLCertificateKeyFile "$DEMO_DIR/pki/server-key.pem"
    DocumentRoot "$DEMO_DIR/proxy-htdocs"
    <Directory "$DEMO_DIR/proxy-htdocs">
        Require all granted
    </Directory>
</VirtualHost>

# The protected application.
<VirtualHost 127.0.0.1:$APP_PORT>
    ServerName localhost
    <Location "/">
        AuthType Teleport
        AuthName "demo"
        TeleportProxyURL https://127.0.0.1:$PROXY_PORT
        TeleportCAFile "$CA_FILE"
        # The stand-in proxy is this same httpd, which cannot serve the
        # parent's startup fetch before its children run: keep that wait
        # short. The first request fetches the keys.
        TeleportFetchTimeout 1
        TeleportAudience $AUDIENCE
        TeleportIssuer $ISSUER
        Require valid-user
        # "%{REMOTE_USER}e" would send "(null)": mod_headers reads %{...}e
        # from the subprocess environment, and a proxied request has no
        # REMOTE_USER there. The expression reads r->user instead.
        RequestHeader set X-Remote-User "expr=%{REMOTE_USER}"
        ProxyPass http://127.0.0.1:$BACKEND_PORT/
    </Location>
</VirtualHost>

# The backend: every path runs the CGI program.
<VirtualHost 127.0.0.1:$BACKEND_PORT>
    ServerName localhost
    ScriptAliasMatch "^/" "$BACKEND_CGI"
    <Directory "$DEMO_DIR/cgi-bin">
        Require all granted
    </Directory>
</VirtualHost>
EOF
    mv -f -- "$CONF_FILE.tmp" "$CONF_FILE"
}

check_httpd_conf() {
    local output
    if ! output=$("$HTTPD" -d "$DEMO_DIR" -f "$CONF_FILE" -t 2>&1); then
        printf '%s\n' "$output" >&2
        die "httpd rejected the generated configuration $CONF_FILE"
    fi
}

start_httpd() {
    local pid waited=0
    log "starting httpd: $HTTPD -d $DEMO_DIR -f $CONF_FILE -k start"
    "$HTTPD" -d "$DEMO_DIR" -f "$CONF_FILE" -k start

    until curl -sf -o /dev/null --max-time 2 \
            "http://127.0.0.1:$BACKEND_PORT/" \
        && curl -sf -o /dev/null --max-time 2 --cacert "$CA_FILE" \
            "https://127.0.0.1:$PROXY_PORT/.well-known/jwks.json"; do
        if ((waited >= START_TIMEOUT * 10)); then
            tail -n 20 -- "$ERROR_LOG" >&2 || true
            die "httpd did not respond on 127.0.0.1 within $START_TIMEOUT s;" \
                "see $ERROR_LOG"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    pid=$(running_pid) || die "httpd responds but $PID_FILE names no demo httpd"
    log "httpd is running (pid $pid)"
}

# Print the command line that runs demo/NAME as the caller would type it:
# relative to the repository root when the caller is there, and with
# MOD_AUTH_TELEPORT_DEMO_DIR when it is not the default.
demo_command() {
    local command
    if [[ $PWD == "$REPO_ROOT" ]]; then
        command=./demo/$1
    else
        command=$REPO_ROOT/demo/$1
    fi
    if [[ $DEMO_DIR != "$DEFAULT_DEMO_DIR" ]]; then
        command="MOD_AUTH_TELEPORT_DEMO_DIR=$DEMO_DIR $command"
    fi
    printf '%s\n' "$command"
}

failed_checks=0

# Print a command, run it, and compare the HTTP status that its output
# reports ("HTTP status NNN ...") with the expected one. When a fourth
# argument is given, the output must also contain it.
try_request() {
    local title=$1 expected=$2 command=$3 expected_text=${4:-}
    local output status
    printf '\n%s\n  $ %s\n' "$title" "$command"
    output=$(bash -c "$command" 2>&1) || true
    printf '%s\n' "$output" | sed 's/^/  /'
    status=$(printf '%s\n' "$output" | sed -n 's/^HTTP status \([0-9]*\).*/\1/p' \
        | tail -n 1)
    if [[ $status == "$expected" ]]; then
        printf '  -> %s as expected\n' "$status"
    else
        printf '  -> UNEXPECTED: expected %s, got %s\n' "$expected" \
            "${status:-no status}"
        failed_checks=$((failed_checks + 1))
    fi
    if [[ -n $expected_text && $output != *"$expected_text"* ]]; then
        printf '  -> UNEXPECTED: the output lacks "%s"\n' "$expected_text"
        failed_checks=$((failed_checks + 1))
    fi
}

try_demo() {
    local mint stop url=http://127.0.0.1:$APP_PORT/ error_log_lines
    mint=$(demo_command mint-token)
    stop="$(demo_command run.sh) stop"
    if ((EUID == 0)) && [[ -n ${SUDO_USER:-} ]]; then
        stop="sudo $stop"
    fi
    error_log_lines=$(wc -l <"$ERROR_LOG")
    local status_format="-w 'HTTP status %{http_code}\n'"
    local challenge_format="-w 'HTTP status %{http_code}, WWW-Authenticate: %header{www-authenticate}\n'"

    cat <<EOF

mod_auth_teleport demo
  Teleport proxy stand-in  https://127.0.0.1:$PROXY_PORT/.well-known/jwks.json (CA: $CA_FILE)
  protected application    http://127.0.0.1:$APP_PORT/  (AuthType Teleport, audience $AUDIENCE, issuer $ISSUER)
  backend                  http://127.0.0.1:$BACKEND_PORT/  (prints the request headers it receives)

Try these commands (each was just run, and its output follows it):
EOF
    try_request "1. A freshly minted token for alice is accepted, and the backend receives X-Remote-User: alice" \
        200 "curl -sS $status_format -H \"Teleport-Jwt-Assertion: \$($mint --user alice)\" $url" \
        "X-Remote-User: alice"
    try_request "2. A request without a token is rejected" \
        401 "curl -sS -o /dev/null $challenge_format $url"
    try_request "3. A tampered token (payload changed to user admin, signature kept) is rejected" \
        401 "curl -sS -o /dev/null $challenge_format -H \"Teleport-Jwt-Assertion: \$($mint --tamper)\" $url"

    printf '\nError log: %s\nIts rejection lines from these requests (LogLevel auth_teleport:info):\n' \
        "$ERROR_LOG"
    tail -n "+$((error_log_lines + 1))" -- "$ERROR_LOG" | grep -F 'TLP030' \
        | sed 's/^/  /' || true
    printf 'Access log: %s\n' "$ACCESS_LOG"
    tail -n 3 -- "$ACCESS_LOG" | sed 's/^/  /'

    cat <<EOF

More variations: $mint --help
  (for example --expires-in -120 for an expired token, --audience http://other:8080,
  --kid unknown, --no-kid, --roles '')
Stop the demo: $stop
EOF
}

start_demo() {
    install_packages
    prepare_demo_dir
    build_module
    stop_httpd restart
    check_ports_free

    local child_user child_group
    read -r child_user child_group < <(child_user_and_group)
    make_tls_files
    make_signing_key
    write_jwks
    install_backend
    check_child_access "$child_user"
    write_httpd_conf "$child_user" "$child_group"
    check_httpd_conf
    start_httpd
    try_demo

    if ((failed_checks > 0)); then
        die "$failed_checks of the checks above failed; httpd is still" \
            "running for inspection (see $ERROR_LOG)"
    fi
}

main() {
    local action=${1:-start}
    if (($# > 1)); then
        usage >&2
        die "expected at most one argument, got $#"
    fi
    case $action in
        start) start_demo ;;
        stop) stop_httpd ;;
        status) show_status ;;
        clean) clean_demo_dir ;;
        -h | --help | help) usage ;;
        *) usage >&2; die "unknown command '$action'" ;;
    esac
}

main "$@"
