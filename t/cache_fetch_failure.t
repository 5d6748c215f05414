# Every kind of JWKS fetch failure, counted per attempt.  Each location
# (TeleportFetchTimeout 1, TeleportJWKSMinRefresh 2) goes through four
# phases, all locations in step:
#   A  endpoint broken, no keys fetched yet: 503 with Retry-After, one
#      attempt and one TLP010 line naming the URL and the reason; a second
#      request within the rate limit makes no attempt;
#   B  endpoint fixed, 2 s later: 200, one fetch;
#   C  endpoint broken again: a token of a key the JWKS lacks forces one
#      attempt, which fails; tokens of the fetched key keep getting 200;
#   D  endpoint fixed with the new key added, 2 s later: the new key's
#      token gets 200 after one fetch.
# The TLS failures are served by servers of this test that switch their
# certificate; the refused connection goes to a port where nothing listens.
# A JWKS with some unusable entries is used with a TLP016 warning per
# fetch.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id jwk jwks_v16);
use Teleport::CacheTest qw(
    reserved_port port_is_closed create_scenario scenario_url lines_with
    count_lines sleep_until make_test_certificates start_tls_server
);

# TeleportJWKSMinRefresh of the locations, in seconds.
use constant MIN_REFRESH => 2;
# Largest JWKS document the module accepts, in bytes.
use constant MAX_DOCUMENT => 64 * 1024;

my $json = JSON->new->utf8->canonical;
my $key = test_key('rsa-main');
my $next = test_key('rsa-next');
my $weak = test_key('rsa-weak');
my $token = mint(key => $key, kid => key_id($key));
my $next_token = mint(key => $next, kid => key_id($next));
my $first_jwks = jwks_v16($key);
my $second_jwks = jwks_v16($key, $next);

# A JWKS padded with spaces to exactly $size bytes.
sub padded {
    my ($jwks, $size) = @_;
    my $text = $json->encode($jwks);
    die "JWKS longer than $size bytes\n" if length $text > $size;
    return $text . (' ' x ($size - length $text));
}

my $state = state_dir();
my %certificates = make_test_certificates("$state/cache-certificates");
my %tls_server;

