# The request notes "teleport-user" and "teleport-reason" in a custom
# access log: t/conf/extra_authz.conf.in writes
#   case=<X-Authz-Case> pid=%P user=%{teleport-user}n reason=%{teleport-reason}n status=%>s uri=%U
# to t/logs/authz_log for every /authz- request.  A verified token logs its
# user, a rejected one the reason word of the error log line, a request
# without a token neither.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Authz qw(tagged_request authz_log_entry);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

my $key = test_key('rsa-main');
my $kid = key_id($key);
my $token = mint(key => $key, kid => $kid);

# name, path, request arguments, expected status, user, reason
my @cases = (
    [ 'valid token',     '/authz-notes/env', [ token => $token ], 200, 'alice', '-' ],
    [ 'expired token',   '/authz-notes/env',
      [ token => mint(key => $key, kid => $kid, claims => teleport_claims(exp => time - 3600)) ],
      401, '-', 'expired' ],
    [ 'bad signature',   '/authz-notes/env',
      [ token => mint(key => test_key('rsa-other'), kid => $kid) ], 401, '-', 'bad_signature' ],
    [ 'not a JWT',       '/authz-notes/env', [ token => 'not-a-token' ], 401, '-', 'malformed' ],
    [ 'two assertions',  '/authz-notes/env',
      [ headers => [ 'Teleport-Jwt-Assertion' => [ $token, $token ] ] ], 401, '-', 'multiple_headers' ],
    [ 'no token',        '/authz-notes/env', [], 401, '-', '-' ],
    [ 'denied by Require', '/authz-role/env',
      [ token => mint(key => $key, kid => $kid, claims => teleport_claims(roles => [ 'access' ])) ],
      403, 'alice', '-' ],
);

plan tests => @cases * 4;

for my $case (@cases) {
    my ($name, $path, $arguments, $status, $user, $reason) = @$case;
    my ($response, $id) = tagged_request(path => $path, @$arguments);
    my $entry = authz_log_entry($id) || {};
    note("$name: got " . $response->code . ", authz_log: "
        . join(' ', map { "$_=$entry->{$_}" } sort keys %$entry));

    is($response->code, $status, "$name: status");
    is($entry->{status}, $status, "$name: status logged");
    is($entry->{user}, $user, "$name: teleport-user note");
    is($entry->{reason}, $reason, "$name: teleport-reason note");
}
