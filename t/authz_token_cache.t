# The verified-token cache (TeleportTokenCache, 1024 entries per child by
# default) never accepts what a full verification would reject.  Each
# group of requests below goes over one kept-alive connection, so one child
# process serves it and the token it verified first is in that child's
# cache.  The pid in t/logs/authz_log shows that this held.  A cached token
# is still checked against the location that receives it (audience, clock
# skew, user claim), against the current time (it expires while cached),
# and against the key set it was verified with (after a refresh drops its
# key it is rejected).  The locations are in t/conf/extra_authz.conf.in.
# Each connection also remembers the last token it sent (the connection
# memo); the last groups check that only exactly those bytes match it.  The
# expiry case sleeps about 3 s at most, the memo's key change case 1.2 s.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use Teleport::Authz qw(new_agent tagged_request authz_log_entry);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims jwks_v16);

plan tests => 66;

my $key = test_key('rsa-main');
my $kid = key_id($key);
sub token_with { mint(key => $key, kid => $kid, claims => teleport_claims(@_)) }

# Send $token to $path on $agent's connection and check the status and,
# for a 401, the one rejection reason.  Returns the child's pid from
# authz_log.
sub check_request {
    my ($name, $agent, $path, $token, $status, $reason) = @_;
    my $offset = error_log_offset();
    my ($response, $case) = tagged_request(agent => $agent, path => $path, token => $token);
    my @log = error_log_since($offset);
    my ($got_reason) = map { /token rejected: reason=(\S+)/ } rejection_lines(@log);
    my $entry = authz_log_entry($case) || {};
    note("$name: got " . $response->code . ' reason ' . ($got_reason // '(none)')
        . ' pid ' . ($entry->{pid} // '?') . "; expected $status " . ($reason // ''));
    note("$name: error_log: $_") for @log;

    is($response->code, $status, "$name: status");
    is($got_reason, $reason, "$name: " . (defined $reason ? 'reason' : 'no rejection'));
    return $entry->{pid} // 'unknown';
}

sub check_one_child {
    my ($name, @pids) = @_;
    my %distinct = map { $_ => 1 } @pids;
    note("$name: pids @pids");
    is(scalar keys %distinct, 1, "$name: one child served every request");
}

# Audience: the token is cached by the location whose audience it has.
{
    my $agent = new_agent(keep_alive => 1);
    my $local = token_with();
    my $other = token_with(aud => 'http://authz-other.example');
    my @pids = (
        check_request('own audience', $agent, '/authz-cache/env', $local, 200),
        check_request('cached, other location', $agent, '/authz-cache-other-aud/env',
                      $local, 401, 'bad_audience'),
        check_request('other audience', $agent, '/authz-cache-other-aud/env', $other, 200),
        check_request('cached, first location', $agent, '/authz-cache/env',
                      $other, 401, 'bad_audience'),
    );
    check_one_child('audience', @pids);
}

# User claim: each location takes REMOTE_USER from its own
# TeleportUserClaim, whichever location verified the token first.  The
# token's sub differs from its username so that the two can be told apart.
{
    my $agent = new_agent(keep_alive => 1);
    # Another jti, so that the bytes differ from $token and the first
    # request finds nothing in the cache.
    my $first = token_with(sub => 'alice-subject', jti => 'first');
    my $token = token_with(sub => 'alice-subject');
    my @pids;
    for my $step ([ 'sub claim, not cached', '/authz-cache-user-sub/env', 'alice-subject', $first ],
                  [ 'username claim', '/authz-cache/env', 'alice', $token ],
                  [ 'cached, sub claim', '/authz-cache-user-sub/env', 'alice-subject', $token ],
                  [ 'cached, username claim again', '/authz-cache/env', 'alice', $token ]) {
        my ($name, $path, $user, $sent) = @$step;
        my ($response, $case) = tagged_request(agent => $agent, path => $path, token => $sent);
        my $env = response_env($response);
        my $entry = authz_log_entry($case) || {};
        note("$name: got " . $response->code . ' user ' . ($env->{REMOTE_USER} // '(none)')
            . ' pid ' . ($entry->{pid} // '?') . "; expected 200 user $user");
        is($response->code, 200, "$name: status");
        is($env->{REMOTE_USER}, $user, "$name: REMOTE_USER");
        is($env->{TELEPORT_USER}, $user, "$name: TELEPORT_USER");
        push @pids, $entry->{pid} // 'unknown';
    }
    check_one_child('user claim', @pids);
}

# Clock skew: a token that expired 30 s ago verifies where the skew is
# 300 s, and the cached result does not pass where the skew is 0.
{
    my $agent = new_agent(keep_alive => 1);
    my $now = time;
    my $expired = token_with(exp => $now - 30, iat => $now - 600, nbf => $now - 610);
    my @pids = (
        check_request('expired, skew 300', $agent, '/authz-cache-skew300/env', $expired, 200),
        check_request('cached, skew 0', $agent, '/authz-cache-skew0/env',
                      $expired, 401, 'expired'),
        check_request('cached, skew 300 again', $agent, '/authz-cache-skew300/env',
                      $expired, 200),
    );
    check_one_child('clock skew', @pids);
}

# Expiry while cached: exp is 2 to 3 s ahead with TeleportClockSkew 0, so
# the first request is accepted and one after exp is rejected.  The sleep
# stays below httpd's KeepAliveTimeout (5 s), so the connection is kept.
{
    my $agent = new_agent(keep_alive => 1);
    my $expires = int(time) + 3;
    my $token = token_with(exp => $expires);
    my @pids = (check_request('before exp', $agent, '/authz-cache-skew0/env', $token, 200));
    my $wait = $expires + 0.1 - Time::HiRes::time();
    Time::HiRes::sleep($wait) if $wait > 0;
    push @pids, check_request('after exp', $agent, '/authz-cache-skew0/env',
                              $token, 401, 'expired');
    check_one_child('expiry', @pids);
}

# Key removed: the JWKS of authz-rotate drops the key of a cached token,
# and a token of the new key makes the child refresh (its kid is unknown).
# The cached token then counts for the old key set only.
{
    my $agent = new_agent(keep_alive => 1);
    my $next = test_key('rsa-next');
    my $old_token = token_with();
    my $new_token = mint(key => $next, kid => key_id($next));
    my @pids = (
        check_request('old key', $agent, '/authz-rotate/env', $old_token, 200),
        check_request('old key again', $agent, '/authz-rotate/env', $old_token, 200),
    );
    my $hits = jwks_hits('authz-rotate');
    write_scenario_jwks('authz-rotate', jwks_v16($next));
    push @pids, check_request('new key', $agent, '/authz-rotate/env', $new_token, 200);
    my $fetches = jwks_hits('authz-rotate') - $hits;
    note("new key: $fetches JWKS fetches");
    is($fetches, 1, 'new key: one JWKS fetch');
    push @pids, check_request('cached, key removed', $agent, '/authz-rotate/env',
                              $old_token, 401, 'unknown_kid');
    check_one_child('key removed', @pids);
}

# Connection memo: a request that sends exactly the bytes of the previous
# token on its connection takes it from the memo.  A token that differs in
# one signature character, or another user's token, must not match it.
{
    my $agent = new_agent(keep_alive => 1);
    my $alice = token_with(jti => 'memo-alice');
    my $bob = token_with(username => 'bob', sub => 'bob', jti => 'memo-bob');
    my ($signing_input, $signature) = $alice =~ /^(.+)\.([^.]+)$/;
    my $middle = int(length($signature) / 2);
    my $changed = substr($signature, $middle, 1) eq 'A' ? 'B' : 'A';
    substr($signature, $middle, 1, $changed);
    my $tampered = "$signing_input.$signature";
    my @pids = (
        check_request('memo: first token', $agent, '/authz-cache/env', $alice, 200),
        check_request('memo: same bytes', $agent, '/authz-cache/env', $alice, 200),
        check_request('memo: one signature character changed', $agent, '/authz-cache/env',
                      $tampered, 401, 'bad_signature'),
    );
    for my $step ([ 'memo: other user', $bob, 'bob' ],
                  [ 'memo: first user again', $alice, 'alice' ],
                  [ 'memo: first user, same bytes', $alice, 'alice' ]) {
        my ($name, $sent, $user) = @$step;
        my ($response, $case) = tagged_request(agent => $agent, path => '/authz-cache/env',
                                               token => $sent);
        my $env = response_env($response);
        my $entry = authz_log_entry($case) || {};
        note("$name: got " . $response->code . ' user ' . ($env->{REMOTE_USER} // '(none)')
            . ' pid ' . ($entry->{pid} // '?') . "; expected 200 user $user");
        is($response->code, 200, "$name: status");
        is($env->{REMOTE_USER}, $user, "$name: REMOTE_USER");
        push @pids, $entry->{pid} // 'unknown';
    }
    check_one_child('memo', @pids);
}

# Connection memo and a key change: the memo holds a token of the old key
# when another connection brings the new key set into the shared cache.
# Every child compares its keys with the shared version at least once a
# second, so after 1.2 s the same bytes on the first connection are
# verified again and rejected.
{
    my $agent = new_agent(keep_alive => 1);
    my $next = test_key('rsa-next');
    my $token = token_with(jti => 'memo-rotate');
    my @pids = (
        check_request('memo, old key', $agent, '/authz-memo/env', $token, 200),
        check_request('memo, old key again', $agent, '/authz-memo/env', $token, 200),
    );
    write_scenario_jwks('authz-memo', jwks_v16($next));
    check_request('memo, new key on another connection', new_agent(keep_alive => 0),
                  '/authz-memo/env', mint(key => $next, kid => key_id($next)), 200);
    Time::HiRes::sleep(1.2);
    push @pids, check_request('memo, key removed', $agent, '/authz-memo/env',
                              $token, 401, 'unknown_kid');
    check_one_child('memo, key change', @pids);
}
