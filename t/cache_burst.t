# A burst of tokens with random kids, 3000 requests over 4 kept-alive
# connections (stopped after 30 s), at a location with
# TeleportJWKSMinRefresh 3600 that has fetched its keys: exactly one
# fetch (the first forced refresh), every random kid rejected as
# unknown_kid, and a valid token sent as every 10th request accepted every
# time.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Digest::SHA qw(sha256);
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v16 b64url);
use Teleport::CacheTest qw(create_scenario static_path count_lines
    parallel_requests with_kid);

use constant CLIENTS             => 4;
use constant REQUESTS_PER_CLIENT => 750;
use constant VALID_EVERY         => 10;
use constant TIME_LIMIT          => 30;

my $name = 'cache-burst';
my $path = static_path($name);
my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

create_scenario($name, jwks_v16($key));
expect_accepted('valid token before the burst', path => "/$name/env", token => $token);
my $fetches = jwks_hits($name);
is($fetches, 1, 'one fetch before the burst');

my $offset = error_log_offset();
my @results = parallel_requests(
    clients  => CLIENTS,
    requests => REQUESTS_PER_CLIENT,
    time_limit => TIME_LIMIT,
    request  => sub {
        my ($client, $index) = @_;
        return ($path, $token) if $index % VALID_EVERY == 0;
        return ($path, with_kid($token, b64url(sha256("$client-$index-" . rand()))));
    },
);
my @log = error_log_since($offset);

my (%valid, %random);
for my $result (@results) {
    my $codes = $result->{index} % VALID_EVERY == 0 ? \%valid : \%random;
    $codes->{ $result->{code} }++;
}
my $sent = scalar @results;
my $valid_sent = 0;
$valid_sent += $_ for values %valid;
my $random_sent = $sent - $valid_sent;
my ($seconds) = sort { $b <=> $a } map { $_->{seconds} } @results;
note(sprintf 'burst: %d requests in %.1f s; valid token: %s; random kids: %s',
    $sent, $seconds // 0,
    join(', ', map { "$_ x $valid{$_}" } sort keys %valid),
    join(', ', map { "$_ x $random{$_}" } sort keys %random));

is($sent, CLIENTS * REQUESTS_PER_CLIENT, 'every request sent within ' . TIME_LIMIT . ' s');
is($valid{200} // 0, $valid_sent, 'valid token: every request 200');
is($random{401} // 0, $random_sent, 'random kids: every request 401');
is(count_lines(\@log, 'token rejected: reason=unknown_kid', "uri=$path"), $random_sent,
    'random kids: one unknown_kid line each');
my $burst_fetches = jwks_hits($name) - $fetches;
note("burst: got $burst_fetches JWKS requests, expected 1");
is($burst_fetches, 1, 'burst: one fetch, the first forced refresh');

expect_accepted('valid token after the burst', path => "/$name/env", token => $token);
is(jwks_hits($name) - $fetches, 1, 'no fetch after the burst');

done_testing();
