# Key rotation (tctl auth rotate --type=jwt) seen by a location that fetched
# its keys already: a token with a new kid makes exactly one JWKS fetch and
# is accepted; keys still listed keep working without a fetch; a second new
# kid within TeleportJWKSMinRefresh (default 60 s) of that refresh is not
# fetched.  Kid-less tokens (agents before v15.4.20) whose signature no
# cached key verifies trigger the same refresh.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v14 jwks_v16);

plan tests => 6 * ACCEPT_CHECKS + REJECT_CHECKS + 5, need_module('cgid');

my $old = test_key('rsa-main');
my $new = test_key('rsa-next');
my $third = test_key('rsa-other');
sub token_of { mint(key => $_[0], kid => key_id($_[0])) }

# Check that the JWKS scenario was fetched $expected times since $before.
sub check_fetches {
    my ($name, $scenario, $before, $expected) = @_;
    my $fetches = jwks_hits($scenario) - $before;
    note("$name: got $fetches JWKS fetches, expected $expected");
    is($fetches, $expected, "$name: JWKS fetches");
}

expect_accepted('old key before rotation', path => '/rotation/env', token => token_of($old));
my $hits = jwks_hits('rotation');
ok($hits >= 1, "keys fetched before rotation ($hits fetches)");

# Phase update_clients: the cluster signs with the new key and lists both.
write_scenario_jwks('rotation', jwks_v16($new, $old));
expect_accepted('new kid after rotation', path => '/rotation/env', token => token_of($new));
check_fetches('new kid after rotation', 'rotation', $hits, 1);

$hits = jwks_hits('rotation');
expect_accepted('old kid still listed', path => '/rotation/env', token => token_of($old));
expect_accepted('new kid again', path => '/rotation/env', token => token_of($new));
check_fetches('known kids', 'rotation', $hits, 0);

# Another rotation right away: the refresh interval has not passed.
$hits = jwks_hits('rotation');
write_scenario_jwks('rotation', jwks_v16($third));
expect_rejected('second new kid within 60 s', path => '/rotation/env',
    token => token_of($third), reason => 'unknown_kid');
check_fetches('second new kid within 60 s', 'rotation', $hits, 0);

# The only key replaced, as with a grace period of 0 (TeleportJWKSMinRefresh
# 0 at this location).
expect_accepted('kid-less token before rotation', path => '/rotation-kidless/env',
    token => mint(key => $old));
$hits = jwks_hits('rotation-kidless');
write_scenario_jwks('rotation-kidless', jwks_v14($new));
expect_accepted('kid-less token after rotation', path => '/rotation-kidless/env',
    token => mint(key => $new));
check_fetches('kid-less token after rotation', 'rotation-kidless', $hits, 1);