# Kinds of failure.  kind is "http" (the suite's JWKS server answers, with
# the control files in control), "tls" (a server of this test presents
# certificate) or "refused" (nothing listens on port).  reason is what the
# TLP010 line must say.
my @modes = (
    { scenario => 'cache-refused', kind => 'refused',
      port => reserved_port('TELEPORT_CACHE_REFUSED_PORT'),
      reason => qr/Couldn't connect to server/ },
    { scenario => 'cache-timeout', kind => 'http',
      control => { delay => "2\n" },
      reason => qr/Timeout was reached \(.*timed out after 1\d{3} milliseconds/ },
    { scenario => 'cache-unknown-ca', kind => 'tls', certificate => 'unknown-ca',
      port => reserved_port('TELEPORT_CACHE_UNKNOWN_CA_PORT'),
      reason => qr/unable to get local issuer certificate/ },
    { scenario => 'cache-wrong-host', kind => 'tls', certificate => 'wrong-host',
      port => reserved_port('TELEPORT_CACHE_WRONG_HOST_PORT'),
      reason => qr/no alternative certificate subject name matches target host name '127\.0\.0\.1'/ },
    { scenario => 'cache-expired', kind => 'tls', certificate => 'expired',
      port => reserved_port('TELEPORT_CACHE_EXPIRED_PORT'),
      reason => qr/certificate has expired/ },
    { scenario => 'cache-status', kind => 'http',
      control => { status => "502\n" },
      reason => qr/HTTP status 502/ },
    { scenario => 'cache-not-json', kind => 'http',
      control => { body => "<html>maintenance</html>\n" },
      reason => qr/bad_jwks: JWKS: / },
    { scenario => 'cache-no-keys-member', kind => 'http',
      control => { body => qq({"issuer":"teleport.example.com","jwks":[]}\n) },
      reason => qr/bad_jwks: JWKS has no "keys" array/ },
    { scenario => 'cache-too-large', kind => 'http',
      control => { body => padded($first_jwks, MAX_DOCUMENT + 1) },
      reason => qr/body larger than 65536 bytes/ },
    { scenario => 'cache-unusable', kind => 'http',
      control => { body => $json->encode({ keys => [
          jwk($weak),
          { kty => 'oct', kid => 'shared-secret', k => 'c2VjcmV0LXNlY3JldC1zZWNyZXQ' },
      ] }) },
      reason => qr/no_usable_keys: JWKS contains no usable key/ },
);

for my $mode (@modes) {
    my $name = $mode->{scenario};
    $mode->{url} = scenario_url($name, $mode->{port});
    create_scenario($name, $first_jwks, %{ $mode->{control} || {} });
    if ($mode->{kind} eq 'tls') {
        $tls_server{$name} = start_tls_server(
            port => $mode->{port}, certificates => \%certificates,
            control => "$state/jwks/$name", certificate => $mode->{certificate});
    }
}

my $refused_port = reserved_port('TELEPORT_CACHE_REFUSED_PORT');
# Requests for the refused-connection case must not reach a program that
# took the port after httpd started.
ok(port_is_closed($refused_port), "port $refused_port on 127.0.0.1 refuses connections")
    or die "port $refused_port on 127.0.0.1 is in use; stopping before any request\n";

sub break_endpoint {
    my ($mode) = @_;
    my $name = $mode->{scenario};
    if ($mode->{kind} eq 'refused') {
        if (my $server = delete $tls_server{$name}) {
            $server->stop;
        }
        port_is_closed($mode->{port})
            or die "port $mode->{port} on 127.0.0.1 is in use; stopping before any request\n";
    }
    elsif ($mode->{kind} eq 'tls') {
        $tls_server{$name}->set_certificate($mode->{certificate});
    }
    else {
        my $control = $mode->{control};
        set_jwks_control($name, $_, $control->{$_}) for sort keys %$control;
    }
    return;
}

sub fix_endpoint {
    my ($mode, $jwks) = @_;
    my $name = $mode->{scenario};
    write_scenario_jwks($name, $jwks);
    if ($mode->{kind} eq 'refused') {
        $tls_server{$name} = start_tls_server(
            port => $mode->{port}, certificates => \%certificates,
            control => "$state/jwks/$name", certificate => 'good');
    }
    elsif ($mode->{kind} eq 'tls') {
        $tls_server{$name}->set_certificate('good');
    }
    elsif ($name eq 'cache-too-large') {
        # The largest document accepted.
        set_jwks_control($name, 'body', padded($jwks, MAX_DOCUMENT));
    }
    else {
        remove_jwks_control($name, $_) for sort keys %{ $mode->{control} };
    }
    return;
}

# Requests the endpoint received: HTTP requests for every kind, and TCP
# connections for the servers of this test.
sub counters {
    my ($mode) = @_;
    my $name = $mode->{scenario};
    my $server = $tls_server{$name};
    return {
        requests    => jwks_hits($name),
        connections => $server ? $server->connections : 0,
    };
}

# Check what reached the endpoint since $before, and the TLP010 lines.
sub check_attempts {
    my ($case, $mode, $before, $log, %expected) = @_;
    my $now = counters($mode);
    for my $counter (qw(requests connections)) {
        next unless defined $expected{$counter};
        my $got = $now->{$counter} - $before->{$counter};
        note("$case: got $got JWKS $counter, expected $expected{$counter}");
        is($got, $expected{$counter}, "$case: JWKS $counter");
    }
    my @failures = lines_with($log, 'TLP010: JWKS fetch from ' . $mode->{url} . ' failed: ');
    unless (is(scalar @failures, $expected{failures}, "$case: TLP010 lines")) {
        diag("$case: error_log: $_") for @$log;
    }
    like($_, $mode->{reason}, "$case: TLP010 names the reason") for @failures;
    return;
}

# What one failed attempt leaves at each kind of endpoint.
sub failed_attempt {
    my ($mode) = @_;
    return (requests => 0, connections => 1, failures => 1) if $mode->{kind} eq 'tls';
    return (requests => 0, failures => 1) if $mode->{kind} eq 'refused';
    return (requests => 1, failures => 1);
}

# What one successful fetch leaves.
sub good_fetch {
    my ($mode) = @_;
    return (requests => 1, connections => 1, failures => 0) if $tls_server{ $mode->{scenario} };
    return (requests => 1, failures => 0);
}

sub check_retry_after {
    my ($case, $response) = @_;
    my $seconds = $response->header('Retry-After') // '';
    ok($seconds =~ /^\d+$/ && $seconds >= 1 && $seconds <= MIN_REFRESH,
        "$case: Retry-After $seconds within 1 .. " . MIN_REFRESH . ' s');
    return;
}

sub path_of {
    my ($mode) = @_;
    return "/$mode->{scenario}/env";
}

# Phase A: no keys were ever fetched.
my $last_attempt = 0;
for my $mode (@modes) {
    my $case = "$mode->{scenario} without keys";
    my $before = counters($mode);
    my $offset = error_log_offset();
    my $response = expect_unavailable("$case: first request", path => path_of($mode), token => $token);
    $last_attempt = Time::HiRes::time();
    check_retry_after("$case: first request", $response);
    check_attempts("$case: first request", $mode, $before, [ error_log_since($offset) ],
        failed_attempt($mode));

    $before = counters($mode);
    $offset = error_log_offset();
    $response = expect_unavailable("$case: within the rate limit", path => path_of($mode), token => $token);
    check_retry_after("$case: within the rate limit", $response);
    check_attempts("$case: within the rate limit", $mode, $before, [ error_log_since($offset) ],
        requests => 0, connections => 0, failures => 0);
}
ok(port_is_closed($refused_port), "port $refused_port still refuses connections after phase A");

# Phase B: the endpoints work again.
sleep_until($last_attempt + MIN_REFRESH + 0.2);
for my $mode (@modes) {
    my $case = "$mode->{scenario} fixed";
    fix_endpoint($mode, $first_jwks);
    my $before = counters($mode);
    my $offset = error_log_offset();
    expect_accepted($case, path => path_of($mode), token => $token);
    check_attempts($case, $mode, $before, [ error_log_since($offset) ], good_fetch($mode));
}

# Phase C: broken again while keys are cached.
for my $mode (@modes) {
    my $case = "$mode->{scenario} with keys";
    break_endpoint($mode);
    my $before = counters($mode);
    my $offset = error_log_offset();
    expect_accepted("$case: cached key", path => path_of($mode), token => $token);
    check_attempts("$case: cached key", $mode, $before, [ error_log_since($offset) ],
        requests => 0, connections => 0, failures => 0);

    $before = counters($mode);
    $offset = error_log_offset();
    expect_rejected("$case: key the cache lacks", path => path_of($mode),
        token => $next_token, reason => 'unknown_kid');
    $last_attempt = Time::HiRes::time();
    check_attempts("$case: key the cache lacks", $mode, $before,
        [ error_log_since($offset) ], failed_attempt($mode));

    $before = counters($mode);
    $offset = error_log_offset();
    expect_accepted("$case: cached key after the failed refresh", path => path_of($mode), token => $token);
    check_attempts("$case: cached key after the failed refresh", $mode, $before,
        [ error_log_since($offset) ], requests => 0, connections => 0, failures => 0);
}
ok(port_is_closed($refused_port), "port $refused_port refuses connections again in phase C");

# Phase D: fixed, with the new key listed.
sleep_until($last_attempt + MIN_REFRESH + 0.2);
for my $mode (@modes) {
    my $case = "$mode->{scenario} fixed with a new key";
    fix_endpoint($mode, $second_jwks);
    my $before = counters($mode);
    my $offset = error_log_offset();
    expect_accepted("$case: new key", path => path_of($mode), token => $next_token);
    check_attempts("$case: new key", $mode, $before, [ error_log_since($offset) ], good_fetch($mode));
    expect_accepted("$case: first key", path => path_of($mode), token => $token);
}

# A JWKS whose first entry is unusable: the usable key verifies, and each
# fetch logs one TLP016 warning.
{
    my $name = 'cache-partly-unusable';
    my $url = scenario_url($name);
    create_scenario($name, { keys => [ jwk($weak), jwk($key), jwk($key, '') ] });

    my $offset = error_log_offset();
    expect_accepted("$name: usable key", path => "/$name/env", token => $token);
    my @log = error_log_since($offset);
    is(jwks_hits($name), 1, "$name: one fetch");
    my @skips = lines_with(\@log, "TLP016: JWKS from $url: skipped 1 unusable key(s)");
    unless (is(scalar @skips, 1, "$name: one TLP016 line for the fetch")) {
        diag("$name: error_log: $_") for @log;
    }
    like($skips[0] // '', qr/\[auth_teleport:warn\].*the first because JWKS keys\[0\] skipped: /,
        "$name: TLP016 at warn names the skipped entry");

    $offset = error_log_offset();
    expect_rejected("$name: token of the skipped key", path => "/$name/env",
        token => mint(key => $weak, kid => key_id($weak)), reason => 'unknown_kid');
    @log = error_log_since($offset);
    is(jwks_hits($name), 2, "$name: the unknown kid forced a second fetch");
    is(count_lines(\@log, "TLP016: JWKS from $url: "), 1, "$name: one TLP016 line for the second fetch");

    $offset = error_log_offset();
    expect_accepted("$name: usable key again", path => "/$name/env", token => $token);
    @log = error_log_since($offset);
    is(jwks_hits($name), 2, "$name: no fetch for a cached key");
    is(count_lines(\@log, 'TLP016: '), 0, "$name: no TLP016 line without a fetch");
}

$_->stop for values %tls_server;
done_testing();
