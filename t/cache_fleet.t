# Two httpd instances of their own (one child process each) share their
# JWKS and refresh state through a memcached, then through a redis-server,
# both started by this test on 127.0.0.1 (TeleportCache memcache:... and
# redis:...; TeleportJWKSMaxAge 2, TeleportJWKSMinRefresh 1):
#   - keys fetched by one instance serve the other without a fetch;
#   - the forced-refresh rate limit holds across instances;
#   - with the cache server stopped, both keep serving with the keys each
#     process holds, and once those are older than TeleportJWKSMaxAge each
#     instance fetches for itself, logs it, and still keeps to the rate
#     limit.
# The JWKS scenario is created after the instances start, so their startup
# fetch finds nothing and the first request makes the first fetch.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Digest::SHA qw(sha256);
use LWP::UserAgent ();
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v16 b64url);
use Teleport::CacheTest qw(create_scenario scenario_url count_lines sleep_until
    with_kid start_memcached start_redis start_httpd stop_process);

use constant MAX_AGE     => 2;
use constant MIN_REFRESH => 1;

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));
my $agent = LWP::UserAgent->new(timeout => 20, keep_alive => 0);
my $unknown = 0;

sub unknown_kid_token {
    $unknown++;
    return with_kid($token, b64url(sha256("fleet-$unknown-" . rand())));
}

sub log_lines {
    my ($instance, $offset) = @_;
    open my $fh, '<', $instance->{error_log} or return ();
    seek $fh, $offset, 0;
    my @lines = <$fh>;
    chomp @lines;
    return @lines;
}

# Send $token to /app/ on $instance and check the status, the user and the
# JWKS requests of the scenario that the request caused.  Returns the
# instance's new error_log lines.
sub check_request {
    my ($case, $instance, $scenario, $token_sent, $status, $fetches, $todo) = @_;
    my $hits = jwks_hits($scenario);
    my $offset = -s $instance->{error_log} // 0;
    my $response = $agent->get("$instance->{url}/app/ok.txt",
        'Teleport-Jwt-Assertion' => $token_sent);
    my @log = log_lines($instance, $offset);
    my $got = jwks_hits($scenario) - $hits;
    note("$case: got " . $response->code . " and $got JWKS requests; expected $status and $fetches");
    my $ok = is($response->code, $status, "$case: status");
    if ($status == 200) {
        $ok &= is($response->header('X-Remote-User'), 'alice', "$case: user");
    }
    else {
        $ok &= is(count_lines(\@log, 'token rejected: reason=unknown_kid'), 1,
            "$case: unknown_kid logged");
    }
    {
        local $TODO = $todo;
        $ok &= is($got, $fetches, "$case: JWKS requests");
    }
    unless ($ok) {
        diag("$case: error_log: $_") for @log;
    }
    return @log;
}

for my $provider (qw(memcache redis)) {
    my $cache = $provider eq 'memcache' ? start_memcached() : start_redis();
    my $name = "cache-fleet-$provider";
    my $url = scenario_url($name);
    my %instance;
    for my $which (qw(a b)) {
        $instance{$which} = start_httpd(
            name       => "$provider-$which",
            scenario   => $name,
            cache      => "$provider:127.0.0.1:$cache->{port}",
            directives => [ 'TeleportJWKSMaxAge ' . MAX_AGE,
                            'TeleportJWKSMinRefresh ' . MIN_REFRESH,
                            'TeleportFetchTimeout 2' ],
        );
    }
    my ($first, $second) = @instance{qw(a b)};
    create_scenario($name, jwks_v16($key));

    # memcached reads an expiry above 30 days as a Unix time; the module
    # keeps its entries' lifetimes at 30 days at most, so both providers
    # share the keys and the rate limit.
    my $todo;

    my @log = check_request("$provider: instance A fetches", $first, $name, $token, 200, 1);
    is(count_lines(\@log, "TLP012: fetched ", " usable keys from $url"), 1,
        "$provider: instance A logs its fetch");
    @log = check_request("$provider: instance B uses the keys A fetched", $second, $name, $token,
        200, 0, $todo);
    {
        local $TODO = $todo;
        is(count_lines(\@log, 'TLP012: '), 0, "$provider: instance B logs no fetch");
    }

    check_request("$provider: unknown kid at A forces a refresh", $first, $name,
        unknown_kid_token(), 401, 1);
    my $refreshed_at = Time::HiRes::time();
    check_request("$provider: unknown kid at B within the shared rate limit", $second, $name,
        unknown_kid_token(), 401, 0, $todo);

    # The cache server goes away.
    stop_process($cache->{pid});
    check_request("$provider: cache stopped, A serves its keys", $first, $name, $token, 200, 0);
    check_request("$provider: cache stopped, B serves its keys", $second, $name, $token, 200, 0);

    # Past TeleportJWKSMaxAge each instance refreshes by itself.
    sleep_until($refreshed_at + MAX_AGE + 0.3);
    for my $which (qw(a b)) {
        my $case = "$provider: cache stopped, keys of " . uc($which) . ' past max age';
        @log = check_request($case, $instance{$which}, $name, $token, 200, 1);
        is(count_lines(\@log, "TLP012: fetched ", " usable keys from $url"), 1,
            "$case: fetch logged");
        ok(count_lines(\@log, 'TLP006: ') + count_lines(\@log, 'TLP011: ') >= 1,
            "$case: failure to store in the socache logged");
        check_request("$case: fresh keys again", $instance{$which}, $name, $token, 200, 0);
    }
    for my $which (qw(a b)) {
        my $case = "$provider: cache stopped, unknown kid at " . uc($which);
        check_request("$case: first", $instance{$which}, $name, unknown_kid_token(), 401, 1);
        check_request("$case: second, rate limited", $instance{$which}, $name,
            unknown_kid_token(), 401, 0);
        check_request("$case: valid token", $instance{$which}, $name, $token, 200, 0);
    }
    stop_process($_->{pid}) for $first, $second;
}

done_testing();
