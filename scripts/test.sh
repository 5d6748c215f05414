#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: install the Debian packages,
# build the module, then run
#   - make check: the verifier's unit test and the command-line verifier's
#     tests,
#   - the Apache::Test suite under the event and the prefork MPM,
#   - the unit test under ASan and UBSan and each libFuzzer target for
#     FUZZ_SECONDS (default 60) seconds (scripts/fuzz.sh),
#   - the Apache::Test suite once more with the module built with ASan and
#     UBSan (scripts/sanitize-suite.sh),
#   - the Debian package: build, install, a2enmod, requests, purge
#     (tests/package/run.sh; it installs and removes the apache2 package).
# Exits non-zero when anything fails; the last line is "N passed, N failed".
#
# Environment: FUZZ_SECONDS=0, SANITIZE_SUITE=0 and PACKAGE_TEST=0 skip
# those steps (for a quick local run; CI runs them all).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

fuzz_seconds=${FUZZ_SECONDS:-60}
logs=$(mktemp -d /tmp/mod_auth_teleport-test.XXXXXX)
passed=0
failed=0

"$top/scripts/install-deps.sh"

echo "== build"
./autogen.sh >"$logs/autogen.log" 2>&1 || { cat "$logs/autogen.log"; exit 1; }
./configure >"$logs/configure.log" || { tail -50 config.log; exit 1; }
make -j2

# Add the counts of a step: its own "N passed, N failed" line when it
# prints one, else 1 passed or 1 failed from its exit status.
count_step() {
    local name=$1 status=$2 log=$3 line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
    if [ -n "$line" ]; then
        set -- $line
        passed=$((passed + $1))
        failed=$((failed + $3))
        if [ "$status" -ne 0 ] && [ "$3" -eq 0 ]; then
            failed=$((failed + 1))
        fi
    elif [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    if [ "$status" -ne 0 ]; then
        echo "FAILED: $name (log: $log)"
    fi
}

# Add the counts of an Apache::Test run from Test::Harness's summary:
# "Files=N, Tests=N" and one "Failed N/M subtests" line per failing file.
count_suite() {
    local name=$1 status=$2 log=$3 total bad
    total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$log" | tail -1)
    bad=$(awk '/Failed [0-9]+\/[0-9]+ subtests/ { split($2, a, "/"); n += a[1] }
               END { print n + 0 }' "$log")
    total=${total:-0}
    if [ "$total" -eq 0 ]; then
        echo "FAILED: $name ran no test (log: $log)"
        failed=$((failed + 1))
        return
    fi
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
    fi
    passed=$((passed + total - bad))
    failed=$((failed + bad))
    if [ "$status" -ne 0 ]; then
        echo "FAILED: $name (log: $log)"
    fi
}

echo "== make check: the verifier's unit test and the command-line tool"
status=0
make check >"$logs/check.log" 2>&1 || status=$?
# Each test program writes its own log with a "N passed, N failed" line;
# add them up into one line for count_step.
for log in tests/unit/*.log tests/cli/*.log; do
    [ -f "$log" ] || continue
    echo "-- $log" >>"$logs/check.log"
    cat "$log" >>"$logs/check.log"
done
awk '/^[0-9]+ passed, [0-9]+ failed/ { p += $1; f += $3 }
     END { printf "%d passed, %d failed\n", p, f }' "$logs/check.log" \
    >>"$logs/check.log"
grep -E '^(PASS|FAIL|ERROR|XPASS):' "$logs/check.log" || true
tail -1 "$logs/check.log"
count_step "make check" "$status" "$logs/check.log"

for mpm in event prefork; do
    echo "== Apache::Test suite, $mpm MPM"
    status=0
    # With pipefail the pipeline fails when t/TEST does, whatever tee returns.
    TELEPORT_TEST_MPM=$mpm t/TEST -verbose 2>&1 | tee "$logs/suite-$mpm.log" \
        || status=$?
    count_suite "Apache::Test suite ($mpm)" "$status" "$logs/suite-$mpm.log"
done

if [ "$fuzz_seconds" -gt 0 ]; then
    echo "== sanitizers and fuzzing"
    status=0
    "$top/scripts/fuzz.sh" "$fuzz_seconds" >"$logs/fuzz.log" 2>&1 || status=$?
    tail -8 "$logs/fuzz.log"
    count_step "sanitizers and fuzzing" "$status" "$logs/fuzz.log"
fi

if [ "${SANITIZE_SUITE:-1}" != 0 ]; then
    echo "== Apache::Test suite with the module built with ASan and UBSan"
    status=0
    "$top/scripts/sanitize-suite.sh" >"$logs/sanitize.log" 2>&1 || status=$?
    tail -3 "$logs/sanitize.log"
    count_step "suite under ASan and UBSan" "$status" "$logs/sanitize.log"
fi

if [ "${PACKAGE_TEST:-1}" != 0 ]; then
    echo "== Debian package"
    status=0
    "$top/tests/package/run.sh" >"$logs/package.log" 2>&1 || status=$?
    tail -3 "$logs/package.log"
    count_step "Debian package" "$status" "$logs/package.log"
fi

echo "logs: $logs"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
