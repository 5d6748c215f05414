#!/usr/bin/env bash
# End-to-end test of teleport-jwt-verify, run by "make check" from the build
# directory.  Keys come from the openssl command, JWKS documents and tokens
# from tests/cli/mint.pl (Crypt::JWT).  The HTTPS JWKS endpoint is
# "openssl s_server -WWW" with a CA made here, listening on 127.0.0.1 only;
# every process this script starts is stopped by its pid.
#
# Prints "ok N - name" or "not ok N - name: ..." per check, then
# "N passed, N failed".  Exits 1 when a check failed, and 99 when a tool
# that the test needs is missing or broken.
set -u

srcdir=${srcdir:-.}
cli=${TELEPORT_JWT_VERIFY:-$PWD/tools/teleport-jwt-verify}
mint_script="$srcdir/tests/cli/mint.pl"

# Fixed clock of the tokens: 2023-11-14T22:13:20Z.
NOW=1700000000
AUDIENCE=http://localhost:8080
ISSUER=teleport.example.com

passed=0
failed=0
count=0
server_pid=
silent_pid=

work=$(mktemp -d "${TMPDIR:-/tmp}/teleport-jwt-verify-test.XXXXXX") || exit 99

cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    if [ -n "$silent_pid" ]; then
        kill "$silent_pid" 2>/dev/null
        wait "$silent_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A missing tool is a hard error (99), never a skipped test.
broken() {
    echo "error: $*" >&2
    exit 99
}

# ---- checks ----------------------------------------------------------------

pass() {
    count=$((count + 1))
    passed=$((passed + 1))
    echo "ok $count - $1"
}

fail() {
    count=$((count + 1))
    failed=$((failed + 1))
    echo "not ok $count - $1: $2"
    echo "  stdout:"
    sed 's/^/    /' "$work/out"
    echo "  stderr:"
    sed 's/^/    /' "$work/err"
}

# Run the verifier with $1 on standard input and the other arguments.  The
# exit status goes to $status, the output to $work/out and $work/err.
verify() {
    local input=$1
    shift
    printf '%s\n' "$input" | "$cli" "$@" >"$work/out" 2>"$work/err"
    status=$?
}

last_line() {
    tail -n 1 "$work/out"
}

check_status() {
    local name=$1 expected=$2
    if [ "$status" -eq "$expected" ]; then
        pass "$name: exit status"
    else
        fail "$name: exit status" "got $status expected $expected"
    fi
}

# The last line is "valid".
check_valid() {
    local name=$1
    check_status "$name" 0
    if [ "$(last_line)" = valid ]; then
        pass "$name: verdict"
    else
        fail "$name: verdict" "got '$(last_line)' expected 'valid'"
    fi
}

# The last line is "rejected: reason=$2: <detail>".
check_rejected() {
    local name=$1 reason=$2
    check_status "$name" 1
    case $(last_line) in
    "rejected: reason=$reason: "?*) pass "$name: reason" ;;
    *) fail "$name: reason" "got '$(last_line)' expected 'rejected: reason=$reason: ...'" ;;
    esac
}

# Standard error contains $2 as a fixed string.
check_stderr() {
    local name=$1 text=$2
    if grep -qF -- "$text" "$work/err"; then
        pass "$name: message"
    else
        fail "$name: message" "standard error lacks '$text'"
    fi
}

check_stdout() {
    local name=$1 text=$2
    if grep -qF -- "$text" "$work/out"; then
        pass "$name"
    else
        fail "$name" "standard output lacks '$text'"
    fi
}

check_stdout_lacks() {
    local name=$1 text=$2
    if grep -qF -- "$text" "$work/out" "$work/err"; then
        fail "$name" "the output contains '$text'"
    else
        pass "$name"
    fi
}

# Exit status 2 with a message that names the bad value.
check_usage() {
    local name=$1 text=$2
    check_status "$name" 2
    check_stderr "$name" "$text"
}

signature_of() {
    printf '%s' "${1##*.}"
}

# ---- fixtures --------------------------------------------------------------

mint() {
    perl "$mint_script" "$@" || broken "tests/cli/mint.pl $1 failed"
}

