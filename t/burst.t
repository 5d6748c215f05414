# A burst of tokens with random unknown kids, sent by parallel clients to
# several httpd children, must cause at most one JWKS fetch when
# TeleportJWKSMinRefresh is 3600, and a valid token must still be accepted.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Digest::SHA qw(sha256);
use Time::HiRes ();
use Teleport::Test;
use Teleport::Token qw(mint key_id b64url);

use constant CLIENTS             => 4;
use constant REQUESTS_PER_CLIENT => 50;
use constant TIME_LIMIT          => 60;

plan tests => 2 * ACCEPT_CHECKS + 4, need_module('cgid');

my $key = test_key('rsa-main');
expect_accepted('valid token before the burst', path => '/burst/env',
    token => mint(key => $key, kid => key_id($key)));
my $fetches = jwks_hits('burst');

# Each client writes one status code per line to its own file.
my $state = state_dir();
my $started = Time::HiRes::time();
my @pids;
for my $client (1 .. CLIENTS) {
    my $pid = fork // die "fork failed: $!";
    if ($pid == 0) {
        open my $out, '>', "$state/burst-client-$client" or die "burst-client-$client: $!";
        my $deadline = time + TIME_LIMIT;
        for my $request (1 .. REQUESTS_PER_CLIENT) {
            last if time > $deadline;
            my $kid = b64url(sha256("$client-$request-" . rand()));
            my $response = send_request(path => '/burst/env',
                token => mint(key => $key, kid => $kid));
            print {$out} $response->code, "\n";
        }
        close $out;
        exit 0;
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
my $elapsed = Time::HiRes::time() - $started;

my %codes;
for my $client (1 .. CLIENTS) {
    open my $in, '<', "$state/burst-client-$client" or die "burst-client-$client: $!";
    chomp(my @lines = <$in>);
    $codes{$_}++ for @lines;
}
my $sent = 0;
$sent += $_ for values %codes;
note(sprintf 'burst: %d requests in %.1f s, status codes: %s', $sent, $elapsed,
    join(', ', map { "$_ x $codes{$_}" } sort keys %codes));

is($sent, CLIENTS * REQUESTS_PER_CLIENT, 'burst: every request completed in time');
is($codes{401} // 0, $sent, 'burst: every request 401');
my $burst_fetches = jwks_hits('burst') - $fetches;
note("burst: got $burst_fetches JWKS fetches, expected at most 1");
ok($burst_fetches <= 1, "burst: at most one JWKS fetch ($burst_fetches)");

expect_accepted('valid token after the burst', path => '/burst/env',
    token => mint(key => $key, kid => key_id($key)));
my $final = jwks_hits('burst') - $fetches;
ok($final <= 1, "burst: still at most one JWKS fetch after the valid token ($final)");
