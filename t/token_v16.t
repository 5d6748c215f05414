# Tokens of Teleport v15.4.20 / v16.4.3 and later: RS256 with "kid", "aud"
# a string; the JWKS lists each key twice, with its kid and with "kid": "".
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

plan tests => 2 * ACCEPT_CHECKS + 3, need_module('cgid');

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

my $response = expect_accepted('v16 token', path => '/v16/env', token => $token);
my $env = response_env($response);
is($env->{TELEPORT_KID}, key_id($key), 'v16 token: TELEPORT_KID');
is($env->{AUTH_TYPE}, 'Teleport', 'v16 token: AUTH_TYPE');
is($env->{HAS_ASSERTION_HEADER}, 1, 'v16 token: header reaches CGI');

# An agent that predates the kid change, in front of a newer cluster.
expect_accepted('kid-less token, v16 JWKS',
    path => '/v16/env', token => mint(key => $key));
