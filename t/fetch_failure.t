# A location whose JWKS could never be fetched returns 503 with Retry-After
# and logs the failure at level error: HTTP 500, a stalled endpoint (past
# TeleportFetchTimeout 1), a body that is not a JWKS, a JWKS without a
# usable key, a certificate from a CA the system trust store does not
# contain (no TeleportCAFile) and a certificate for another host name.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id);

my @cases = (
    [ 'JWKS endpoint returns 500',    'fail500',   'rsa-main' ],
    [ 'JWKS endpoint stalls',         'slow',      'rsa-main' ],
    [ 'JWKS body not JSON',           'badbody',   'rsa-main' ],
    [ 'JWKS with a 1024-bit key only', 'weakkey',  'rsa-weak' ],
    [ 'untrusted certificate',        'untrusted', 'rsa-main' ],
    [ 'certificate for another host', 'wrongname', 'rsa-main' ],
);

plan tests => @cases * (UNAVAILABLE_CHECKS + 1) + 2;

my %elapsed;
for my $case (@cases) {
    my ($name, $scenario, $key_name) = @$case;
    my $key = test_key($key_name);
    my $started = Time::HiRes::time();
    expect_unavailable($name, path => "/$scenario/env",
        token => mint(key => $key, kid => key_id($key)));
    $elapsed{$scenario} = Time::HiRes::time() - $started;
    my $hits = jwks_hits($scenario);
    note("$name: $hits JWKS requests received");
    # A failed TLS handshake never reaches the HTTP request.
    if ($scenario eq 'untrusted' || $scenario eq 'wrongname') {
        is($hits, 0, "$name: no JWKS request received");
    }
    else {
        ok($hits >= 1, "$name: JWKS requested ($hits)");
    }
}

note(sprintf 'stalled endpoint: response after %.2f s', $elapsed{slow});
ok($elapsed{slow} >= 0.9, 'stalled endpoint: waited for the fetch timeout');
ok($elapsed{slow} < 2.9, 'stalled endpoint: gave up before the 3 s delay');
