# The rejection line names the reason, the token's kid and the URI, and
# comes from this module at level info:
#   [auth_teleport:info] ... token rejected: reason=<word> kid="<kid>" uri=<uri>: <detail>
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint);

plan tests => REJECT_CHECKS + 5;

my $kid = 'rotated-away-key-id';
my (undef, $line) = expect_rejected('unknown kid',
    path => '/reject/env?page=2', reason => 'unknown_kid',
    token => mint(key => test_key('rsa-main'), kid => $kid));
$line //= '';
note("rejection line: $line");

like($line, qr/\[auth_teleport:info\]/, 'module tag and level');
like($line, qr/token rejected: reason=unknown_kid kid="\Q$kid\E" /, 'reason and kid');
like($line, qr/ uri=\/reject\/env\S*: /, 'uri');
like($line, qr/ uri=\S+: \S/, 'detail after the uri');

# A kid is text from the client: quotes and control characters must not
# reach the log unescaped.
my (undef, $hostile) = expect_rejected_quietly('kid with quote and newline',
    mint(key => test_key('rsa-main'), kid => qq(x" uri=/forged\nnext line)));
unlike($hostile // '', qr/kid="x" uri=\/forged/, 'kid escaped in the log');

sub expect_rejected_quietly {
    my ($name, $token) = @_;
    my $offset = error_log_offset();
    my $response = send_request(path => '/reject/env', token => $token);
    my @lines = rejection_lines(error_log_since($offset));
    note("$name: got " . $response->code . ", line: " . ($lines[0] // '(none)'));
    return ($response, $lines[0]);
}