# Teleport's kid: base64url of SHA-256 over the DER PKCS#1 RSAPublicKey
# (RSA) or the DER SubjectPublicKeyInfo (EC), without padding.
key_id() {
    local key=$1 type=$2
    if [ "$type" = RSA ]; then
        openssl rsa -in "$key" -RSAPublicKey_out -outform DER 2>/dev/null
    else
        openssl pkey -in "$key" -pubout -outform DER
    fi | openssl dgst -sha256 -binary | basenc --base64url | tr -d '=\n'
}

make_keys() {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$work/rsa.pem" 2>/dev/null || broken "openssl genpkey RSA failed"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$work/ec.pem" || broken "openssl genpkey EC failed"
    rsa_kid=$(key_id "$work/rsa.pem" RSA)
    ec_kid=$(key_id "$work/ec.pem" EC)
    [ -n "$rsa_kid" ] && [ -n "$ec_kid" ] || broken "cannot compute key ids"
    mint jwks "$work/rsa.pem=$rsa_kid" "$work/ec.pem=$ec_kid" >"$work/jwks.json"
}

# A CA and a certificate for 127.0.0.1 that it signed.
make_certificates() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 \
        -subj "/CN=teleport-jwt-verify test CA" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null \
        || broken "openssl req (CA) failed"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$work/server.key" -out "$work/server.csr" \
        -subj "/CN=127.0.0.1" 2>/dev/null || broken "openssl req (server) failed"
    printf '%s\n' 'subjectAltName=IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
        'extendedKeyUsage=serverAuth' >"$work/server.ext"
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" \
        -CAkey "$work/ca.key" -CAcreateserial -days 2 \
        -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null \
        || broken "openssl x509 (server) failed"
}

# Print a TCP port that is free on 127.0.0.1 now.
free_port() {
    perl -MIO::Socket::INET -e '
        my $socket = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
            LocalPort => 0, Listen => 1) or die "cannot listen: $!\n";
        print $socket->sockport, "\n";'
}

# Wait up to 5 s until 127.0.0.1:$1 accepts connections while process $2
# runs.
wait_for_port() {
    local port=$1 pid=$2 tries=0
    while [ $tries -lt 50 ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
        tries=$((tries + 1))
    done
    return 1
}

# Serve $work/www over HTTPS on 127.0.0.1:$port.
start_server() {
    mkdir -p "$work/www/.well-known"
    cp "$work/jwks.json" "$work/www/.well-known/jwks.json"
    port=$(free_port) || broken "cannot find a free port on 127.0.0.1"
    (cd "$work/www" && exec openssl s_server -accept "127.0.0.1:$port" -WWW \
        -cert "$work/server.pem" -key "$work/server.key" -quiet) \
        >"$work/s_server.log" 2>&1 &
    server_pid=$!
    wait_for_port "$port" "$server_pid" \
        || broken "openssl s_server did not listen on 127.0.0.1:$port: $(cat "$work/s_server.log")"
}

# Start a listener on 127.0.0.1 that never responds, for the timeout test.
# It exits by itself after 60 s.
start_silent_listener() {
    perl -MIO::Socket::INET -e '
        my $socket = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
            LocalPort => 0, Listen => 5) or die "cannot listen: $!\n";
        $| = 1;
        print $socket->sockport, "\n";
        sleep 60;' >"$work/silent.port" &
    silent_pid=$!
    local tries=0
    while [ ! -s "$work/silent.port" ] && [ $tries -lt 50 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    silent_port=$(cat "$work/silent.port")
    [ -n "$silent_port" ] || broken "the silent listener did not start"
}

command -v openssl >/dev/null || broken "openssl not found (scripts/install-deps.sh installs it)"
command -v valgrind >/dev/null || broken "valgrind not found (scripts/install-deps.sh installs it)"
command -v basenc >/dev/null || broken "basenc (coreutils 8.31 or later) not found"
perl -MCrypt::JWT -e 1 2>/dev/null \
    || broken "Perl module Crypt::JWT not found (scripts/install-deps.sh installs libcrypt-jwt-perl)"
[ -x "$cli" ] || broken "$cli not found: run make first"

make_keys
make_certificates
checks=(--jwks-file "$work/jwks.json" --now "$NOW" --audience "$AUDIENCE"
        --issuer "$ISSUER")
claims=$(mint claims "$NOW")

# ---- valid tokens ----------------------------------------------------------

rs256=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" "$claims")
verify "$rs256" "${checks[@]}"
check_valid "rs256 with kid"
check_stdout "rs256 with kid: key named" \
    "signature: verified with key kid=\"$rsa_kid\" kty=RSA bits=2048"
check_stdout "rs256 with kid: user shown" "user: alice"
check_stdout "rs256 with kid: claims shown" '"username": "alice"'
check_stdout_lacks "rs256 with kid: not marked unverified" "unverified"
check_stdout_lacks "rs256 with kid: signature not printed" \
    "$(signature_of "$rs256")"

kidless=$(mint token "$work/rsa.pem" RS256 - "$claims")
verify "$kidless" "${checks[@]}"
check_valid "rs256 without kid"
check_stdout "rs256 without kid: key named" "kty=RSA bits=2048"

es256=$(mint token "$work/ec.pem" ES256 "$ec_kid" "$claims")
verify "$es256" "${checks[@]}"
check_valid "es256 with kid"
check_stdout "es256 with kid: key named" \
    "signature: verified with key kid=\"$ec_kid\" kty=EC bits=256"

verify "$es256" "${checks[@]}" --algorithms ES256
check_valid "es256 with algorithms ES256"

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" "aud=[\"$AUDIENCE\"]")")
verify "$token" "${checks[@]}"
check_valid "aud as array"

verify "  Bearer $rs256  " "${checks[@]}"
check_valid "bearer prefix and spaces"

"$cli" "${checks[@]}" "$rs256" >"$work/out" 2>"$work/err" </dev/null
status=$?
check_valid "token as argument"

verify "$rs256" "${checks[@]}" --user-claim sub
check_valid "user claim sub"

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" "exp=$((NOW - 30))")")
verify "$token" "${checks[@]}"
check_valid "expired within default skew"
verify "$token" "${checks[@]}" --clock-skew 0
check_rejected "expired without skew" expired

