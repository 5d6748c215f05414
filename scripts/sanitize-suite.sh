#!/usr/bin/env bash
# Run the whole Apache::Test suite (t/TEST) against mod_auth_teleport built
# with clang's AddressSanitizer and UndefinedBehaviorSanitizer, and report
# every sanitizer finding whose stack names the module.
#
# Debian 12's apache2 is not instrumented, so httpd runs with clang's ASan
# runtime preloaded (it contains the UBSan handlers too): t/TEST gets, as
# its httpd binary, a wrapper that sets LD_PRELOAD and starts the real one.
# The module is built and the suite runs in a copy of the working tree
# under /tmp, so t/conf and t/logs of the checkout stay untouched.  Each
# process writes its reports to its own file.  A report is attributed to
# the module when one of its stack frames is in mod_auth_teleport.so or in
# one of the module's source files.
#
# LeakSanitizer is off unless SANITIZE_LEAKS=1: Debian's APR allocates pool
# memory with mmap, which LeakSanitizer does not scan, so every malloc'd
# object that only a pool points to (the module's parsed key sets, for
# one) is reported as leaked when the process exits.
#
# Usage: scripts/sanitize-suite.sh [t/TEST arguments, e.g. t/reject.t]
# Environment:
#   SANITIZE_TIMEOUT  seconds the suite may run (default 900)
#   SANITIZE_LEAKS    1 to turn on LeakSanitizer (default 0)
#   APXS              apxs of the httpd to test (default: apxs on PATH)
# Exit status: 0 when the suite passed and no report names the module,
# 1 when a report names the module, 2 when the build or the suite failed
# or ran out of time (reports are still listed).
set -euo pipefail

timeout_seconds=${SANITIZE_TIMEOUT:-900}
leaks=${SANITIZE_LEAKS:-0}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mod_auth_teleport-sanitize.XXXXXX)
src="$work/src"
reports="$work/reports"
sanitizers=-fsanitize=address,undefined

fail() {
    echo "sanitize-suite: $*" >&2
    echo "sanitize-suite: files in $work" >&2
    exit 2
}

command -v clang >/dev/null || fail "clang not found (apt-get install clang)"
apxs=${APXS:-apxs}
command -v "$apxs" >/dev/null || fail "$apxs not found (apt-get install apache2-dev)"
httpd="$("$apxs" -q SBINDIR)/$("$apxs" -q TARGET)"
[ -x "$httpd" ] || fail "httpd binary $httpd not found"
runtime=$(clang -print-file-name="libclang_rt.asan-$(uname -m).so")
[ -f "$runtime" ] || fail "clang's ASan runtime libclang_rt.asan-$(uname -m).so not found"
symbolizer=$(command -v llvm-symbolizer || true)

echo "== copy the working tree to $src"
mkdir -p "$src"
# Tracked and untracked files that .gitignore does not exclude.  Files
# deleted from the working tree but still in the index are skipped.
(cd "$top" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$top" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -xf - -C "$src"

echo "== build the module and the command-line verifier with $sanitizers"
(
    cd "$src"
    ./autogen.sh
    ./configure CC=clang \
        CFLAGS="$sanitizers -fno-omit-frame-pointer -g -O1" \
        LDFLAGS="$sanitizers" ${APXS:+--with-apxs="$APXS"}
    make -j2 mod_auth_teleport.la tools/teleport-jwt-verify
) >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "build failed"; }
module="$src/.libs/mod_auth_teleport.so"
# grep reads all of nm's output (no -q), because an early exit would kill
# nm with SIGPIPE, which pipefail reports as a failure.
nm -D "$module" | grep '__asan_report' >/dev/null \
    || fail "$module carries no ASan instrumentation"

# The httpd children run as user nobody and write <prefix>.<pid> files,
# so the reports directory and its parent must be open to them.
mkdir -p "$reports"
chmod 755 "$work"
chmod 1777 "$reports"
cat >"$work/httpd-asan" <<EOF
#!/bin/sh
# $httpd with the ASan runtime loaded first, as ASan requires.
LD_PRELOAD="$runtime"
export LD_PRELOAD
exec "$httpd" "\$@"
EOF
chmod 755 "$work/httpd-asan"

