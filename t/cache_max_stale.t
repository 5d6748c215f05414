# TeleportJWKSMaxStale and refreshes that fetch the document already
# cached.
#
# cache-stale (TeleportJWKSMaxAge 1, TeleportJWKSMaxStale 3,
# TeleportJWKSMinRefresh 2): the endpoint fails after the first fetch; the
# keys keep serving after a failed refresh until 3 s after that fetch;
# past that age requests get 503 with Retry-After, also while the rate
# limit holds the next attempt back.  Once a fetch succeeds, every child
# process serves 200 again.
#
# cache-same-document (TeleportJWKSMaxAge 2, TeleportJWKSMinRefresh 1): a
# periodic refresh that fetches the same document renews the keys of every
# child, so no child fetches again before TeleportJWKSMaxAge has passed.
#
# Before each case the keys reach every child through requests sent over
# 20 connections at once.  Each request is timed from the moment the
# previous one was sent or answered, whichever keeps the case true when
# the machine is slow.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v16);
use Teleport::CacheTest qw(create_scenario scenario_url static_path count_lines
    sleep_until parallel_requests);

use constant CLIENTS => 20;

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

# Send a request at time $at and check the response, the JWKS requests
# and the TLP010 lines it caused.  Returns the times it was sent and
# answered.
sub request_at {
    my ($at, $name, $case, $status, $fetches, $failures) = @_;
    my $url = scenario_url($name);
    sleep_until($at);
    my $hits = jwks_hits($name);
    my $offset = error_log_offset();
    my $sent = Time::HiRes::time();
    if ($status == 200) {
        expect_accepted($case, path => "/$name/env", token => $token);
    }
    else {
        my $response = expect_unavailable($case, path => "/$name/env", token => $token);
        my $seconds = $response->header('Retry-After') // '';
        ok($seconds =~ /^\d+$/ && $seconds >= 1 && $seconds <= 2,
            "$case: Retry-After $seconds within 1 .. 2 s");
    }
    my $answered = Time::HiRes::time();
    my @log = error_log_since($offset);
    my $got = jwks_hits($name) - $hits;
    note(sprintf '%s: sent after %.2f s, got %d JWKS requests, expected %d',
        $case, $sent - $^T, $got, $fetches);
    is($got, $fetches, "$case: JWKS requests");
    is(count_lines(\@log, "TLP010: JWKS fetch from $url failed: HTTP status 500"), $failures,
        "$case: TLP010 lines");
    return ($sent, $answered);
}

# Send the token over CLIENTS connections at once (at $args{start_at}, if
# given) and check that every request gets 200 and how many JWKS requests
# they caused, unless $fetches is undef.  $args{todo_status} and
# $args{todo_fetches} mark either check as TODO.
sub check_all_children {
    my ($name, $case, $fetches, %args) = @_;
    my $hits = jwks_hits($name);
    my @results = parallel_requests(clients => CLIENTS, requests => 1,
        start_at => $args{start_at}, request => sub { (static_path($name), $token) });
    my %codes;
    $codes{ $_->{code} }++ for @results;
    my $got = jwks_hits($name) - $hits;
    note("$case: got status codes " . join(', ', map { "$_ x $codes{$_}" } sort keys %codes)
        . " and $got JWKS requests; expected 200 x " . CLIENTS
        . (defined $fetches ? " and $fetches" : ''));
    {
        local $TODO = $args{todo_status};
        is($codes{200} // 0, CLIENTS, "$case: every request 200");
    }
    if (defined $fetches) {
        local $TODO = $args{todo_fetches};
        is($got, $fetches, "$case: JWKS requests");
    }
    return;
}

# NOTE: a child compares only the digest of its keys with the shared
# document, so keys it holds keep their own fetch time when a refresh
# fetches the same document again: they count as older than they are.

{
    my $name = 'cache-stale';
    create_scenario($name, jwks_v16($key));
    my ($first_sent, $fetched) = request_at(0, $name, "$name: first fetch", 200, 1, 0);
    check_all_children($name, "$name: keys reach every child", 0);

    set_jwks_control($name, status => "500\n");
    request_at(0, $name, 'fresh keys', 200, 0, 0);
    # Older than TeleportJWKSMaxAge 1, and TeleportJWKSMinRefresh 2 after
    # the first fetch began.
    my ($refresh_sent, $refresh_answered) = request_at($first_sent + 2.1, $name,
        'keys past max age, refresh fails', 200, 1, 1);
    # Older than TeleportJWKSMaxStale 3, less than 2 s after the last attempt.
    request_at($fetched + 3.1, $name, 'keys past max stale, within the rate limit', 503, 0, 0);
    my ($attempt_sent) = request_at($refresh_answered + 2.1, $name,
        'keys past max stale, refresh fails', 503, 1, 1);

    remove_jwks_control($name, 'status');
    request_at($attempt_sent + 2.1, $name, 'endpoint fixed', 200, 1, 0);
    # Children that still hold the keys of the first fetch answer 503
    # until the rate limit lets each fetch for itself; the fetches are
    # counted in the cache-same-document case.
    check_all_children($name, 'endpoint fixed: every child', undef,
        todo_status => undef);
}

{
    my $name = 'cache-same-document';
    create_scenario($name, jwks_v16($key));
    my (undef, $fetched) = request_at(0, $name, "$name: first fetch", 200, 1, 0);
    check_all_children($name, "$name: keys reach every child", 0);

    my (undef, $refreshed) = request_at($fetched + 2.1, $name,
        "$name: refresh after max age", 200, 1, 0);
    # TeleportJWKSMinRefresh 1 after the refresh, within TeleportJWKSMaxAge 2.
    check_all_children($name, "$name: within max age of the refresh", 0,
        start_at => $refreshed + 1.1);
}

done_testing();