# --now reproduces a decision: valid at issue time, expired 700 s later
# (exp is 600 s after issue, plus 60 s of skew).
verify "$rs256" "${checks[@]}" --now $((NOW + 700))
check_rejected "now after exp" expired
check_stdout "now after exp: key still named" \
    "signature: verified with key kid=\"$rsa_kid\""
check_stdout_lacks "now after exp: not marked unverified" "unverified"

# ---- one case per rejection reason -----------------------------------------

verify "not-a-jwt" "${checks[@]}"
check_rejected "one segment" malformed

verify "$rs256" "${checks[@]}" --max-token-size 256
check_rejected "token over max size" malformed
check_stdout "token over max size: detail" "exceeds the maximum of 256"
check_stdout "token over max size: claims still shown" '"username": "alice"'

token=$(mint raw "$work/rsa.pem" RS256 \
    "{\"alg\":\"RS256\",\"kid\":\"$rsa_kid\",\"crit\":[\"exp\"]}" "$claims")
verify "$token" "${checks[@]}"
check_rejected "crit in header" bad_header

verify "$rs256" "${checks[@]}" --algorithms ES256
check_rejected "rs256 when only es256" alg_not_allowed

header=$(printf '%s' '{"alg":"none","typ":"JWT"}' | basenc --base64url | tr -d '=\n')
payload=$(printf '%s' "$claims" | basenc --base64url | tr -d '=\n')
verify "$header.$payload." "${checks[@]}"
check_rejected "alg none" alg_not_allowed
check_stdout "alg none: claims marked unverified" "claims (unverified):"

token=$(mint token "$work/rsa.pem" RS256 no-such-key "$claims")
verify "$token" "${checks[@]}"
check_rejected "kid not in jwks" unknown_kid

token=$(mint token "$work/rsa.pem" RS256 "$ec_kid" "$claims")
verify "$token" "${checks[@]}"
check_rejected "rs256 with ec kid" key_mismatch

