# Tokens of Teleport v17 balanced-v1 clusters: ES256 with "kid"; the JWKS
# gives EC coordinates without left padding, and the test key has one of 31
# bytes.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON ();
use Teleport::Test;
use Teleport::Token qw(mint key_id);

plan tests => 2 * ACCEPT_CHECKS + 2, need_module('cgid');

my $key = test_key('ec-short');

open my $fh, '<', state_dir() . '/jwks/v17/jwks.json' or die "jwks.json: $!";
my $jwks = JSON->new->decode(do { local $/; <$fh> });
my @lengths = map { (length $_->{x}, length $_->{y}) } @{ $jwks->{keys} };
ok((grep { $_ == 42 } @lengths) > 0,
    "v17 JWKS has a 31-byte coordinate (base64url lengths @lengths)");

my $response = expect_accepted('v17 ES256 token', path => '/v17/env',
    token => mint(key => $key, kid => key_id($key)));
is(response_env($response)->{TELEPORT_KID}, key_id($key), 'v17 ES256 token: TELEPORT_KID');

expect_accepted('kid-less ES256 token',
    path => '/v17/env', token => mint(key => $key));
