# The teleport-status handler: counters summed over all child processes
# after a known sequence of requests, in its three formats, and the state
# of a key source from the shared cache.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use JSON;
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims);

plan tests => 26, need_module('cgid');

my $key = test_key('rsa-main');
my $v16_url = server_url('/v16/env') =~ s{^https?://[^/]+}{}r;

sub status {
    my ($format) = @_;
    my $response = Teleport::Test::user_agent()->get(server_url('/teleport-status'
                                                . ($format ? "?$format" : '')));
    return $response;
}

sub counters {
    my $response = status('json');
    return decode_json($response->decoded_content);
}

my $before = counters();

# A known sequence, each request on a new connection so that several
# children answer: 5 accepted, 3 expired, 2 malformed.
my $now = time;
for (1 .. 5) {
    send_request(path => '/v16/env', token => mint(key => $key, kid => key_id($key)));
}
for (1 .. 3) {
    send_request(path => '/v16/env', token => mint(key => $key, kid => key_id($key),
        claims => teleport_claims(iat => $now - 7200, nbf => $now - 7210, exp => $now - 3600)));
}
send_request(path => '/v16/env', token => 'not-a-token') for 1 .. 2;

my $after = counters();
note("accepted: $before->{accepted} -> $after->{accepted}; expired: "
     . "$before->{rejected}{expired} -> $after->{rejected}{expired}");
is($after->{accepted} - $before->{accepted}, 5, 'json: 5 more accepted');
is($after->{rejected}{expired} - $before->{rejected}{expired}, 3, 'json: 3 more expired');
is($after->{rejected}{malformed} - $before->{rejected}{malformed}, 2, 'json: 2 more malformed');
is($after->{unavailable} - $before->{unavailable}, 0, 'json: no more 503');
ok(exists $after->{rejected}{other}, 'json: the "other" reason is listed');

my ($v16) = grep { $_->{url} =~ m{/v16/\.well-known/jwks\.json$} } @{ $after->{sources} };
ok($v16, 'json: the v16 key source is listed');
ok((grep { $_->{kid} eq key_id($key) && $_->{kty} eq 'RSA' && $_->{bits} == 2048 }
    @{ $v16->{keys} || [] }), 'json: its key id, type and size');
ok($v16->{fetched_at} && $v16->{fetched_at} <= time, 'json: a fetch time');
ok(!defined $v16->{last_error}, 'json: no fetch error');
ok($v16->{fetches}{succeeded} >= 1, 'json: at least one successful fetch');

my $text = status('');
is($text->code, 200, 'text: status');
like($text->header('Content-Type'), qr{^text/plain}, 'text: content type');
like($text->decoded_content, qr/^requests accepted: \Q$after->{accepted}\E$/m,
     'text: accepted count matches json');
like($text->decoded_content, qr/^  expired: \d+$/m, 'text: expired listed');
like($text->decoded_content, qr{^key source \S+/v16/\.well-known/jwks\.json$}m,
     'text: key source listed');

my $metrics = status('metrics');
is($metrics->code, 200, 'metrics: status');
like($metrics->header('Content-Type'), qr{^text/plain; version=0\.0\.4}, 'metrics: content type');
my %series;
for my $line (split /\n/, $metrics->decoded_content) {
    next if $line =~ /^#/;
    my ($name, $value) = $line =~ /^(\S+) (\d+)$/ or next;
    $series{$name} = $value;
}
is($series{'teleport_requests_total{outcome="accepted"}'}, $after->{accepted},
   'metrics: accepted matches json');
is($series{'teleport_requests_total{outcome="rejected",reason="expired"}'},
   $after->{rejected}{expired}, 'metrics: expired matches json');
ok((grep { /^teleport_jwks_keys\{url="[^"]+\/v16\/\.well-known\/jwks\.json"\}$/ } keys %series),
   'metrics: keys gauge of the v16 source');
like($metrics->decoded_content, qr/^# TYPE teleport_requests_total counter$/m,
     'metrics: TYPE line');

my $post = Teleport::Test::user_agent()->post(server_url('/teleport-status'));
is($post->code, 405, 'POST: method not allowed');

# mod_status: the machine-readable page carries the totals, the HTML page a
# summary.
my $auto = Teleport::Test::user_agent()->get(server_url('/server-status?auto'));
is($auto->code, 200, 'mod_status ?auto: status');
my ($accepted) = $auto->decoded_content =~ /^TeleportAccepted: (\d+)$/m;
ok(defined $accepted && $accepted >= $after->{accepted},
   'mod_status ?auto: TeleportAccepted at least the json count');
like($auto->decoded_content, qr/^TeleportRejected: \d+$/m, 'mod_status ?auto: TeleportRejected');
my $html = Teleport::Test::user_agent()->get(server_url('/server-status'));
like($html->decoded_content, qr{<h2>mod_auth_teleport</h2>}, 'mod_status page: summary');
