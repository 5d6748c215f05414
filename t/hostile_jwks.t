# Hostile JWKS documents from t/corpus/jwks.txt, each served to its own
# location by the JWKS test server (or, for "stream", by a CGI of this
# httpd).  A document without a usable key must give 503 with Retry-After
# and one "JWKS fetch from ... failed: <error>" line, within 3 s.  A
# document with usable keys must serve them and warn about the skipped
# entries.  Ends with checks that the streamed body was cut off and that no
# child process crashed.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Basename qw(dirname);
use Teleport::Test;
use Teleport::Hostile qw(
    read_corpus run_jwks_case count_crashes access_log_offset access_log_lines
    JWKS_CASE_CHECKS
);

my $t_dir = dirname(__FILE__);
my @rows = read_corpus("$t_dir/corpus/jwks.txt", qw(name expect detail token jwks));

# Every scenario needs its <Location> in extra_hostile.conf.in.  Without
# one, the request would reach the CGI unauthenticated.
open my $conf, '<', "$t_dir/conf/extra_hostile.conf.in" or die "extra_hostile.conf.in: $!";
my %location = map { m{<Location "/hostile-jwks-([a-z0-9-]+)/">} ? ($1 => 1) : () } <$conf>;
close $conf;
my @missing = grep { !$location{ (split m{/}, $_->{name})[0] } } @rows;
die 'no <Location> in extra_hostile.conf.in for: '
    . join(', ', map { $_->{name} } @missing) . "\n" if @missing;

plan tests => JWKS_CASE_CHECKS * @rows + 2, need_module('cgid');

my $offset = error_log_offset();
my $access_offset = access_log_offset();
my $started = time;
run_jwks_case($_) for @rows;
note(scalar(@rows) . ' rows in ' . (time - $started) . ' s');

# The CGI offers 50 MB, and httpd's access_log records the body bytes it
# sent before the module closed the connection.  (The startup fetch of this URL
# waited for httpd and got 404, before the CGI existed.)
my ($stream) = grep { m{"GET /hostile-stream/\.well-known/jwks\.json HTTP/1\.1" 200 } }
    access_log_lines($access_offset);
my ($bytes) = ($stream // '') =~ / (\d+)$/;
note('streamed body: ' . ($stream // '(no access_log line)'));
ok(defined $bytes && $bytes < 10_000_000,
    'streamed JWKS: under 10 MB of 50 MB sent before the fetch was cut off');

is(count_crashes($offset), 0, 'no child process crashed');
