# A child process killed with SIGKILL in the middle of a JWKS fetch never
# records the fetch's success or failure in the shared cache.  The fetch's
# "attempted" mark stops counting as a running fetch once
# TeleportFetchTimeout has passed, so the location recovers by itself.
#
# An httpd instance of this test (two child processes, TeleportFetchTimeout
# 2, TeleportJWKSMinRefresh 0) fetches from a JWKS scenario created after
# the instance starts, so its startup fetch finds nothing (HTTP 404, not
# counted as a hit).  The endpoint delays its answer longer than the fetch
# timeout while request A makes the first fetch; the child that holds the
# connection to the JWKS server is killed with SIGKILL and the delay is
# removed.  Then:
#   - request B, sent at once, waits at most the fetch timeout + 1 s, gets
#     503 (no keys) and makes no fetch;
#   - request C, sent once the fetch timeout has passed since the killed
#     fetch began, gets 200 within the fetch timeout + 2 s of the kill and
#     makes exactly one fetch;
#   - request D then gets 200 without a fetch, and a token with a broken
#     signature gets 401 without a fetch.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use LWP::UserAgent ();
use POSIX ();
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v16 write_file);
use Teleport::CacheTest qw(create_scenario count_lines sleep_until start_httpd
    stop_process);

use constant FETCH_TIMEOUT => 2;
use constant SLOW_DELAY    => 6;   # seconds the endpoint waits at first
use constant CLIENT_LIMIT  => 15;  # alarm of the forked client of request A

my $name = 'cache-killed-fetch';
my $jwks_port = $ENV{TELEPORT_TEST_JWKS_PORT};
my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));
my $agent = LWP::UserAgent->new(timeout => 10, keep_alive => 0);

# The forked client of request A, stopped by its pid if the test ends early.
my $client_pid;
my $test_pid = $$;
END {
    if ($$ == $test_pid && $client_pid) {
        local $?;
        kill 'KILL', $client_pid;
        waitpid $client_pid, 0;
    }
}

sub log_lines {
    my ($instance, $offset) = @_;
    open my $fh, '<', $instance->{error_log} or return ();
    seek $fh, $offset, 0;
    my @lines = <$fh>;
    chomp @lines;
    return @lines;
}

# Wait until $ready returns true, at most $seconds; returns its last value.
sub wait_until {
    my ($seconds, $ready) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    while (1) {
        my $value = $ready->();
        return $value if $value || Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# Pids of the processes whose parent is $parent, from /proc.
sub child_pids {
    my ($parent) = @_;
    my @children;
    opendir my $proc, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $proc) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = <$fh> // next;
        # The command name is in parentheses and may hold spaces.
        my ($ppid) = $stat =~ /\)\s+\S+\s+(\d+)/ or next;
        push @children, 0 + $pid if $ppid == $parent;
    }
    closedir $proc;
    return sort { $a <=> $b } @children;
}

# Socket inodes of established TCP connections to 127.0.0.1:$port.
sub inodes_connected_to {
    my ($port) = @_;
    my %inodes;
    open my $fh, '<', '/proc/net/tcp' or return {};
    <$fh>;
    while (my $line = <$fh>) {
        my @fields = split ' ', $line;
        my ($host, $remote_port) = split /:/, $fields[2];
        next unless $host eq '0100007F' && hex($remote_port) == $port;
        next unless $fields[3] eq '01';
        $inodes{ $fields[9] } = 1;
    }
    return \%inodes;
}

# The child processes of $parent that hold a connection to the JWKS server.
sub children_fetching {
    my ($parent) = @_;
    my $inodes = inodes_connected_to($jwks_port);
    my @fetching;
    for my $pid (child_pids($parent)) {
        opendir my $fds, "/proc/$pid/fd" or next;
        for my $fd (readdir $fds) {
            my $target = readlink "/proc/$pid/fd/$fd" // next;
            if ($target =~ /^socket:\[(\d+)\]$/ && $inodes->{$1}) {
                push @fetching, $pid;
                last;
            }
        }
        closedir $fds;
    }
    return @fetching;
}

# Send $token_sent to /app/ok.txt; returns the response and its seconds.
sub timed_request {
    my ($instance, $token_sent) = @_;
    my $started = Time::HiRes::time();
    my $response = $agent->get("$instance->{url}/app/ok.txt",
        'Teleport-Jwt-Assertion' => $token_sent);
    return ($response, Time::HiRes::time() - $started);
}

my $httpd = start_httpd(
    name          => 'killed-fetch',
    scenario      => $name,
    processes     => 2,
    max_processes => 3,
    directives    => [ 'TeleportFetchTimeout ' . FETCH_TIMEOUT,
                       'TeleportJWKSMinRefresh 0' ],
);
create_scenario($name, jwks_v16($key), delay => SLOW_DELAY . "\n");
is(jwks_hits($name), 0, 'startup fetch made before the scenario existed: no hits');
my $offset = -s $httpd->{error_log} // 0;

