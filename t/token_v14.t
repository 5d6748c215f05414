# Tokens of Teleport v14 and older: RS256 without "kid", "aud" an array of
# one string; the JWKS lists the key once with "kid": "".  Also the 2020
# shape: no "iat" in the token, no "kid" or "use" in the JWKS.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint teleport_claims);

plan tests => 3 * ACCEPT_CHECKS + 2, need_module('cgid');

my $key = test_key('rsa-main');
my $v14_claims = teleport_claims(aud => ['http://localhost:8080']);

my $response = expect_accepted('v14 token',
    path => '/v14/env', token => mint(key => $key, claims => $v14_claims));
my $env = response_env($response);
is($env->{AUTH_TYPE}, 'Teleport', 'v14 token: AUTH_TYPE');
is($env->{TELEPORT_USER}, 'alice', 'v14 token: TELEPORT_USER');

expect_accepted('v14 token without iat', path => '/v14/env',
    token => mint(key => $key,
        claims => teleport_claims(aud => ['http://localhost:8080'], iat => undef)));

expect_accepted('2020 JWKS without kid and use', path => '/v12/env',
    token => mint(key => $key,
        claims => teleport_claims(aud => ['http://localhost:8080'], iat => undef)));
