# HTTP/2: requests over cleartext HTTP/2 (curl --http2-prior-knowledge)
# get the identity of their own token, and a tampered token is rejected.
# mod_http2 gives every stream its own connection record, for which the
# module keeps no per-connection token memo; repeated tokens come from the
# token cache.  Each request uses its own connection: curl 7.88.1 of
# Debian 12 fails the second stream of a reused prior-knowledge
# connection ("Error in the HTTP2 framing layer") before sending it, with
# or without this module.  t/TEST does not run this file under the prefork
# MPM, which mod_http2 does not support.  The server setup is in
# t/conf/extra_http2.conf.in.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Temp qw(tempdir);
use JSON ();
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

my $curl_features = `curl -V 2>/dev/null` // '';
if ($curl_features !~ /\bHTTP2\b/) {
    plan skip_all => 'curl without HTTP/2 support';
}
if (!-f '/usr/lib/apache2/modules/mod_http2.so') {
    plan skip_all => 'mod_http2.so not installed';
}

my $key = test_key('rsa-main');
sub token_for { mint(key => $key, kid => key_id($key), claims => teleport_claims(@_)) }

my $alice = token_for(jti => 'h2-alice');
my $bob = token_for(username => 'bob', sub => 'bob', jti => 'h2-bob');
my ($signing_input, $signature) = $alice =~ /^(.+)\.([^.]+)$/;
my $middle = int(length($signature) / 2);
substr($signature, $middle, 1, substr($signature, $middle, 1) eq 'A' ? 'B' : 'A');
my $tampered = "$signing_input.$signature";
Teleport::Test::record_tokens($alice, $bob, $tampered);

# name, token, expected status, expected REMOTE_USER (undef for a 401)
my @streams = (
    [ 'first token',                      $alice,    200, 'alice' ],
    [ 'same token again',                 $alice,    200, 'alice' ],
    [ 'one signature character changed',  $tampered, 401, undef ],
    [ 'other user',                       $bob,      200, 'bob' ],
    [ 'first user again',                 $alice,    200, 'alice' ],
);

plan tests => 3 * @streams;

my $dir = tempdir(CLEANUP => 1);
my $url = Teleport::Test::server_url('/authz-cache/env');
for my $i (0 .. $#streams) {
    my ($name, $token, $status, $user) = @{ $streams[$i] };
    my @command = ('curl', '--silent', '--http2-prior-knowledge', '--max-time', '20',
                   '--header', "Teleport-Jwt-Assertion: $token",
                   '--output', "$dir/body$i",
                   '--write-out', '%{http_code} %{http_version}', $url);
    open my $curl, '-|', @command or die "cannot run curl: $!";
    my $result = <$curl> // '';
    close $curl;
    note("$name: curl: $result");
    my ($code, $version) = split ' ', $result;
    is($code, $status, "$name: status");
    is($version, '2', "$name: HTTP/2");
    my $env = {};
    if (open my $fh, '<', "$dir/body$i") {
        local $/;
        $env = eval { JSON->new->decode(scalar <$fh>) } || {};
    }
    is($env->{REMOTE_USER}, $user, "$name: REMOTE_USER");
}
