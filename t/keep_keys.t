# A refresh that fails (HTTP 500, body not JSON, no usable key) must keep
# the key set fetched before.  Unknown kids force the refreshes
# (TeleportJWKSMinRefresh 0).
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id);

my @failures = (
    [ 'refresh returns 500',         status => "500\n" ],
    [ 'refresh body not JSON',       body   => "<html>maintenance</html>\n" ],
    [ 'refresh with empty key list', body   => qq({"keys":[]}\n) ],
);

plan tests => ACCEPT_CHECKS + @failures * (REJECT_CHECKS + 1 + ACCEPT_CHECKS),
    need_module('cgid');

my $key = test_key('rsa-main');
my $valid = mint(key => $key, kid => key_id($key));

expect_accepted('keys fetched', path => '/keep/env', token => $valid);

for my $failure (@failures) {
    my ($name, $control, $content) = @$failure;
    set_jwks_control('keep', $control, $content);
    my $before = jwks_hits('keep');
    expect_rejected("$name: unknown kid", path => '/keep/env',
        token => mint(key => $key, kid => "unknown-$control"), reason => 'unknown_kid');
    my $after = jwks_hits('keep');
    note("$name: got " . ($after - $before) . ' JWKS fetches, expected 1');
    is($after - $before, 1, "$name: refresh attempted");
    expect_accepted("$name: old keys kept", path => '/keep/env', token => $valid);
    remove_jwks_control('keep', $control);
}