other=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" 'sub="admin"' 'username="admin"')")
tampered="${other%.*}.$(signature_of "$rs256")"
verify "$tampered" "${checks[@]}"
check_rejected "tampered payload" bad_signature
check_stdout "tampered payload: header marked unverified" \
    "header (unverified):"
check_stdout "tampered payload: claims marked unverified" \
    "claims (unverified):"
check_stdout "tampered payload: claims decoded" '"username": "admin"'
check_stdout "tampered payload: signature line" "signature: not verified"
check_stdout_lacks "tampered payload: signature not printed" \
    "$(signature_of "$rs256")"

token=$(mint raw "$work/rsa.pem" RS256 \
    "{\"alg\":\"RS256\",\"kid\":\"$rsa_kid\"}" \
    "{\"sub\":\"alice\",\"sub\":\"admin\",\"exp\":$((NOW + 600))}")
verify "$token" "${checks[@]}"
check_rejected "duplicate claim" bad_payload

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" 'roles="admin"')")
verify "$token" "${checks[@]}"
check_rejected "roles not an array" bad_claim

# The module rejects control characters in sub, iss and kid after the
# verifier accepted the token.
token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" 'sub="ali\u0007ce"')")
verify "$token" "${checks[@]}"
check_rejected "control character in sub" bad_claim

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" exp-)")
verify "$token" "${checks[@]}"
check_rejected "no exp" missing_exp

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" "exp=$((NOW - 120))")")
verify "$token" "${checks[@]}"
check_rejected "exp beyond skew" expired

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" "nbf=$((NOW + 120))")")
verify "$token" "${checks[@]}"
check_rejected "nbf beyond skew" not_yet_valid

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" "iat=$((NOW + 120))")")
verify "$token" "${checks[@]}"
check_rejected "iat beyond skew" issued_in_future

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" "aud=\"$AUDIENCE/\"")")
verify "$token" "${checks[@]}"
check_rejected "aud with trailing slash" bad_audience

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" 'iss="leaf.example.com"')")
verify "$token" "${checks[@]}"
check_rejected "iss of another cluster" bad_issuer

verify "$rs256" "${checks[@]}" --user-claim email
check_rejected "user claim absent" missing_user

token=$(mint token "$work/rsa.pem" RS256 "$rsa_kid" \
    "$(mint claims "$NOW" 'username=""')")
verify "$token" "${checks[@]}"
check_rejected "empty user" bad_user

printf '%s\n' '{"keys": "none"}' >"$work/bad.json"
verify "$rs256" --jwks-file "$work/bad.json"
check_usage "jwks without keys array" "bad_jwks"

printf '%s\n' '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}' >"$work/oct.json"
verify "$rs256" --jwks-file "$work/oct.json"
check_usage "jwks with only an hmac key" "no_usable_keys"

# ---- usage errors ----------------------------------------------------------

verify "$rs256" "${checks[@]}" --algorithms none
check_usage "algorithms none" "'none'"

verify "$rs256" "${checks[@]}" --algorithms "RS256 HS256"
check_usage "algorithms hs256" "'HS256'"

verify "$rs256" "${checks[@]}" --algorithms RS257
check_usage "algorithms unknown" "'RS257'"

verify "$rs256" --now "$NOW"
check_usage "no key source" "no key source"

verify "$rs256" "${checks[@]}" --proxy-url "https://127.0.0.1:1"
check_usage "two key sources" "use one key source"

verify "$rs256" --jwks-file "$work/missing.json"
check_usage "jwks file missing" "'$work/missing.json'"

verify "$rs256" --jwks-file "$work"
check_usage "jwks file is a directory" "'$work'"

verify "$rs256" --proxy-url "https://127.0.0.1:1" --ca-file "$work/missing.pem"
check_usage "ca file missing" "'$work/missing.pem'"

verify "$rs256" "${checks[@]}" --clock-skew -5
check_usage "clock skew negative" "'-5'"

verify "$rs256" "${checks[@]}" --clock-skew 86401
check_usage "clock skew too large" "'86401'"

verify "$rs256" "${checks[@]}" --max-token-size 100
check_usage "max token size too small" "'100'"

verify "$rs256" "${checks[@]}" --now yesterday
check_usage "now not a number" "'yesterday'"

