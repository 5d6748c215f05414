# "Require user alice" with AuthType Teleport: the user claim is what
# mod_authz_user compares.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

plan tests => ACCEPT_CHECKS + 6, need_module('cgid', 'authz_user');

my $key = test_key('rsa-main');
sub token_for { mint(key => $key, kid => key_id($key), claims => teleport_claims(sub => $_[0], username => $_[0])) }

expect_accepted('alice', path => '/alice/env', token => token_for('alice'));

my $offset = error_log_offset();
my $response = send_request(path => '/alice/env', token => token_for('bob'));
note('bob: got ' . $response->code . ', expected 403');
isnt($response->code, 200, 'bob: not granted');
# /alice/ sets AuthzSendForbiddenOnFailure On: a Teleport user cannot
# retry with other credentials, so the answer is 403.
is($response->code, 403, 'bob: status');
is(scalar rejection_lines(error_log_since($offset)), 0, 'bob: token not rejected');

# Without it, httpd's mod_authz_core answers an authenticated user that a
# rule denies with 401, as the README says.
$response = send_request(path => '/alice-default/env', token => token_for('bob'));
is($response->code, 401, 'bob, httpd default: status');
isnt($response->header('WWW-Authenticate'), undef,
     'bob, httpd default: challenge');

$response = send_request(path => '/alice/env');
is($response->code, 401, 'no token: status');
