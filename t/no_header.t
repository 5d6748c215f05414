# A request without an assertion header gets a 401 challenge and leaves no
# line in the error_log: a missing token is not an error.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;

my @cases = (
    [ 'no header',                 '/v16/env', [],                        'Teleport realm="v16 app"' ],
    [ 'no header, other location', '/v14/env', [],                        'Teleport realm="v14 app"' ],
    [ 'token in another header',   '/v16/env', [ 'X-Teleport-Token' => 'abc.def.ghi' ], 'Teleport realm="v16 app"' ],
);

plan tests => 3 * @cases;

for my $case (@cases) {
    my ($name, $path, $headers, $challenge) = @$case;
    my $offset = error_log_offset();
    my $response = send_request(path => $path, headers => $headers);
    my @module_lines = grep { /\[auth_teleport:/ } error_log_since($offset);
    note("$name: got " . $response->code . ' WWW-Authenticate '
        . ($response->header('WWW-Authenticate') // '(none)')
        . ", expected 401 $challenge");
    is($response->code, 401, "$name: status");
    is($response->header('WWW-Authenticate'), $challenge, "$name: challenge");
    is(scalar @module_lines, 0, "$name: nothing logged");
    diag("$name: error_log: $_") for @module_lines;
}
