# A "Require teleport-role", "teleport-trait" or "teleport-claim" line
# without the values it needs stops httpd at startup: "httpd -t" on a small
# configuration that loads the module fails with a message naming the
# provider and what is missing.  The complete lines pass, or the failures
# would prove nothing.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Temp qw(tempdir);
use Teleport::Test;
use Teleport::ConfigTest qw(write_text);

my $dir = tempdir('mod_auth_teleport-authz-config-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $jwks = state_dir() . '/static/jwks.json';

my @good = (
    [ 'role',                 'Require teleport-role editor' ],
    [ 'roles',                'Require teleport-role editor admin' ],
    [ 'trait',                'Require teleport-trait logins root' ],
    [ 'trait quoted value',   'Require teleport-trait groups "platform team"' ],
    [ 'claim',                'Require teleport-claim sub alice' ],
    [ 'claim URL value',      'Require teleport-claim aud http://localhost:8080' ],
    [ 'in RequireAll',        "<RequireAll>\nRequire teleport-role editor\nRequire teleport-claim sub alice\n</RequireAll>" ],
);

# name, Require lines, texts the message must contain
my @bad = (
    [ 'role without role',        'Require teleport-role',
      [ 'Require teleport-role', 'at least one role' ] ],
    [ 'trait without value',      'Require teleport-trait logins',
      [ 'Require teleport-trait', 'at least one value' ] ],
    [ 'trait without name',       'Require teleport-trait',
      [ 'Require teleport-trait', 'a trait name' ] ],
    [ 'claim without anything',   'Require teleport-claim',
      [ 'Require teleport-claim', 'a claim name' ] ],
    [ 'claim without value',      'Require teleport-claim sub',
      [ 'Require teleport-claim', 'at least one value' ] ],
    [ 'empty quoted role',        'Require teleport-role ""',
      [ 'Require teleport-role', 'at least one role' ] ],
    [ 'inside RequireAny',        "<RequireAny>\nRequire valid-user\nRequire teleport-role\n</RequireAny>",
      [ 'Require teleport-role', 'at least one role' ] ],
);

my $bad_checks = 0;
$bad_checks += 2 + @{ $_->[2] } for @bad;
plan tests => 2 * @good + $bad_checks;

for my $case (@good) {
    my ($name, $require) = @$case;
    my ($status, $output) = config_test($require);
    note("$name: got exit status $status; expected 0\n$output");
    is($status, 0, "$name: accepted");
    like($output, qr/Syntax OK/, "$name: Syntax OK");
}

for my $case (@bad) {
    my ($name, $require, $expected) = @$case;
    my ($status, $output) = config_test($require);
    note("$name: got exit status $status; expected non-zero\n$output");
    isnt($status, 0, "$name: rejected");
    unlike($output, qr/Syntax OK/, "$name: no Syntax OK");
    like($output, qr/\Q$_\E/, "$name: message names '$_'") for @$expected;
}

# "httpd -t" with a key source, an audience and $require inside
# <Location "/app">.
sub config_test {
    my ($require) = @_;
    return Teleport::ConfigTest::config_test(dir => $dir, location =>
        "TeleportJWKSFile \"$jwks\"\nTeleportAudience http://localhost:8080\n$require");
}
