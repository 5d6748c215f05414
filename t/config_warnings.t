# Risky but valid settings: "httpd -t" passes and prints a warning with its
# exact message.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Temp qw(tempdir);
use JSON;
use Teleport::Test;
use Teleport::ConfigTest qw(write_text);

my $dir = tempdir('mod_auth_teleport-warnings-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $good_jwks = state_dir() . '/static/jwks.json';

# A JWKS with the usable keys and one "oct" key, which is never used.
open my $in, '<', $good_jwks or die "cannot read $good_jwks: $!";
my $jwks = decode_json(do { local $/; <$in> });
close $in;
unshift @{ $jwks->{keys} }, { kty => 'oct', k => 'c2VjcmV0', kid => 'hmac' };
write_text("$dir/partly.json", encode_json($jwks));

# name, configuration inside <Location "/app">, pattern of the warning
my @cases = (
    [ 'no audience', qq(TeleportJWKSFile "$good_jwks"),
      qr/TLP022: AuthType Teleport at \Q$dir\E\/httpd\.conf:\d+ sets no TeleportAudience, so it accepts tokens issued for any application of the cluster/ ],
    [ 'clock skew above 300 s', qq(TeleportJWKSFile "$good_jwks"\nTeleportAudience http://localhost:8080\nTeleportClockSkew 301),
      qr/TLP025: TeleportClockSkew 301 at \Q$dir\E\/httpd\.conf:\d+ accepts tokens more than 300 s past their exp; Teleport itself allows 60 s/ ],
    [ 'JWKS file with an unusable key', qq(TeleportJWKSFile "$dir/partly.json"\nTeleportAudience http://localhost:8080),
      qr/TLP020: TeleportJWKSFile \Q$dir\E\/partly\.json: skipped 1 unusable key\(s\), the first because / ],
);

plan tests => 3 * @cases + 1;

for my $case (@cases) {
    my ($name, $location, $warning) = @$case;
    my ($status, $output) = config_test($location);
    note("$name: got exit status $status\n$output");
    is($status, 0, "$name: configtest passes");
    like($output, qr/Syntax OK/, "$name: Syntax OK");
    like($output, $warning, "$name: warning text");
}

my ($status, $output) = config_test(qq(TeleportJWKSFile "$good_jwks"\nTeleportAudience http://localhost:8080\nTeleportClockSkew 300));
unlike($output, qr/TLP02[025]:/, 'safe settings: no warning');

# "httpd -t" with $location inside <Location "/app"> before "Require
# valid-user".
sub config_test {
    my ($location) = @_;
    return Teleport::ConfigTest::config_test(dir => $dir,
        location => "$location\nRequire valid-user");
}
