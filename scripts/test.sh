#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: install the Debian packages,
# build the module, run the verifier's unit tests and the Apache::Test suite.
# Exits non-zero when anything fails; the last line is "N passed, N failed".
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

logs=$(mktemp -d /tmp/mod_auth_teleport-test.XXXXXX)
unit_log="$logs/unit.log"
suite_log="$logs/suite.log"

"$top/scripts/install-deps.sh"

echo "== build"
./autogen.sh >"$logs/autogen.log" 2>&1 || { cat "$logs/autogen.log"; exit 1; }
./configure >"$logs/configure.log" || { tail -50 config.log; exit 1; }
make -j2

echo "== unit tests"
unit_status=0
make check >"$unit_log" 2>&1 || unit_status=$?
cat tests/unit/test_jwt_verify.log 2>/dev/null || cat "$unit_log"

echo "== Apache::Test suite"
suite_status=0
# With pipefail the pipeline fails when t/TEST does, whatever tee returns.
t/TEST -verbose 2>&1 | tee "$suite_log" || suite_status=$?

# Count what ran: the unit test prints its own totals, Test::Harness prints
# "Files=N, Tests=N" and one "Failed N/M subtests" line per failing file.
read -r unit_passed unit_failed < <(
    awk '/^[0-9]+ passed, [0-9]+ failed/ { p = $1; f = $3 } END { print p + 0, f + 0 }' \
        tests/unit/test_jwt_verify.log 2>/dev/null || echo "0 0")
suite_total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$suite_log" | tail -1)
suite_failed=$(awk '/Failed [0-9]+\/[0-9]+ subtests/ { split($2, a, "/"); n += a[1] } END { print n + 0 }' "$suite_log")
suite_total=${suite_total:-0}

if [ "$unit_status" -ne 0 ] && [ "$unit_failed" -eq 0 ]; then
    unit_failed=1
fi
if [ "$suite_status" -ne 0 ] && [ "$suite_failed" -eq 0 ]; then
    suite_failed=1
fi
if [ "$suite_total" -eq 0 ]; then
    echo "error: the Apache::Test suite ran no test" >&2
    suite_failed=$((suite_failed + 1))
fi

passed=$((unit_passed + suite_total - suite_failed))
failed=$((unit_failed + suite_failed))
echo "logs: $logs"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