verify "$rs256" --proxy-url "https://127.0.0.1:1" --timeout 0
check_usage "timeout zero" "'0'"

verify "$rs256" "${checks[@]}" --audience ""
check_usage "audience empty" "--audience"

verify "$rs256" "${checks[@]}" --frobnicate
check_usage "unknown option" "'--frobnicate'"

verify "$rs256" "${checks[@]}" first second
check_usage "two tokens" "one token expected"

"$cli" "${checks[@]}" >"$work/out" 2>"$work/err" </dev/null
status=$?
check_usage "empty standard input" "standard input is empty"

"$cli" --help >"$work/out" 2>"$work/err" </dev/null
status=$?
check_status "help" 0
for option in "--proxy-url URL" "--ca-file PATH" "--timeout SECONDS" \
    "--jwks-file PATH" "--audience URI" "--issuer NAME" \
    "--clock-skew SECONDS" "--algorithms \"ALG ...\"" "--user-claim CLAIM" \
    "--max-token-size BYTES" "--now EPOCH"; do
    check_stdout "help describes ${option%% *}" "$option"
done

# ---- keys from an HTTPS server on 127.0.0.1 --------------------------------

start_server
jwks_url="https://127.0.0.1:$port/.well-known/jwks.json"
proxy_checks=(--now "$NOW" --audience "$AUDIENCE" --issuer "$ISSUER")

verify "$rs256" --proxy-url "https://127.0.0.1:$port" \
    --ca-file "$work/ca.pem" "${proxy_checks[@]}"
check_valid "proxy url with ca file"
check_stdout "proxy url with ca file: keys listed" \
    "keys: 2 usable from $jwks_url"

verify "$es256" --proxy-url "$jwks_url" --ca-file "$work/ca.pem" \
    "${proxy_checks[@]}"
check_valid "proxy url given as jwks url"

verify "$rs256" --proxy-url "https://127.0.0.1:$port" "${proxy_checks[@]}"
check_usage "proxy url without ca file" "JWKS fetch from $jwks_url failed"
check_stderr "untrusted proxy certificate" "SSL certificate problem"

verify "$rs256" --proxy-url "https://127.0.0.1:$port/elsewhere" \
    --ca-file "$work/ca.pem" "${proxy_checks[@]}"
check_usage "proxy path without jwks" "bad_jwks"

verify "$rs256" --proxy-url "https://127.0.0.1:$port/.well-known/jwks-oidc" \
    --ca-file "$work/ca.pem" "${proxy_checks[@]}"
check_usage "oidc jwks url" "names another document"

verify "$rs256" --proxy-url "ftp://127.0.0.1:$port/" "${proxy_checks[@]}"
check_usage "ftp proxy url" "must use https"

start_silent_listener
started=$SECONDS
verify "$rs256" --proxy-url "https://127.0.0.1:$silent_port" \
    --ca-file "$work/ca.pem" --timeout 1 "${proxy_checks[@]}"
elapsed=$((SECONDS - started))
check_usage "silent proxy" "Timeout was reached"
if [ "$elapsed" -le 4 ]; then
    pass "silent proxy: gives up after --timeout"
else
    fail "silent proxy: gives up after --timeout" "took $elapsed s with --timeout 1"
fi
kill "$silent_pid" 2>/dev/null
wait "$silent_pid" 2>/dev/null
silent_pid=

# ---- memory ----------------------------------------------------------------

# Exit status 99 means that valgrind found an error or a leak.
under_valgrind() {
    local input=$1
    shift
    printf '%s\n' "$input" | valgrind -q --error-exitcode=99 \
        --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible \
        "$cli" "$@" >"$work/out" 2>"$work/err"
    status=$?
}

under_valgrind "$rs256" "${checks[@]}"
check_valid "valgrind on a valid token"

under_valgrind "$tampered" "${checks[@]}"
check_rejected "valgrind on a tampered token" bad_signature

under_valgrind "$rs256" --proxy-url "https://127.0.0.1:$port" \
    --ca-file "$work/ca.pem" "${proxy_checks[@]}"
check_valid "valgrind with proxy url"

kill "$server_pid" 2>/dev/null
wait "$server_pid" 2>/dev/null
server_pid=

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
