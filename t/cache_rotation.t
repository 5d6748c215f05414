# A JWT CA rotation (tctl auth rotate --type=jwt) through Teleport's
# phases, seen by a location with TeleportJWKSMaxAge 6 and
# TeleportJWKSMinRefresh 2 whose requests reach several child processes:
#   standby before: the old key signs, the JWKS lists it alone;
#   init: the old key signs, the JWKS lists old and new;
#   update_clients and update_servers: the new key signs, the JWKS lists
#     new and old;
#   standby after: the new key signs, the JWKS lists it alone.
# Tokens of both keys verify while both are listed; the first tokens of the
# new key, sent to many children at once, cause one fetch in total; once a
# refreshed JWKS lacks the old key, its tokens are rejected as unknown_kid
# by every child.  Each change of the key set logs one TLP015 notice with
# the key ids added and removed.  With a grace period of 0 the JWKS
# swaps the old key for the new one at once, and the first token of the
# new key is accepted after one fetch, with and without kid.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v14 jwks_v16);
use Teleport::CacheTest qw(create_scenario scenario_url static_path lines_with
    parallel_requests sleep_until);

# TeleportJWKSMaxAge of cache-rotation.  The phases up to update_servers
# must end before the keys of the first fetch are that old: a child that
# still holds them and compared them with the shared ones less than a
# second before would fetch again (see cache_max_stale.t).
use constant MAX_AGE     => 6;
use constant MIN_REFRESH => 2;
use constant CLIENTS     => 20;
# How long a child keeps its keys without comparing them with the shared
# ones, in seconds, plus a margin.
use constant SHARED_CHECK => 1.2;

my $old = test_key('rsa-main');
my $new = test_key('rsa-next');
my $old_kid = key_id($old);
my $new_kid = key_id($new);
my $old_token = mint(key => $old, kid => $old_kid);
my $new_token = mint(key => $new, kid => $new_kid);

