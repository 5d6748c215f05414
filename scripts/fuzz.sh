#!/usr/bin/env bash
# Build the verifier's unit test and libFuzzer targets with clang's
# AddressSanitizer and UndefinedBehaviorSanitizer, run the unit test, then
# run each fuzz target for a bounded time.  Exits non-zero on any finding.
#
# Usage: scripts/fuzz.sh [seconds per target]   (default 60)
set -euo pipefail

seconds=${1:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mod_auth_teleport-fuzz.XXXXXX)

cflags=(-std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror
        -Wno-missing-field-initializers
        $(pkg-config --cflags jansson libcrypto))
libs=($(pkg-config --libs jansson libcrypto))
sanitizers=-fsanitize=address,undefined
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

echo "== unit test under ASan and UBSan"
clang "${cflags[@]}" "$sanitizers" -fno-sanitize-recover=all \
    -o "$work/test_jwt_verify" "$top/tests/unit/test_jwt_verify.c" \
    "$top/jwt_verify.c" "${libs[@]}"
"$work/test_jwt_verify" > "$work/unit.log" 2>&1 || {
    cat "$work/unit.log"; echo "unit test failed under sanitizers" >&2; exit 1; }
tail -1 "$work/unit.log"

for target in token jwks; do
    echo "== fuzz_$target for ${seconds} s"
    clang "${cflags[@]}" -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -o "$work/fuzz_$target" \
        "$top/fuzz/fuzz_$target.c" "$top/jwt_verify.c" "${libs[@]}"
    # Work on a copy so that inputs the fuzzer adds stay out of the tree.
    mkdir -p "$work/corpus_$target"
    cp "$top/fuzz/seeds/$target/"* "$work/corpus_$target/"
    (cd "$work" && "./fuzz_$target" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -max_len=20000 -print_final_stats=1 \
        "corpus_$target") > "$work/fuzz_$target.log" 2>&1 || {
        tail -60 "$work/fuzz_$target.log"
        echo "fuzz_$target found a problem; the input is in $work" >&2
        exit 1
    }
    grep -E '^stat::number_of_executed_units|^Done' "$work/fuzz_$target.log" || true
done
echo "fuzzing passed; logs in $work"
