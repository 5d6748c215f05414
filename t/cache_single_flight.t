# Single flight: 20 requests sent at the same moment over 20 connections,
# to a location without keys whose JWKS endpoint answers after 1 s, make
# exactly one fetch; every request waits for it and gets 200.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id jwks_v16);
use Teleport::CacheTest qw(create_scenario scenario_url static_path count_lines
    parallel_requests);

use constant CLIENTS => 20;
use constant DELAY   => 1;

my $name = 'cache-single-flight';
my $url = scenario_url($name);
my $key = test_key('rsa-main');
my $token = mint(key => $key, kid => key_id($key));

create_scenario($name, jwks_v16($key), delay => DELAY . "\n");

my $offset = error_log_offset();
my @results = parallel_requests(
    clients  => CLIENTS,
    requests => 1,
    request  => sub { (static_path($name), $token) },
);
my @log = error_log_since($offset);

my %codes;
$codes{ $_->{code} }++ for @results;
my ($slowest) = sort { $b <=> $a } map { $_->{seconds} } @results;
note('got status codes ' . join(', ', map { "$_ x $codes{$_}" } sort keys %codes)
    . ", slowest response after $slowest s; expected 200 x " . CLIENTS);

is(scalar @results, CLIENTS, 'every client got a response');
is($codes{200} // 0, CLIENTS, 'every request 200');
is(jwks_hits($name), 1, 'one JWKS request');
is(count_lines(\@log, "TLP012: fetched ", " usable keys from $url"), 1, 'one TLP012 line');
ok($slowest >= DELAY - 0.1, "requests waited for the fetch ($slowest s)");
ok($slowest < DELAY + 2, "requests waited for one fetch only ($slowest s)");

done_testing();