# Send $token from CLIENTS connections at once; check every status and,
# for 401, the reason; check the JWKS requests they caused.
sub check_parallel {
    my ($case, $name, $token, $status, $reason, $fetches) = @_;
    my $path = static_path($name);
    my $hits = jwks_hits($name);
    my $offset = error_log_offset();
    my @results = parallel_requests(clients => CLIENTS, requests => 1,
        request => sub { ($path, $token) });
    my @log = error_log_since($offset);
    my %codes;
    $codes{ $_->{code} }++ for @results;
    my $got = jwks_hits($name) - $hits;
    note("$case: got status codes " . join(', ', map { "$_ x $codes{$_}" } sort keys %codes)
        . " and $got JWKS requests; expected $status x " . CLIENTS . " and $fetches");
    is($codes{$status} // 0, CLIENTS, "$case: every request $status");
    if (defined $reason) {
        is(scalar lines_with(\@log, "token rejected: reason=$reason", "uri=$path"), CLIENTS,
            "$case: every rejection $reason");
    }
    is($got, $fetches, "$case: JWKS requests");
    return @log;
}

# Send $token CLIENTS times, one request after the other, each over a new
# connection, so that the requests reach several children but never run
# at the same time in one child; check every status and reason and the
# JWKS requests they caused.
sub check_sequential {
    my ($case, $name, $token, $status, $reason, $fetches) = @_;
    my $path = static_path($name);
    my $hits = jwks_hits($name);
    my $offset = error_log_offset();
    my %codes;
    $codes{ send_request(path => $path, token => $token)->code }++ for 1 .. CLIENTS;
    my @log = error_log_since($offset);
    my $got = jwks_hits($name) - $hits;
    note("$case: got status codes " . join(', ', map { "$_ x $codes{$_}" } sort keys %codes)
        . " and $got JWKS requests; expected $status x " . CLIENTS . " and $fetches");
    is($codes{$status} // 0, CLIENTS, "$case: every request $status");
    is(scalar lines_with(\@log, "token rejected: reason=$reason", "uri=$path"), CLIENTS,
        "$case: every rejection $reason");
    is($got, $fetches, "$case: JWKS requests");
    return;
}

# Send one request and check the JWKS requests it caused.
sub check_one {
    my ($case, $name, $token, $status, $fetches, %args) = @_;
    my $hits = jwks_hits($name);
    if ($status == 200) {
        expect_accepted($case, path => "/$name/env", token => $token);
    }
    else {
        expect_rejected($case, path => "/$name/env", token => $token, reason => $args{reason});
    }
    my $got = jwks_hits($name) - $hits;
    note("$case: got $got JWKS requests, expected $fetches");
    is($got, $fetches, "$case: JWKS requests");
    return;
}

# The TLP015 notices about $url in @log.
sub key_changes {
    my ($url, @log) = @_;
    return lines_with(\@log, "TLP015: keys of $url changed: ");
}

# Check one TLP015 notice: it lists @added as added and @removed as
# removed, and no other key id of this test in either list.
sub check_key_change {
    my ($case, $url, $log, $added, $removed) = @_;
    my @changes = key_changes($url, @$log);
    unless (is(scalar @changes, 1, "$case: one TLP015 notice")) {
        diag("$case: $_") for @changes;
    }
    my ($added_list, $removed_list) = ($changes[0] // '') =~ /added (.*); removed (.*)$/;
    $added_list //= '';
    $removed_list //= '';
    for my $kid ($old_kid, $new_kid) {
        my $which = $kid eq $old_kid ? 'old' : 'new';
        my $in_added = (grep { $_ eq $kid } @$added) ? 1 : 0;
        my $in_removed = (grep { $_ eq $kid } @$removed) ? 1 : 0;
        is(index($added_list, qq("$kid")) >= 0 ? 1 : 0, $in_added,
            "$case: $which kid " . ($in_added ? '' : 'not ') . 'named as added');
        is(index($removed_list, qq("$kid")) >= 0 ? 1 : 0, $in_removed,
            "$case: $which kid " . ($in_removed ? '' : 'not ') . 'named as removed');
    }
    like($changes[0] // '', qr/\[auth_teleport:notice\]/, "$case: TLP015 at notice");
    return;
}

# Rotation with a grace period: the phases.
{
    my $name = 'cache-rotation';
    my $url = scenario_url($name);
    create_scenario($name, jwks_v16($old));

    my $offset = error_log_offset();
    check_one('standby before: old key', $name, $old_token, 200, 1);
    check_key_change('standby before: first fetch', $url, [ error_log_since($offset) ],
        [ $old_kid ], []);

    write_scenario_jwks($name, jwks_v16($old, $new));
    check_one('init: old key', $name, $old_token, 200, 0);
    check_parallel('init: old key on many children', $name, $old_token, 200, undef, 0);

    write_scenario_jwks($name, jwks_v16($new, $old));
    $offset = error_log_offset();
    my @results = parallel_requests(clients => CLIENTS, requests => 1,
        request => sub { (static_path($name), $new_token) });
    my $fetched = Time::HiRes::time();
    my @log = error_log_since($offset);
    my $accepted = grep { $_->{code} == 200 } @results;
    note("update_clients: first new-key tokens on many children: got $accepted x 200 and "
        . jwks_hits($name) . ' JWKS requests in total; expected ' . CLIENTS . ' x 200 and 2');
    is(jwks_hits($name), 2, 'update_clients: first new-key tokens on many children: one fetch');
    # A request whose kid is missing waits for the refresh that another
    # request runs, so every one of them gets 200.
    is($accepted, CLIENTS, 'update_clients: first new-key tokens on many children: every request 200');
    check_key_change('update_clients', $url, \@log, [ $new_kid ], []);
    check_parallel('update_clients: new key on many children', $name, $new_token, 200, undef, 0);
    check_parallel('update_clients: old key on many children', $name, $old_token, 200, undef, 0);
    check_one('update_servers: new key', $name, $new_token, 200, 0);
    check_one('update_servers: old key', $name, $old_token, 200, 0);

    # Standby: the refresh after TeleportJWKSMaxAge finds the old key gone.
    write_scenario_jwks($name, jwks_v16($new));
    sleep_until($fetched + MAX_AGE + 0.3);
    $offset = error_log_offset();
    check_one('standby after: new key refreshes the keys', $name, $new_token, 200, 1);
    check_key_change('standby after', $url, [ error_log_since($offset) ], [], [ $old_kid ]);
    # Every child compares its keys with the shared ones again.  The old
    # kid is unknown now: one forced refresh, the first since the new
    # key's, then the rate limit.
    Time::HiRes::sleep(SHARED_CHECK);
    check_one('standby after: old key', $name, $old_token, 401, 1, reason => 'unknown_kid');
    # NOTE: requests that run in a child at the same time as the first
    # request after the refresh may still see the previous keys, which list
    # the old key, so these requests are sent one at a time.
    check_sequential('standby after: old key on many children', $name, $old_token, 401,
        'unknown_kid', 0);
    check_parallel('standby after: new key on many children', $name, $new_token, 200, undef, 0);
}

# Grace period 0: the JWKS swaps the old key for the new one at once.
{
    my $name = 'cache-grace0';
    my $url = scenario_url($name);
    create_scenario($name, jwks_v16($old));
    check_one('grace 0: old key', $name, $old_token, 200, 1);

    write_scenario_jwks($name, jwks_v16($new));
    my $offset = error_log_offset();
    check_one('grace 0: first new-key token', $name, $new_token, 200, 1);
    check_key_change('grace 0', $url, [ error_log_since($offset) ], [ $new_kid ], [ $old_kid ]);
    check_parallel('grace 0: new key on many children', $name, $new_token, 200, undef, 0);
    check_one('grace 0: old key', $name, $old_token, 401, 0, reason => 'unknown_kid');
}

# Grace period 0 with tokens and JWKS without kid (Teleport before
# v15.4.20): a token that no cached key verifies forces the refresh.
{
    my $name = 'cache-grace0-kidless';
    create_scenario($name, jwks_v14($old));
    check_one('grace 0 without kid: old key', $name, mint(key => $old), 200, 1);

    write_scenario_jwks($name, jwks_v14($new));
    my $offset = error_log_offset();
    check_one('grace 0 without kid: first new-key token', $name, mint(key => $new), 200, 1);
    my @changes = key_changes(scenario_url($name), error_log_since($offset));
    is(scalar @changes, 1, 'grace 0 without kid: one TLP015 notice');
    check_parallel('grace 0 without kid: new key on many children', $name, mint(key => $new),
        200, undef, 0);
    check_one('grace 0 without kid: old key', $name, mint(key => $old), 401, 0,
        reason => 'bad_signature');
}

done_testing();
