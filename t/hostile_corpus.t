# Hostile tokens and assertion headers from t/corpus/tokens.txt, each sent to
# the location its row names.  Checks the status, the one "token rejected:
# reason=<word>" line (or none), REMOTE_USER for accepted tokens, and that
# the module logs no error.  Ends with checks that no child process crashed
# and that URLs in token headers were never fetched.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Basename qw(dirname);
use JSON ();
use Teleport::Test;
use Teleport::Hostile qw(
    read_corpus hostile_key jwk_of write_scenario run_token_case
    count_crashes TOKEN_CASE_CHECKS
);
use Teleport::Token qw(jwks_v16);

my $corpus = dirname(__FILE__) . '/corpus/tokens.txt';
my @rows = read_corpus($corpus, qw(name where expect recipe));

plan tests => TOKEN_CASE_CHECKS * @rows + 3, need_module('cgid');

# The keys every location of the corpus may select, Teleport's v16 shape
# for rsa and ec (each key listed with its kid and with "kid": "").
my $keys = jwks_v16(hostile_key('rsa'), hostile_key('ec'));
push @{ $keys->{keys} }, map { jwk_of($_) } qw(rsa-any p384 p521 ed25519);
write_scenario('hostile', JSON->new->canonical->encode($keys));
# Served only if a token header's URL were followed.
write_scenario('hostile-jku', JSON->new->canonical->encode(
    { keys => [ jwk_of('other') ] }));

my $offset = error_log_offset();
my $started = time;
run_token_case($_) for @rows;
my $elapsed = time - $started;
note(scalar(@rows) . " rows in $elapsed s");

is(count_crashes($offset), 0, 'no child process crashed');
is(jwks_hits('hostile-jku'), 0, 'jku and x5u URLs were never fetched');
# Unknown kids force a refresh at most once per TeleportJWKSMinRefresh
# (default 60 s), however many rows carry one.
my $fetches = jwks_hits('hostile');
my $allowed = 2 + int($elapsed / 60);
note("JWKS of scenario hostile fetched $fetches times");
ok($fetches <= $allowed, "keys fetched at most $allowed times (first use, forced refreshes)");
