# Per-location settings: TeleportClockSkew, TeleportAlgorithms,
# TeleportUserClaim, several TeleportAudience values, TeleportHeader.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

plan tests => 7 * ACCEPT_CHECKS + 4 * REJECT_CHECKS + 1, need_module('cgid');

my $rsa = test_key('rsa-main');
my $ec = test_key('ec-short');
my $now = time;

sub rs256 { mint(key => $rsa, kid => key_id($rsa), claims => teleport_claims(@_)) }

# Expired 30 s ago: inside the default 60 s of skew, outside 0.
my $just_expired = rs256(iat => $now - 630, nbf => $now - 640, exp => $now - 30);
expect_accepted('expired 30 s ago, default skew', path => '/v16/env', token => $just_expired);
expect_rejected('expired 30 s ago, skew 0', path => '/options-skew0/env',
    token => $just_expired, reason => 'expired');

my $early = rs256(iat => $now, nbf => $now + 30);
expect_accepted('nbf in 30 s, default skew', path => '/v16/env', token => $early);
expect_rejected('nbf in 30 s, skew 0', path => '/options-skew0/env',
    token => $early, reason => 'not_yet_valid');

expect_accepted('ES256 with ES256 only', path => '/options-es256/env',
    token => mint(key => $ec, kid => key_id($ec)));
expect_rejected('RS256 with ES256 only', path => '/options-es256/env',
    token => rs256(), reason => 'alg_not_allowed');

expect_accepted('user from sub', path => '/options-sub/env',
    user => 'alice@sso', token => rs256(sub => 'alice@sso', username => 'alice'));

expect_accepted('second of two audiences', path => '/options-audiences/env',
    token => rs256(aud => 'http://127.0.0.1:3000'));
expect_accepted('first of two audiences, array', path => '/options-audiences/env',
    token => rs256(aud => [ 'https://app-one.example.com' ]));
expect_rejected('audience of another app', path => '/options-audiences/env',
    token => rs256(aud => 'http://localhost:8080'), reason => 'bad_audience');

expect_accepted('token in custom header', path => '/options-header/env',
    header => 'X-Teleport-Token', token => rs256());
my $ignored = send_request(path => '/options-header/env', token => rs256());
is($ignored->code, 401, 'default header ignored when TeleportHeader is set');