export ASAN_OPTIONS="log_path=$reports/sanitizer:detect_leaks=$leaks:halt_on_error=1:exitcode=0:disable_coredump=1"
export UBSAN_OPTIONS="log_path=$reports/sanitizer:print_stacktrace=1:halt_on_error=0"
if [ -n "$symbolizer" ]; then
    export ASAN_SYMBOLIZER_PATH="$symbolizer"
fi

echo "== run t/TEST with $work/httpd-asan (at most $timeout_seconds s)"
suite_status=0
(
    cd "$src"
    TELEPORT_TEST_MODULE="$module" timeout --kill-after=30 "$timeout_seconds" \
        t/TEST -httpd "$work/httpd-asan" "$@"
) >"$work/suite.log" 2>&1 || suite_status=$?

# An interrupted run can leave its httpd behind.  Stop it by the pid in its
# own pid file, after checking that the process runs this copy's config.
pidfile="$src/t/logs/httpd.pid"
if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -- "$src/t/conf/httpd.conf" >/dev/null; then
        echo "stopping httpd $pid left by the run"
        kill -TERM "$pid"
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
    fi
fi

grep -E '^(Files=|Result:|t/.*(ok|FAIL|Failed|Dubious))' "$work/suite.log" | tail -40 || true
if [ "$suite_status" -eq 124 ] || [ "$suite_status" -eq 137 ]; then
    echo "sanitize-suite: t/TEST did not finish within $timeout_seconds s" >&2
fi

echo "== sanitizer reports"
# Names of the module's own source files, for attributing stack frames.
sources=$(cd "$src" && ls ./*.c | sed 's|^\./||' | paste -sd '|')
perl -e '
    use strict;
    use warnings;
    my ($sources, @files) = @ARGV;
    my $module_frame = qr{mod_auth_teleport\.so|\b(?:$sources):\d+};
    my (%count, @shown);
    for my $file (@files) {
        open my $fh, "<", $file or next;
        my $text = do { local $/; <$fh> };
        close $fh;
        # One report per ASan error, per UBSan runtime error and per
        # LeakSanitizer leak record, each starting at its header line.
        my @reports = split /\n(?=\S[^\n]*runtime error: |==\d+==ERROR: |(?:Direct|Indirect) leak of )/, $text;
        for my $report (@reports) {
            my $kind = $report =~ /runtime error: / ? "UndefinedBehaviorSanitizer"
                     : $report =~ /ERROR: AddressSanitizer: (\S+)/ ? "AddressSanitizer $1"
                     : $report =~ /(?:Direct|Indirect) leak of / ? "LeakSanitizer"
                     : next;
            my $where = $report =~ $module_frame ? "module" : "elsewhere";
            $count{"$kind ($where)"}++;
            push @shown, "--- $file\n$report" if $where eq "module" && @shown < 5;
        }
    }
    print "$_: $count{$_}\n" for sort keys %count;
    print "no sanitizer report\n" unless %count;
    print "\n$_\n" for @shown;
    exit((grep { /\(module\)$/ } keys %count) ? 1 : 0);
' "$sources" "$reports"/sanitizer.* && module_reports=0 || module_reports=$?

crashes=$(grep -c 'exit signal' "$src/t/logs/error_log" 2>/dev/null || true)
echo "child processes killed by a signal: ${crashes:-0}"
echo "build log, suite log, reports and error_log: $work"

# A process that cannot open its report file writes "Can't open file" and
# the report to stderr, which httpd sends to error_log.
if grep "Can't open file: $reports/" "$src/t/logs/error_log" >/dev/null 2>&1; then
    echo "sanitize-suite: FAIL: some processes could not write to $reports;" \
        "see $src/t/logs/error_log" >&2
    exit 2
fi

if [ "$module_reports" -ne 0 ]; then
    echo "sanitize-suite: FAIL: sanitizer reports name the module" >&2
    exit 1
fi
if [ "$suite_status" -ne 0 ]; then
    echo "sanitize-suite: FAIL: t/TEST exited with status $suite_status" >&2
    exit 2
fi
echo "sanitize-suite: PASS: suite passed, no sanitizer report names the module"
