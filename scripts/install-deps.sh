#!/usr/bin/env bash
# Install the Debian 12 packages that building mod_auth_teleport, running
# demo/run.sh and running the test suite need.
#
# Usage: scripts/install-deps.sh [--demo] [--help]
#
# Installs nothing, and needs no root, when every package is already
# installed. Otherwise it runs apt-get as root, through sudo when started by
# another user.
set -euo pipefail

# Build: apxs and httpd's headers, the libraries the module links, autotools.
BUILD_PACKAGES=(
    apache2-bin apache2-dev libapr1-dev libaprutil1-dev libssl-dev
    libjansson-dev libcurl4-openssl-dev gcc make autoconf automake libtool
    pkg-config
)

# demo/run.sh: openssl makes its CA and keys, curl sends its requests, and
# demo/mint-token signs tokens with Crypt::JWT and Crypt::PK::RSA.
DEMO_PACKAGES=(
    openssl ca-certificates curl libjson-perl libcrypt-jwt-perl libcryptx-perl
)

# Test suite: Apache::Test ships in libapache2-mod-perl2 on Debian 12. The
# JWKS test servers use IO::Socket::SSL, the memory checks use valgrind, and
# the TeleportCache tests need the memcached and redis-server programs.
# scripts/fuzz.sh compiles with clang. Its libFuzzer and sanitizer runtimes
# are in libclang-rt-14-dev, which clang only recommends (through
# libclang-common-14-dev).
TEST_PACKAGES=(
    libapache2-mod-perl2 liblwp-protocol-https-perl libio-socket-ssl-perl
    valgrind memcached redis-server clang libclang-rt-14-dev
)

# Packages that come with a system service which Debian enables and starts
# on installation.
SERVICE_PACKAGES=(memcached redis-server)

usage() {
    cat <<'EOF'
Usage: scripts/install-deps.sh [--demo] [--help]

Installs the Debian 12 packages for building mod_auth_teleport, running the
demo and running the test suite.

  --demo   install only what the build and demo/run.sh need (no test
           packages, so no memcached or redis-server system services)
  --help   show this help

The full apache2 package is never installed, because its post-install script
starts a server on port 80; apache2-bin provides /usr/sbin/apache2 and all
modules.
EOF
}

log() {
    printf 'install-deps: %s\n' "$*"
}

die() {
    printf 'install-deps: error: %s\n' "$*" >&2
    exit 1
}

is_installed() {
    local status
    status=$(dpkg-query --show --showformat='${db:Status-Abbrev}' "$1" \
        2>/dev/null) || return 1
    [[ $status == ii* ]]
}

# Print the candidate version apt would install, or nothing when the
# package is unknown to the configured repositories.
candidate_version() {
    apt-cache policy "$1" 2>/dev/null \
        | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

warn_unless_debian_12() {
    local id="" version_id=""
    if [[ -r /etc/os-release ]]; then
        # shellcheck source=/dev/null
        id=$(. /etc/os-release && printf '%s' "${ID:-}")
        # shellcheck source=/dev/null
        version_id=$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")
    fi
    if [[ $id != debian || $version_id != 12 ]]; then
        log "warning: this script targets Debian 12 (bookworm); this system" \
            "reports ID=${id:-unknown} VERSION_ID=${version_id:-unknown}," \
            "so package names may differ"
    fi
}

main() {
    local original_args=("$@") demo_only=0
    while (($# > 0)); do
        case $1 in
            --demo) demo_only=1 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option '$1'" ;;
        esac
        shift
    done

    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null
    then
        die "dpkg-query or apt-get not found: this script needs Debian 12"
    fi

    local packages=("${BUILD_PACKAGES[@]}" "${DEMO_PACKAGES[@]}")
    if ((demo_only == 0)); then
        packages+=("${TEST_PACKAGES[@]}")
    fi

    local missing=() package
    for package in "${packages[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        log "all ${#packages[@]} packages are already installed"
        return 0
    fi

    if ((EUID != 0)); then
        command -v sudo >/dev/null \
            || die "installing ${missing[*]} needs root, and sudo is not" \
                   "installed: run this script as root"
        log "installing needs root; running again through sudo"
        exec sudo -- "$0" "${original_args[@]}"
    fi

    warn_unless_debian_12
    export DEBIAN_FRONTEND=noninteractive

    log "missing packages: ${missing[*]}"
    log "running apt-get update"
    apt-get update -q

    local unavailable=()
    for package in "${missing[@]}"; do
        [[ -n $(candidate_version "$package") ]] || unavailable+=("$package")
    done
    if ((${#unavailable[@]} > 0)); then
        die "no installation candidate for: ${unavailable[*]}." \
            "Enable the Debian 12 main repository in /etc/apt/sources.list" \
            "or /etc/apt/sources.list.d, then run this script again"
    fi

    # --force-confold keeps locally changed configuration files when a
    # dependency is upgraded, instead of prompting.
    log "running apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${missing[@]}"

    for package in "${missing[@]}"; do
        is_installed "$package" \
            || die "package $package is still not installed after apt-get"
    done
    log "installed ${#missing[@]} packages"

    local new_services=() service
    for service in "${SERVICE_PACKAGES[@]}"; do
        if [[ " ${missing[*]} " == *" $service "* ]]; then
            new_services+=("$service")
        fi
    done
    if ((${#new_services[@]} > 0)); then
        log "note: Debian enables the system services of" \
            "${new_services[*]} and starts them where the init system" \
            "allows it. To turn them off: systemctl disable --now" \
            "${new_services[*]}"
    fi
}

main "$@"
