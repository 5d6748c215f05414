# Bad directive values stop httpd at startup: "httpd -t" on small
# configurations that load the module must fail with a message naming the
# directive and the value.  Good values must pass, or the failures prove
# nothing.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Temp qw(tempdir);
use Teleport::Test;
use Teleport::ConfigTest qw(write_text);

my $dir = tempdir('mod_auth_teleport-config-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $ca = $ENV{TELEPORT_TEST_CA};
my $good_jwks = state_dir() . '/static/jwks.json';
write_text("$dir/not-json.json", "{\"keys\": [\n");
write_text("$dir/no-keys.json", qq({"keys":[]}\n));

my $url = 'https://teleport.example.com:3080';

# name, configuration inside <Location "/app">, expected exit status
my @good = (
    [ 'all directives',
      qq(TeleportProxyURL $url\nTeleportCAFile "$ca"\nTeleportAudience http://localhost:8080 https://app.example.com\n)
      . qq(TeleportIssuer teleport.example.com\nTeleportAlgorithms RS256 ES256\nTeleportClockSkew 30\n)
      . qq(TeleportHeader Authorization\nTeleportUserClaim sub\nTeleportFetchTimeout 2\n)
      . qq(TeleportJWKSMaxAge 600\nTeleportJWKSMinRefresh 0\n) ],
    [ 'JWKS file',                 qq(TeleportJWKSFile "$good_jwks"\n) ],
    [ 'http on 127.0.0.1',         qq(TeleportProxyURL http://127.0.0.1:3080\n) ],
    [ 'http on localhost',         qq(TeleportProxyURL http://localhost:3080\n) ],
    [ 'http on [::1]',             qq(TeleportProxyURL http://[::1]:3080\n) ],
);

# name, configuration inside <Location "/app"> (or at server level when the
# name is marked "server"), strings the message must contain
my @bad = (
    [ 'unknown algorithm',          "TeleportAlgorithms RS256 FOO256",       [ 'TeleportAlgorithms', 'FOO256' ] ],
    [ 'algorithm none',             "TeleportAlgorithms none",               [ 'TeleportAlgorithms', 'none' ] ],
    [ 'algorithm HS256',            "TeleportAlgorithms HS256",              [ 'TeleportAlgorithms', 'HS256' ] ],
    [ 'http on a public host',      "TeleportProxyURL http://teleport.example.com:3080",
                                    [ 'TeleportProxyURL', 'http://teleport.example.com:3080' ] ],
    [ 'unparsable URL',             'TeleportProxyURL "https://[::1"',       [ 'TeleportProxyURL', 'https://[::1' ] ],
    [ 'URL without scheme',         "TeleportProxyURL teleport.example.com", [ 'TeleportProxyURL', 'teleport.example.com' ] ],
    [ 'ftp URL',                    "TeleportProxyURL ftp://127.0.0.1/",     [ 'TeleportProxyURL', 'ftp://127.0.0.1/' ] ],
    [ 'negative clock skew',        "TeleportClockSkew -5",                  [ 'TeleportClockSkew', '-5' ] ],
    [ 'clock skew not a number',    "TeleportClockSkew soon",                [ 'TeleportClockSkew', 'soon' ] ],
    [ 'negative fetch timeout',     "TeleportFetchTimeout -1",               [ 'TeleportFetchTimeout', '-1' ] ],
    # curl takes a timeout of 0 as no timeout at all.
    [ 'zero fetch timeout',         "TeleportFetchTimeout 0",                [ 'TeleportFetchTimeout', '0' ] ],
    [ 'fetch timeout not a number', "TeleportFetchTimeout 5x",               [ 'TeleportFetchTimeout', '5x' ] ],
    [ 'negative max age',           "TeleportJWKSMaxAge -3600",              [ 'TeleportJWKSMaxAge', '-3600' ] ],
    [ 'max age not a number',       "TeleportJWKSMaxAge hour",               [ 'TeleportJWKSMaxAge', 'hour' ] ],
    [ 'negative min refresh',       "TeleportJWKSMinRefresh -60",            [ 'TeleportJWKSMinRefresh', '-60' ] ],
    [ 'min refresh not a number',   "TeleportJWKSMinRefresh often",          [ 'TeleportJWKSMinRefresh', 'often' ] ],
    [ 'JWKS file missing',          "TeleportJWKSFile $dir/missing.json",    [ 'TeleportJWKSFile', "$dir/missing.json" ] ],
    [ 'JWKS file a directory',      "TeleportJWKSFile $dir",                 [ 'TeleportJWKSFile', $dir ] ],
    [ 'JWKS file not JSON',         "TeleportJWKSFile $dir/not-json.json",   [ 'TeleportJWKSFile', "$dir/not-json.json" ] ],
    [ 'JWKS file without keys',     "TeleportJWKSFile $dir/no-keys.json",    [ 'TeleportJWKSFile', "$dir/no-keys.json" ] ],
    [ 'CA file missing',            "TeleportProxyURL $url\nTeleportCAFile $dir/missing-ca.pem",
                                    [ 'TeleportCAFile', "$dir/missing-ca.pem" ] ],
    [ 'header name with space',     qq(TeleportProxyURL $url\nTeleportHeader "X Token"), [ 'TeleportHeader', 'X Token' ] ],
    [ 'server: unknown cache provider', "TeleportCache nosuchcache",         [ 'TeleportCache', 'nosuchcache' ] ],
    [ 'cache inside Location',      "TeleportProxyURL $url\nTeleportCache shmcb", [ 'TeleportCache' ] ],
    [ 'server: negative token cache', "TeleportTokenCache -1",              [ 'TeleportTokenCache', '-1' ] ],
    [ 'server: token cache not a number', "TeleportTokenCache many",        [ 'TeleportTokenCache', 'many' ] ],
    [ 'server: token cache over maximum', "TeleportTokenCache 1048577",     [ 'TeleportTokenCache', '1048577' ] ],
    [ 'token cache inside Location', "TeleportProxyURL $url\nTeleportTokenCache 10", [ 'TeleportTokenCache' ] ],
    [ 'AuthType without key source', '',                                     [ qr/TeleportProxyURL|TeleportJWKSFile/ ] ],
);

my $bad_checks = 0;
$bad_checks += 1 + @{ $_->[2] } for @bad;
plan tests => 2 * @good + $bad_checks;

for my $case (@good) {
    my ($name, $location) = @$case;
    my ($status, $output) = config_test($location, '');
    note("$name: got exit status $status; expected 0\n$output");
    is($status, 0, "$name: accepted");
    like($output, qr/Syntax OK/, "$name: Syntax OK");
}

for my $case (@bad) {
    my ($name, $config, $expected) = @$case;
    my ($status, $output) = $name =~ /^server: /
        ? config_test("TeleportProxyURL $url", $config)
        : config_test($config, '');
    note("$name: got exit status $status; expected non-zero\n$output");
    isnt($status, 0, "$name: rejected");
    for my $text (@$expected) {
        if (ref $text) {
            like($output, $text, "$name: message names $text");
        }
        else {
            like($output, qr/\Q$text\E/, "$name: message names '$text'");
        }
    }
}

# "httpd -t" with $location inside <Location "/app"> before "Require
# valid-user", and $server at server level.
sub config_test {
    my ($location, $server) = @_;
    return Teleport::ConfigTest::config_test(dir => $dir, server => $server,
        location => "$location\nRequire valid-user");
}