# Request A, from a forked client bounded by an alarm.
my $result_file = state_dir() . "/cache-killed-fetch-client-$$";
unlink $result_file;
my $sent_a = Time::HiRes::time();
$client_pid = fork // die "fork failed: $!";
if ($client_pid == 0) {
    alarm CLIENT_LIMIT;
    my $client = LWP::UserAgent->new(timeout => CLIENT_LIMIT - 2, keep_alive => 0);
    my $response = $client->get("$httpd->{url}/app/ok.txt",
        'Teleport-Jwt-Assertion' => $token);
    write_file($result_file, $response->code . "\n", 0644);
    POSIX::_exit(0);
}

# The fetch of request A has reached the JWKS server and hangs there.
ok(wait_until(5, sub { jwks_hits($name) >= 1 }), 'request A started a fetch');
my @fetching;
wait_until(1, sub { @fetching = children_fetching($httpd->{pid}) });
is(scalar @fetching, 1, 'one child holds a connection to the JWKS server')
    or diag('children: ' . join(' ', child_pids($httpd->{pid}))
            . '; holding a JWKS connection: ' . join(' ', @fetching));
# Only a current child process of this test's httpd is signalled.
my %is_child = map { $_ => 1 } child_pids($httpd->{pid});
my @killed = grep { $_ > 1 && $_ != $httpd->{pid} && $is_child{$_} } @fetching;
kill 'KILL', @killed if @killed;
my $killed_at = Time::HiRes::time();
remove_jwks_control($name, 'delay');
my $since_a = $killed_at - $sent_a;
note(sprintf 'killed child %s %.2f s after request A was sent',
    join(' ', @killed) || 'none', $since_a);
ok(@killed && $since_a < FETCH_TIMEOUT - 0.5,
    'child killed while its fetch was running');
is(count_lines([ log_lines($httpd, $offset) ], 'TLP010: '), 0,
    'no fetch failure recorded before the kill');

# Request A's connection died with its child.
my $a_done = wait_until(CLIENT_LIMIT + 2,
    sub { waitpid($client_pid, POSIX::WNOHANG()) == $client_pid });
ok($a_done, 'client of request A finished');
$client_pid = undef if $a_done;
my $code_a = do { open my $fh, '<', $result_file; my $line = $fh ? <$fh> : undef; $line };
chomp $code_a if defined $code_a;
unlink $result_file;
note('request A: ' . ($code_a // 'no result'));
isnt($code_a // '', '200', 'request A got no 200');

# Request B, at once: the killed fetch still counts as running.
my $hits = jwks_hits($name);
my ($response, $seconds) = timed_request($httpd, $token);
note(sprintf 'request B: %s after %.2f s', $response->code, $seconds);
is($response->code, 503, 'request B right after the kill: 503, no keys yet');
ok($seconds <= FETCH_TIMEOUT + 1,
    sprintf 'request B waited at most the fetch timeout + 1 s (%.2f s)', $seconds);
is(jwks_hits($name) - $hits, 0, 'request B made no fetch');

# Request C, once the fetch timeout has passed since the killed fetch began
# (it began before its hit was counted, so before $killed_at).
sleep_until($killed_at + FETCH_TIMEOUT + 0.2);
$hits = jwks_hits($name);
my $offset_c = -s $httpd->{error_log} // 0;
($response, $seconds) = timed_request($httpd, $token);
my $after_kill = Time::HiRes::time() - $killed_at;
my @log = log_lines($httpd, $offset_c);
note(sprintf 'request C: %s after %.2f s, %.2f s after the kill',
    $response->code, $seconds, $after_kill);
is($response->code, 200, 'request C after the fetch timeout: 200');
is($response->header('X-Remote-User'), 'alice', 'request C: user');
is(jwks_hits($name) - $hits, 1, 'request C made exactly one fetch');
ok($after_kill <= FETCH_TIMEOUT + 2,
    sprintf 'request C answered within the fetch timeout + 2 s of the kill (%.2f s)',
    $after_kill);
is(count_lines(\@log, 'TLP012: fetched ', ' usable keys from '), 1,
    'request C: fetch logged')
    or diag(join "\n", map { "error_log: $_" } @log);

# The keys stay: no more fetches.
$hits = jwks_hits($name);
($response) = timed_request($httpd, $token);
is($response->code, 200, 'request D: 200');
is(jwks_hits($name) - $hits, 0, 'request D made no fetch');

# A token with a broken signature and a known key id.
my ($head, $payload, $signature) = split /\./, $token;
substr($signature, 10, 1) = substr($signature, 10, 1) eq 'A' ? 'B' : 'A';
$hits = jwks_hits($name);
($response) = timed_request($httpd, "$head.$payload.$signature");
is($response->code, 401, 'broken signature: 401');
is(jwks_hits($name) - $hits, 0, 'broken signature made no fetch');

# The parent replaced the killed child and still runs.
ok(wait_until(5, sub { !grep { -e "/proc/$_" } @killed }), 'killed child reaped');
ok(kill(0, $httpd->{pid}), 'httpd parent still running');

stop_process($httpd->{pid});
done_testing();
