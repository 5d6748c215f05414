# TeleportHeader Authorization: the token arrives as "Authorization: Bearer
# <jwt>", as Teleport's rewrite.headers can send it.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id);

plan tests => ACCEPT_CHECKS + REJECT_CHECKS * 2 + 6, need_module('cgid');

my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

expect_accepted('Bearer token', path => '/bearer/env',
    headers => [ Authorization => "Bearer $token" ]);

expect_rejected('Basic credentials', path => '/bearer/env',
    headers => [ Authorization => 'Basic YWxpY2U6c2VjcmV0' ], reason => 'bad_scheme');

expect_rejected('Bearer with invalid token', path => '/bearer/env',
    headers => [ Authorization => 'Bearer not-a-token' ], reason => 'malformed');

for my $case (
    [ 'no Authorization header', [] ],
    [ 'token in Teleport-Jwt-Assertion', [ 'Teleport-Jwt-Assertion' => $token ] ],
) {
    my ($name, $headers) = @$case;
    my $offset = error_log_offset();
    my $response = send_request(path => '/bearer/env', headers => $headers);
    my @module_lines = grep { /\[auth_teleport:/ } error_log_since($offset);
    note("$name: got " . $response->code . ' '
        . ($response->header('WWW-Authenticate') // '(no challenge)'));
    is($response->code, 401, "$name: status");
    is($response->header('WWW-Authenticate'), 'Bearer realm="bearer app"', "$name: challenge");
    is(scalar @module_lines, 0, "$name: nothing logged");
}
