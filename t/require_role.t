# "Require teleport-role" and "Require teleport-trait": granted when the
# token's roles (or the named trait) contain one of the listed values.  The
# locations set AuthzSendForbiddenOnFailure On, so a refusal is a 403.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

my $key = test_key('rsa-main');
sub token_with { mint(key => $key, kid => key_id($key), claims => teleport_claims(@_)) }

my @granted = (
    [ 'role editor',      '/role/env',  token_with(roles => [ 'access', 'editor' ]) ],
    [ 'role admin',       '/role/env',  token_with(roles => [ 'admin' ]) ],
    [ 'trait logins root', '/trait/env', token_with(traits => { logins => [ 'alice', 'root' ] }) ],
);
my @refused = (
    [ 'role access only',        '/role/env',  token_with(roles => [ 'access' ]) ],
    [ 'no roles',                '/role/env',  token_with(roles => undef) ],
    [ 'role name as prefix',     '/role/env',  token_with(roles => [ 'editors' ]) ],
    [ 'trait without root',      '/trait/env', token_with(traits => { logins => [ 'alice' ] }) ],
    [ 'root in another trait',   '/trait/env', token_with(traits => { groups => [ 'root' ] }) ],
);

plan tests => @granted * ACCEPT_CHECKS + @refused * 2, need_module('cgid');

for my $case (@granted) {
    my ($name, $path, $token) = @$case;
    expect_accepted($name, path => $path, token => $token);
}
for my $case (@refused) {
    my ($name, $path, $token) = @$case;
    my $offset = error_log_offset();
    my $response = send_request(path => $path, token => $token);
    note("$name: got " . $response->code . ', expected 403');
    is($response->code, 403, "$name: status");
    is(scalar rejection_lines(error_log_since($offset)), 0, "$name: token not rejected");
}
