#!/usr/bin/env bash
# Package test: build libapache2-mod-auth-teleport from this working tree with
# dpkg-buildpackage, install it, and use it as an administrator would on
# Debian 12. It runs a2enmod, and apache2ctl -M and -t with good and bad
# configurations. It starts an httpd on 127.0.0.1 and sends it requests with
# and without valid tokens. Then it purges the package and restores what it
# changed.
#
# Usage: tests/package/run.sh      (as root, on Debian 12)
#
# Missing build dependencies are installed with apt-get and stay installed.
# The apache2 packages (a2enmod and apache2ctl come from apache2) that the
# test installs are purged at the end. While packages are installed or
# removed, a policy-rc.d that exits 101 keeps maintainer scripts from
# starting a server: apache2's own would listen on port 80. An existing
# policy-rc.d that already denies that is left as it is. The only server the
# test starts listens on 127.0.0.1 and is stopped by its process id.
#
# The build runs in a copy, under /tmp, of the files git lists (tracked and
# untracked, not ignored), so the working tree stays as it is. The last line
# is "N passed, N failed", and the exit status is non-zero when a check
# fails.
set -uo pipefail

readonly PACKAGE=libapache2-mod-auth-teleport
readonly MODULE_SO=/usr/lib/apache2/modules/mod_auth_teleport.so
readonly MODS_AVAILABLE=/etc/apache2/mods-available
readonly MODS_ENABLED=/etc/apache2/mods-enabled
readonly POLICY_RC_D=/usr/sbin/policy-rc.d

# What dpkg-buildpackage and debian/control need, and the tools this script
# runs (openssl makes test keys and signs tokens, perl converts a key's
# modulus from hex, curl sends requests, ss lists listening sockets, nm reads
# the module's symbols).
readonly BUILD_PACKAGES=(
    dpkg-dev debhelper build-essential apache2-dev libssl-dev libjansson-dev
    libcurl4-openssl-dev pkg-config autoconf automake libtool
)
readonly TOOL_PACKAGES=(openssl curl iproute2 binutils perl)
# a2enmod, a2dismod and apache2ctl are in apache2, which needs the others.
readonly RUNTIME_PACKAGES=(apache2-bin apache2-data apache2-utils apache2)
# Paths that installing and purging the apache2 packages may change; the
# test checks that they are as before when it ends.
readonly STATE_PATHS=(
    /etc/apache2 /var/lib/apache2 /var/www /var/log/apache2
    /var/cache/apache2 /run/apache2 /run/lock/apache2
)

# Time limits in seconds for the slow steps.
readonly APT_TIMEOUT=600
readonly BUILD_TIMEOUT=900
readonly CTL_TIMEOUT=30

# Requests go to 127.0.0.1 only, never through a proxy from the environment.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export DEBIAN_FRONTEND=noninteractive LANG=C LC_ALL=C

top=$(cd "$(dirname "$0")/../.." && pwd)
passed=0
failed=0
scratch=""
logs=""
httpd_pid=""
port=""
request_path=""
policy_written=0
policy_backup=""
package_installed_by_test=0
restored=0
summary_printed=0
apache2_was_installed=0
apt_updated=0
newly_installed=()
enabled_before=()

pass() {
    passed=$((passed + 1))
    printf 'ok - %s\n' "$1"
}

fail() {
    failed=$((failed + 1))
    printf 'not ok - %s\n' "$1"
    shift
    local detail line
    for detail in "$@"; do
        while IFS= read -r line; do
            printf '#   %s\n' "$line"
        done <<<"$detail"
    done
}

note() {
    printf '# %s\n' "$*"
}

# Record a check: pass when the command succeeds, otherwise fail with the
# detail lines that follow "--".
check() {
    local name=$1
    shift
    local command=() details=()
    while (($# > 0)) && [[ $1 != -- ]]; do
        command+=("$1")
        shift
    done
    (($# > 0)) && shift
    details=("$@")
    if "${command[@]}"; then
        pass "$name"
    else
        fail "$name" "${details[@]}"
    fi
}

# Print the last lines (20 unless given) of a log file, as the detail of a
# failure.
log_tail() {
    tail -n "${2:-20}" "$1" 2>/dev/null
}

is_installed() {
    local status
    status=$(dpkg-query --show --showformat='${db:Status-Abbrev}' "$1" \
        2>/dev/null) || return 1
    [[ $status == ii* ]]
}

installed_packages() {
    dpkg-query --show --showformat='${db:Status-Abbrev} ${Package}\n' \
        | awk '$1 == "ii" { print $2 }' | sort -u
}

# Install the named packages that are missing. Output goes to $logs/apt.log.
apt_install() {
    local missing=() package
    for package in "$@"; do
        is_installed "$package" || missing+=("$package")
    done
    ((${#missing[@]} > 0)) || return 0
    note "installing ${missing[*]}"
    if ((apt_updated == 0)); then
        timeout "$APT_TIMEOUT" apt-get -q -o DPkg::Lock::Timeout=120 update \
            >>"$logs/apt.log" 2>&1 || return 1
        apt_updated=1
    fi
    timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >>"$logs/apt.log" 2>&1
}

# Exit status 101 of policy-rc.d means "action not allowed" to invoke-rc.d and
# deb-systemd-invoke, so no maintainer script starts a service.
deny_service_starts() {
    local status=0
    ((policy_written == 0)) || return 0
    if [[ -x $POLICY_RC_D ]]; then
        "$POLICY_RC_D" apache2 start >/dev/null 2>&1 || status=$?
        if ((status == 101)); then
            return 0
        fi
        policy_backup="$scratch/policy-rc.d.orig"
        cp -a "$POLICY_RC_D" "$policy_backup" || return 1
    fi
    printf '#!/bin/sh\n# Written by mod_auth_teleport tests/package/run.sh,\n# removed when it ends.\nexit 101\n' \
        >"$POLICY_RC_D" || return 1
    chmod 755 "$POLICY_RC_D"
    policy_written=1
}

allow_service_starts() {
    ((policy_written == 1)) || return 0
    if [[ -n $policy_backup ]]; then
        mv -f "$policy_backup" "$POLICY_RC_D"
    else
        rm -f "$POLICY_RC_D"
    fi
    policy_written=0
    policy_backup=""
}

# Print the listening TCP sockets on port 80, one line each.
port_80_listeners() {
    ss -Htln 'sport = :80' 2>/dev/null
}

# Print name, type, owner, mode and link target of everything below the
# paths in STATE_PATHS, and of files named after apache2 elsewhere in /etc
# (init scripts, rc links, logrotate, systemd units).
system_state() {
    local path
    for path in "${STATE_PATHS[@]}"; do
        [[ -e $path || -L $path ]] || continue
        find "$path" -printf '%p %y %u:%g %m %l\n'
    done
    find /etc -path /etc/apache2 -prune -o \
        \( -iname '*apache2*' -o -iname '*htcacheclean*' \) \
        -printf '%p %y %u:%g %m %l\n'
    if [[ -e $POLICY_RC_D ]]; then
        printf '%s %s\n' "$POLICY_RC_D" "$(sha256sum <"$POLICY_RC_D")"
    fi
}

is_running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $state && $state != Z* ]]
}

pick_port() {
    local candidate
    for candidate in $(shuf -i 20000-29999 -n 100); do
        if [[ -z $(ss -Htln "sport = :$candidate" 2>/dev/null) ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

base64url() {
    openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# mint HEADER_JSON PAYLOAD_JSON KEY: print an RS256-signed JWT.
mint() {
    local header payload signature
    header=$(printf '%s' "$1" | base64url)
    payload=$(printf '%s' "$2" | base64url)
    signature=$(printf '%s.%s' "$header" "$payload" \
        | openssl dgst -sha256 -sign "$3" -binary | base64url)
    printf '%s.%s.%s\n' "$header" "$payload" "$signature"
}

# jwks_for KEY KID: print a JWKS with the public half of KEY.
jwks_for() {
    local modulus n
    modulus=$(openssl rsa -in "$1" -noout -modulus | sed 's/^Modulus=//')
    n=$(perl -e 'print pack("H*", $ARGV[0])' "$modulus" | base64url)
    printf '{"keys":[{"kty":"RSA","kid":"%s","use":"sig","alg":"RS256","n":"%s","e":"AQAB"}]}\n' \
        "$2" "$n"
}

# new_confdir NAME [keep-sites]: copy /etc/apache2 to the scratch directory
# and print the copy's path. The copy's envvars point the pid file, locks
# and logs below the scratch directory, it listens on 127.0.0.1:$port only,
# and without "keep-sites" it has no site enabled.
new_confdir() {
    local dir="$scratch/httpd/$1"
    mkdir -p "$dir/run" "$dir/lock" "$dir/log"
    cp -a /etc/apache2 "$dir/apache2"
    cat >>"$dir/apache2/envvars" <<EOF
# Added by tests/package/run.sh: this copy writes only below $dir.
export APACHE_PID_FILE=$dir/run/apache2.pid
export APACHE_RUN_DIR=$dir/run
export APACHE_LOCK_DIR=$dir/lock
export APACHE_LOG_DIR=$dir/log
EOF
    printf 'Listen 127.0.0.1:%s\n' "$port" >"$dir/apache2/ports.conf"
    if [[ ${2:-} != keep-sites ]]; then
        rm -f "$dir/apache2/sites-enabled/"*
    fi
    printf '%s\n' "$dir/apache2"
}

# ctl CONFDIR ARGS...: apache2ctl on a configuration copy.
ctl() {
    local confdir=$1
    shift
    APACHE_CONFDIR=$confdir timeout "$CTL_TIMEOUT" apache2ctl "$@"
}

# site CONFDIR BODY: enable a site with BODY inside a virtual host on
# 127.0.0.1:$port.
site() {
    cat >"$1/sites-enabled/pkgtest.conf" <<EOF
<VirtualHost 127.0.0.1:$port>
    ServerName pkgtest.localhost
$2
</VirtualHost>
EOF
}

# config_rejected NAME CONFDIR EXPECTED BODY: apache2ctl -t fails on BODY and
# its output contains EXPECTED.
config_rejected() {
    local name=$1 confdir=$2 expected=$3 output status=0
    site "$confdir" "$4"
    output=$(ctl "$confdir" -t 2>&1) || status=$?
    if ((status != 0)) && grep -qF -- "$expected" <<<"$output"; then
        pass "$name"
    else
        fail "$name" "expected a failure naming '$expected'," \
            "got exit status $status and:" "$output"
    fi
}

# config_accepted NAME CONFDIR BODY: apache2ctl -t passes on BODY.
config_accepted() {
    local name=$1 confdir=$2 output status=0
    site "$confdir" "$3"
    output=$(ctl "$confdir" -t 2>&1) || status=$?
    if ((status == 0)) && grep -q 'Syntax OK' <<<"$output"; then
        pass "$name"
    else
        fail "$name" "exit status $status:" "$output"
    fi
}

# start_httpd CONFDIR: start httpd in the foreground mode in the background
# and wait until it responds on 127.0.0.1:$port.
start_httpd() {
    local confdir=$1
    (
        export APACHE_CONFDIR=$confdir
        set -a
        # shellcheck source=/dev/null
        . "$confdir/envvars"
        set +a
        exec /usr/sbin/apache2 -d "$confdir" -DFOREGROUND
    ) >"$logs/httpd.out" 2>&1 &
    httpd_pid=$!
    for _ in $(seq 50); do
        if curl -s -o /dev/null --noproxy '*' --max-time 1 \
            "http://127.0.0.1:$port/"; then
            return 0
        fi
        is_running "$httpd_pid" || return 1
        sleep 0.2
    done
    return 1
}

# Stop the httpd this script started: SIGTERM to its parent process, which
# stops its children; SIGKILL to the parent and the children it had, by
# process id, when it has not exited after 10 seconds.
stop_httpd() {
    local children pid
    [[ -n $httpd_pid ]] || return 0
    children=$(ps -o pid= --ppid "$httpd_pid" 2>/dev/null)
    if is_running "$httpd_pid"; then
        kill -TERM "$httpd_pid" 2>/dev/null
        for _ in $(seq 50); do
            is_running "$httpd_pid" || break
            sleep 0.2
        done
    fi
    for pid in "$httpd_pid" $children; do
        if is_running "$pid"; then
            note "process $pid did not stop on SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    wait "$httpd_pid" 2>/dev/null
    httpd_pid=""
}

# request CASE [CURL ARGS...]: send GET /?case=CASE to the test server and
# print the status code. The response headers go to $scratch/headers.
request() {
    local case_name=$1
    shift
    curl -s --noproxy '*' --max-time 10 -o "$scratch/body" \
        -D "$scratch/headers" -w '%{http_code}' "$@" \
        "http://127.0.0.1:$port${request_path:-/}?case=$case_name"
}

# access_line CASE: print the access log line of the request for CASE,
# waiting up to 2 seconds for httpd to write it.
access_line() {
    local line
    for _ in $(seq 10); do
        line=$(grep -F "?case=$1" "$access_log" 2>/dev/null | tail -n 1)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# token_case NAME EXPECTED_STATUS EXPECTED_LOG TOKEN: a request carrying
# TOKEN gets EXPECTED_STATUS, and its access log line ("user status reason
# query") is EXPECTED_LOG.
token_case() {
    local name=$1 expected_status=$2 expected_log=$3 token=$4 status line
    status=$(request "$name" -H "Teleport-Jwt-Assertion: $token")
    line=$(access_line "$name")
    if [[ $status == "$expected_status" \
        && $line == "$expected_log ?case=$name" ]]; then
        pass "token $name: $expected_status"
    else
        fail "token $name: $expected_status" \
            "status $status, access log line '$line'," \
            "expected '$expected_log ?case=$name'"
    fi
}

# Purge what the test installed, restore module states and policy-rc.d, and
# remove empty directories that the apache2 packages left behind.
restore_system() {
    local module output
    ((restored == 0)) || return 0
    restored=1
    stop_httpd

    deny_service_starts
    if ((package_installed_by_test)) && dpkg-query --show "$PACKAGE" \
        >/dev/null 2>&1; then
        output=$(timeout "$APT_TIMEOUT" dpkg --purge "$PACKAGE" 2>&1) \
            || printf '%s\n' "$output" >>"$logs/purge.log"
    fi
    if ((${#newly_installed[@]} > 0)); then
        note "purging the packages this test installed: ${newly_installed[*]}"
        timeout "$APT_TIMEOUT" dpkg --purge "${newly_installed[@]}" \
            >>"$logs/purge.log" 2>&1 \
            || note "dpkg --purge failed, see $logs/purge.log"
    fi
    allow_service_starts

    if ((apache2_was_installed)); then
        for module in authn_core authz_core socache_shmcb; do
            if [[ " ${enabled_before[*]} " != *" $module "* \
                && -L $MODS_ENABLED/$module.load ]]; then
                a2dismod -q "$module" >>"$logs/restore.log" 2>&1
            fi
        done
        if [[ -f $scratch/apache2-module-state.tar ]]; then
            rm -rf /var/lib/apache2/module
            tar -C /var/lib/apache2 -xf "$scratch/apache2-module-state.tar"
        fi
    fi

    # apache2's postrm, on purge, deletes all of /var/cache/apache2 and
    # /var/log/apache2, including directories of other packages (such as
    # libapache2-mod-auth-openidc's cache): put back what it deleted.
    if [[ -f $scratch/state.tar ]]; then
        tar -C / --skip-old-files -xpf "$scratch/state.tar" \
            >>"$logs/restore.log" 2>&1
    fi

    # dpkg keeps a package's directory while it contains files of no package
    # (/var/www/html held index.html until apache2's postrm removed it), and
    # apache2ctl configtest in the maintainer scripts makes /run/apache2.
    local path
    for path in /var/www/html /var/www /var/lib/apache2 /var/log/apache2 \
        /var/cache/apache2 /run/apache2/socks /run/apache2 \
        /run/lock/apache2; do
        if [[ -d $path ]] \
            && ! grep -q "^$path d " "$scratch/state.before"; then
            rmdir "$path" 2>/dev/null
        fi
    done
}

# On an early exit (a signal, or a step that cannot go on) restore the
# system and still end with the counts, the early exit counted as a failure.
on_exit() {
    local status=$?
    if [[ -n $scratch ]]; then
        restore_system
    fi
    if ((summary_printed == 0)); then
        fail "test ran to the end" "stopped early with exit status $status;" \
            "logs kept in $scratch"
        echo "$passed passed, $failed failed"
    fi
    exit "$status"
}

# ---------------------------------------------------------------------------

if ((EUID != 0)); then
    echo "tests/package/run.sh: must run as root (it installs packages)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    echo "tests/package/run.sh: apt-get and dpkg-query not found:" \
        "this test needs Debian 12" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
if is_installed "$PACKAGE"; then
    echo "tests/package/run.sh: $PACKAGE is already installed, and this" \
        "test would purge it: remove it first (dpkg --purge $PACKAGE)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

scratch=$(mktemp -d /tmp/mod_auth_teleport-package.XXXXXX)
# httpd's children (www-data) read the document root below it.
chmod 755 "$scratch"
logs="$scratch/logs"
mkdir -p "$logs"
trap on_exit EXIT
trap 'exit 130' INT TERM
note "scratch directory: $scratch"

system_state | sort >"$scratch/state.before"
state_paths=()
for path in "${STATE_PATHS[@]}"; do
    [[ -e $path ]] && state_paths+=("${path#/}")
done
if ((${#state_paths[@]} > 0)); then
    tar -C / -cpf "$scratch/state.tar" "${state_paths[@]}"
fi
port_80_before=$(port_80_listeners)
# What dpkg-buildpackage would write if it ran in the working tree: files
# under debian/ and the .deb, .buildinfo and .changes files beside it.
tree_outputs() {
    git -C "$top" status --porcelain --ignored --untracked-files=all \
        -- debian 2>/dev/null
    find "$(dirname "$top")" -maxdepth 1 -name "${PACKAGE}_*" 2>/dev/null
}
tree_outputs_before=$(tree_outputs)
is_installed apache2 && apache2_was_installed=1
for module in authn_core authz_core socache_shmcb; do
    [[ -L $MODS_ENABLED/$module.load ]] && enabled_before+=("$module")
done
if [[ -d /var/lib/apache2/module ]]; then
    tar -C /var/lib/apache2 -cf "$scratch/apache2-module-state.tar" module
fi

echo "== build"

if apt_install "${BUILD_PACKAGES[@]}" "${TOOL_PACKAGES[@]}"; then
    pass "build dependencies installed"
else
    fail "build dependencies installed" "apt-get failed:" \
        "$(log_tail "$logs/apt.log")"
fi

src="$scratch/src"
mkdir -p "$src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (
        cd "$top" || exit 1
        git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' file; do
                [[ -e $file || -L $file ]] && printf '%s\0' "$file"
            done \
            | tar --null -T - -cf - | tar -C "$src" -xf -
    )
else
    note "$top is not a git work tree; copying it whole"
    cp -a "$top/." "$src/"
fi

build_status=0
(cd "$src" && timeout "$BUILD_TIMEOUT" dpkg-buildpackage -us -uc -b) \
    >"$logs/build.log" 2>&1 || build_status=$?
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version 2>/dev/null)
deb="$scratch/${PACKAGE}_${version}_$(dpkg --print-architecture).deb"
if ((build_status == 0)) && [[ -f $deb ]]; then
    pass "dpkg-buildpackage -us -uc -b builds $(basename "$deb")"
else
    fail "dpkg-buildpackage -us -uc -b builds the package" \
        "exit status $build_status, last lines of $logs/build.log:" \
        "$(log_tail "$logs/build.log" 40)"
    echo "$passed passed, $failed failed"
    summary_printed=1
    exit 1
fi

if grep -q '^PASS: tests/unit/test_jwt_verify' "$logs/build.log"; then
    pass "package build ran the verifier's unit test"
else
    fail "package build ran the verifier's unit test" \
        "no 'PASS: tests/unit/test_jwt_verify' in $logs/build.log"
fi

depends=$(dpkg-deb --field "$deb" Depends)
check "Depends names the httpd module API" \
    grep -qE 'apache2-api-[0-9]{8}' <<<"$depends" -- "Depends: $depends"
for library in libjansson4 libcurl4 libssl3 apache2-bin; do
    check "Depends names $library" \
        grep -qE "(^|[ ,])$library( |,|$)" <<<"$depends" -- "Depends: $depends"
done

contents=$(dpkg-deb --contents "$deb" | awk '{ print $6 }')
for path in ".$MODULE_SO" ".$MODS_AVAILABLE/auth_teleport.load" \
    ".$MODS_AVAILABLE/auth_teleport.conf"; do
    check "package contains ${path#.}" \
        grep -qxF "$path" <<<"$contents" -- "not in dpkg-deb --contents"
done
la_files=$(grep '\.la$' <<<"$contents")
check "package contains no libtool .la file" test -z "$la_files" \
    -- "$la_files"

dpkg-deb --control "$deb" "$scratch/control"
for path in "$MODS_AVAILABLE/auth_teleport.load" \
    "$MODS_AVAILABLE/auth_teleport.conf"; do
    check "$(basename "$path") is a conffile" \
        grep -qxF "$path" "$scratch/control/conffiles" \
        -- "conffiles: $(tr '\n' ' ' <"$scratch/control/conffiles")"
done

# The command-line verifier is packaged whenever the build makes one.
tool=$(find "$src" -name .libs -prune -o -type f -name teleport-jwt-verify \
    -perm -u+x -print | head -n 1)
if [[ -n $tool ]]; then
    check "package contains teleport-jwt-verify" \
        grep -qE '^\./usr/(local/)?bin/teleport-jwt-verify$' <<<"$contents" \
        -- "the build made $tool, but the package has no" \
        "usr/bin/teleport-jwt-verify"
else
    note "the build makes no teleport-jwt-verify; not checked"
fi

echo "== install"

installed_packages >"$scratch/packages.before-install"
if deny_service_starts && apt_install "${RUNTIME_PACKAGES[@]}"; then
    pass "runtime packages installed with service starts denied"
else
    fail "runtime packages installed with service starts denied" \
        "apt-get failed:" "$(log_tail "$logs/apt.log")"
fi
# dpkg -i leaves the package unconfigured when a dependency is missing, and
# apt-get -f install then installs the dependencies and configures it.
dpkg_status=0
dpkg -i "$deb" >"$logs/install.log" 2>&1 || dpkg_status=$?
package_installed_by_test=1
if ((dpkg_status != 0)); then
    note "dpkg -i exited with status $dpkg_status; running apt-get -f install"
fi
install_status=0
timeout "$APT_TIMEOUT" apt-get -f install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=120 >>"$logs/install.log" 2>&1 \
    || install_status=$?
allow_service_starts
installed_packages >"$scratch/packages.after-install"
mapfile -t newly_installed < <(comm -13 "$scratch/packages.before-install" \
    "$scratch/packages.after-install" | grep -vxF "$PACKAGE")
if ((install_status == 0)) && is_installed "$PACKAGE"; then
    pass "dpkg -i installs $PACKAGE"
else
    fail "dpkg -i installs $PACKAGE" \
        "apt-get -f install exit status $install_status:" \
        "$(log_tail "$logs/install.log")"
fi
check "no server listens on port 80 after the installation" \
    test "$(port_80_listeners)" == "$port_80_before" \
    -- "listening on port 80: $(port_80_listeners)"

symbols=$(nm -D --defined-only "$MODULE_SO" 2>&1)
check "installed module exports auth_teleport_module" \
    grep -qE ' auth_teleport_module$' <<<"$symbols" \
    -- "nm -D $MODULE_SO has no auth_teleport_module"

active=$(grep -vE '^[[:space:]]*(#|$)' "$MODS_AVAILABLE/auth_teleport.conf")
check "shipped auth_teleport.conf has no active line" \
    test -z "$active" -- "active lines:" "$active"

echo "== a2enmod"

check "installation enabled auth_teleport" \
    test -L "$MODS_ENABLED/auth_teleport.load" \
    -a -L "$MODS_ENABLED/auth_teleport.conf" \
    -- "$(find "$MODS_ENABLED" -name 'auth_teleport*' -printf '%p -> %l\n')"

status=0
output=$(a2dismod socache_shmcb 2>&1) || status=$?
if ((status != 0)) && grep -q 'depend on socache_shmcb' <<<"$output" \
    && [[ -L $MODS_ENABLED/socache_shmcb.load ]]; then
    pass "a2dismod socache_shmcb refused while auth_teleport is enabled"
else
    fail "a2dismod socache_shmcb refused while auth_teleport is enabled" \
        "exit status $status:" "$output"
fi

# From a state without either module: a2enmod must enable the dependency.
a2dismod -q auth_teleport >>"$logs/a2enmod.log" 2>&1
a2dismod -q socache_shmcb >>"$logs/a2enmod.log" 2>&1
check "a2dismod auth_teleport and socache_shmcb" \
    test ! -e "$MODS_ENABLED/auth_teleport.load" \
    -a ! -e "$MODS_ENABLED/socache_shmcb.load" \
    -- "$(log_tail "$logs/a2enmod.log")"
status=0
output=$(a2enmod auth_teleport 2>&1) || status=$?
printf '%s\n' "$output" >>"$logs/a2enmod.log"
check "a2enmod auth_teleport succeeds" test "$status" -eq 0 -- "$output"
for module in auth_teleport socache_shmcb authn_core authz_core; do
    check "a2enmod auth_teleport leaves $module enabled" \
        test -L "$MODS_ENABLED/$module.load" -- "$output"
done
check "a2enmod auth_teleport enables its conf file" \
    test -L "$MODS_ENABLED/auth_teleport.conf" -- "$output"

echo "== apache2ctl"

port=$(pick_port) || {
    fail "free port on 127.0.0.1" "no free port found in 20000-29999"
    echo "$passed passed, $failed failed"
    summary_printed=1
    exit 1
}
note "test port: 127.0.0.1:$port"

keys="$scratch/keys"
mkdir -p "$keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$keys/signing.pem" 2>>"$logs/keys.log"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$keys/other.pem" 2>>"$logs/keys.log"
chmod 600 "$keys/signing.pem" "$keys/other.pem"
jwks="$keys/jwks.json"
jwks_for "$keys/signing.pem" pkgtest-key >"$jwks"
printf '{"keys":[{"kty":"oct","kid":"pkgtest-hmac","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}\n' \
    >"$keys/hmac-only.json"
printf 'this is not JSON\n' >"$keys/not-json.json"
check "test JWKS generated" grep -q '"n":"[A-Za-z0-9_-]\{300,\}"' "$jwks" \
    -- "$(cat "$jwks")" "$(log_tail "$logs/keys.log")"

# The distribution's configuration with auth_teleport enabled and the
# shipped auth_teleport.conf, as the package leaves it.
confdir=$(new_confdir default keep-sites)
output=$(ctl "$confdir" -t 2>&1)
check "default configuration with auth_teleport enabled passes -t" \
    grep -q 'Syntax OK' <<<"$output" -- "$output"

confdir=$(new_confdir minimal)
location_body="    <Location \"/\">
        AuthType Teleport
        AuthName \"pkgtest\"
        TeleportJWKSFile $jwks
        TeleportAudience http://127.0.0.1:$port
        TeleportIssuer pkgtest-cluster
        Require valid-user
    </Location>"
site "$confdir" "$location_body"
output=$(ctl "$confdir" -M 2>&1)
check "apache2ctl -M lists auth_teleport_module" \
    grep -qE '^ auth_teleport_module \(shared\)' <<<"$output" -- "$output"
check "apache2ctl -M lists socache_shmcb_module" \
    grep -qE '^ socache_shmcb_module \(shared\)' <<<"$output" -- "$output"
config_accepted "AuthType Teleport with TeleportJWKSFile passes -t" \
    "$confdir" "$location_body"

# Every directive that httpd -L lists for the module is in the shipped
# configuration.
directives=$(ctl "$confdir" -L 2>&1 \
    | sed -n 's/^\(Teleport[A-Za-z]*\) (mod_auth_teleport\.c)$/\1/p')
missing_directives=()
for directive in $directives; do
    grep -qE "^#?[[:space:]]*${directive}[[:space:]]" \
        "$MODS_AVAILABLE/auth_teleport.conf" \
        || missing_directives+=("$directive")
done
check "apache2ctl -L lists the module's directives" \
    test "$(wc -w <<<"$directives")" -ge 18 -- "listed: $directives"
check "shipped auth_teleport.conf lists every directive" \
    test "${#missing_directives[@]}" -eq 0 \
    -- "missing: ${missing_directives[*]}"

config_rejected "missing TeleportJWKSFile rejected" "$confdir" \
    "TeleportJWKSFile" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportJWKSFile $keys/no-such-file.json
        Require valid-user
    </Location>"
config_rejected "JWKS file without a usable key rejected" "$confdir" \
    "TeleportJWKSFile" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportJWKSFile $keys/hmac-only.json
        Require valid-user
    </Location>"
config_rejected "JWKS file that is not JSON rejected" "$confdir" \
    "TeleportJWKSFile" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportJWKSFile $keys/not-json.json
        Require valid-user
    </Location>"
config_rejected "AuthType Teleport without a key source rejected" \
    "$confdir" "no key source" \
    "    <Location \"/\">
        AuthType Teleport
        Require valid-user
    </Location>"
config_rejected "TeleportAlgorithms none rejected" "$confdir" \
    "TeleportAlgorithms" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportJWKSFile $jwks
        TeleportAlgorithms none
        Require valid-user
    </Location>"
config_rejected "TeleportAlgorithms HS256 rejected" "$confdir" \
    "TeleportAlgorithms" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportJWKSFile $jwks
        TeleportAlgorithms HS256
        Require valid-user
    </Location>"
config_rejected "TeleportProxyURL with ftp scheme rejected" "$confdir" \
    "TeleportProxyURL" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportProxyURL ftp://127.0.0.1:$port/
        Require valid-user
    </Location>"
config_rejected "TeleportClockSkew out of range rejected" "$confdir" \
    "TeleportClockSkew" \
    "    <Location \"/\">
        AuthType Teleport
        TeleportJWKSFile $jwks
        TeleportClockSkew 86401
        Require valid-user
    </Location>"
config_rejected "TeleportCache in a Location rejected" "$confdir" \
    "TeleportCache" \
    "    <Location \"/\">
        TeleportCache shmcb
    </Location>"

# TeleportProxyURL needs a socache provider. apache2ctl -t runs no fetch:
# httpd fetches keys only when it starts.
proxy_body="    <Location \"/\">
        AuthType Teleport
        TeleportProxyURL https://127.0.0.1:$port
        TeleportAudience http://127.0.0.1:$port
        Require valid-user
    </Location>"
config_accepted "TeleportProxyURL with socache_shmcb enabled passes -t" \
    "$confdir" "$proxy_body"
no_socache=$(new_confdir no-socache)
rm -f "$no_socache/mods-enabled/socache_shmcb.load"
config_rejected "TeleportProxyURL without socache_shmcb rejected" \
    "$no_socache" "mod_socache_shmcb" "$proxy_body"

# The shipped configuration with every server-wide default uncommented.
defaults=$(new_confdir defaults)
rm -f "$defaults/mods-enabled/auth_teleport.conf"
sed -E 's/^#(Teleport(Algorithms|ClockSkew|Header|UserClaim|FetchTimeout|JWKSMaxAge|JWKSMinRefresh|JWKSMaxStale|MaxTokenSize|ForwardHeaders|ForwardAssertion|TokenCache|Cache) )/\1/' \
    "$MODS_AVAILABLE/auth_teleport.conf" \
    >"$defaults/mods-enabled/auth_teleport.conf"
uncommented=$(grep -c '^Teleport' "$defaults/mods-enabled/auth_teleport.conf")
check "shipped configuration has 13 default directive lines" \
    test "$uncommented" -eq 13 -- "uncommented $uncommented lines"
config_accepted "shipped defaults uncommented pass -t" "$defaults" \
    "$location_body"

# The shipped <Location> example uncommented, with the example proxy address
# replaced by the test JWKS file so that nothing names another host.
example=$(sed -n '/^#<Location/,/^#<\/Location>/p' \
    "$MODS_AVAILABLE/auth_teleport.conf" | sed 's/^#//' \
    | sed -E "s|^([[:space:]]*)TeleportProxyURL .*|\1TeleportJWKSFile $jwks|")
check "shipped configuration has a <Location> example" \
    grep -q 'AuthType Teleport' <<<"$example" -- "$example"
config_accepted "shipped <Location> example passes -t" "$confdir" "$example"

echo "== httpd on 127.0.0.1"

server=$(new_confdir server)
htdocs="$scratch/htdocs"
mkdir -p "$htdocs/admin"
echo "protected page" >"$htdocs/index.html"
echo "admin page" >"$htdocs/admin/index.html"
chmod -R a+rX "$htdocs"
access_log="$scratch/httpd/server/log/pkgtest-access.log"
site "$server" "    DocumentRoot $htdocs
    <Directory $htdocs>
        Require all granted
    </Directory>
    LogLevel warn auth_teleport:info
    LogFormat \"%u %>s %{teleport-reason}n %q\" pkgtest
    CustomLog $access_log pkgtest
$location_body
    <Location \"/admin/\">
        AuthzSendForbiddenOnFailure On
        Require teleport-role admin
    </Location>"

if start_httpd "$server"; then
    pass "httpd starts with the packaged module on 127.0.0.1:$port"

    now=$(date +%s)
    audience="http://127.0.0.1:$port"
    header='{"alg":"RS256","typ":"JWT","kid":"pkgtest-key"}'
    claims() { # USER AUDIENCE EXP
        printf '{"aud":["%s"],"exp":%s,"iat":%s,"nbf":%s,"iss":"pkgtest-cluster","sub":"teleport","username":"%s","roles":["access"]}' \
            "$2" "$3" "$now" "$now" "$1"
    }
    valid=$(mint "$header" "$(claims alice "$audience" $((now + 300)))" \
        "$keys/signing.pem")

    status=$(request no-token)
    if [[ $status == 401 ]] \
        && grep -qi '^WWW-Authenticate: Teleport realm="pkgtest"' \
            "$scratch/headers"; then
        pass "request without a token: 401 with a Teleport challenge"
    else
        fail "request without a token: 401 with a Teleport challenge" \
            "status $status, headers:" "$(cat "$scratch/headers")"
    fi

    token_case valid 200 "alice 200 -" "$valid"
    check "valid token gets the page" grep -qx 'protected page' \
        "$scratch/body" -- "body: $(head -c 200 "$scratch/body")"

    # Claims of another user under alice's signature.
    tampered_payload=$(printf '%s' "$(claims bob "$audience" $((now + 300)))" \
        | base64url)
    tampered="${valid%%.*}.$tampered_payload.${valid##*.}"
    token_case tampered 401 "- 401 bad_signature" "$tampered"
    token_case other-key 401 "- 401 bad_signature" \
        "$(mint "$header" "$(claims alice "$audience" $((now + 300)))" \
            "$keys/other.pem")"
    token_case expired 401 "- 401 expired" \
        "$(mint "$header" "$(claims alice "$audience" $((now - 3600)))" \
            "$keys/signing.pem")"
    token_case other-audience 401 "- 401 bad_audience" \
        "$(mint "$header" "$(claims alice http://127.0.0.1:1 $((now + 300)))" \
            "$keys/signing.pem")"
    none_header=$(printf '%s' '{"alg":"none","typ":"JWT"}' | base64url)
    token_case alg-none 401 "- 401 alg_not_allowed" \
        "$none_header.${valid#*.}"
    token_case not-a-jwt 401 "- 401 malformed" "not-a-jwt"

    request_path=/admin/ token_case role-missing 403 "alice 403 -" "$valid"

    stop_httpd
    check "httpd stopped" test -z "$(ss -Htln "sport = :$port")" \
        -- "still listening: $(ss -Htlnp "sport = :$port")"
else
    fail "httpd starts with the packaged module on 127.0.0.1:$port" \
        "$(log_tail "$logs/httpd.out")" \
        "$(log_tail "$scratch/httpd/server/log/error.log")"
    stop_httpd
fi

echo "== purge"

deny_service_starts
purge_status=0
dpkg --purge "$PACKAGE" >"$logs/purge.log" 2>&1 || purge_status=$?
allow_service_starts
check "dpkg --purge $PACKAGE" test "$purge_status" -eq 0 \
    -- "$(log_tail "$logs/purge.log")"
leftovers=()
for path in "$MODULE_SO" "$MODS_AVAILABLE/auth_teleport.load" \
    "$MODS_AVAILABLE/auth_teleport.conf" "$MODS_ENABLED/auth_teleport.load" \
    "$MODS_ENABLED/auth_teleport.conf"; do
    [[ -e $path || -L $path ]] && leftovers+=("$path")
done
check "purge removes the module and its configuration" \
    test "${#leftovers[@]}" -eq 0 -- "left: ${leftovers[*]}"
confdir=$(new_confdir after-purge keep-sites)
output=$(ctl "$confdir" -t 2>&1)
check "configuration passes -t after the purge" \
    grep -q 'Syntax OK' <<<"$output" -- "$output"

echo "== restore"

restore_system
system_state | sort >"$scratch/state.after"
state_diff=$(diff "$scratch/state.before" "$scratch/state.after")
check "apache2 files and policy-rc.d as before the test" \
    test -z "$state_diff" -- "$state_diff"
installed_packages >"$scratch/packages.after"
still_installed=$(comm -12 <(printf '%s\n' "${newly_installed[@]}" | sort) \
    "$scratch/packages.after" | tr '\n' ' ')
check "packages installed for the test are purged" \
    test -z "$still_installed" -- "still installed: $still_installed"
check "no server listens on port 80" \
    test "$(port_80_listeners)" == "$port_80_before" \
    -- "listening on port 80: $(port_80_listeners)"
tree_outputs_after=$(tree_outputs)
check "no build output in the working tree or beside it" \
    test "$tree_outputs_after" == "$tree_outputs_before" \
    -- "before:" "$tree_outputs_before" "after:" "$tree_outputs_after"

if ((failed == 0)); then
    rm -rf "$scratch"
else
    note "logs and build tree kept in $scratch"
fi
echo "$passed passed, $failed failed"
summary_printed=1
((failed == 0))
