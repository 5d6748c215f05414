# Log hygiene.  Sends the rows of t/corpus/logs.txt (every reason word of
# the README at least once, values with quotes, CR, LF and 6 KB of kid) to
# locations with LogLevel trace8, then checks:
#   - the kid of 6 KB and the kid with CR, LF and a quote each give one
#     rejection line whose kid field is escaped and capped;
#   - no token sent by the suite so far, and no signature segment of one,
#     is in error_log or access_log.
# The harness runs files in name order, so this file runs after every
# other test file except zz_token_not_logged.t.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Basename qw(dirname);
use JSON ();
use Teleport::Test;
use Teleport::Hostile qw(
    read_corpus hostile_key write_scenario run_token_case sent_values
    TOKEN_CASE_CHECKS
);
use Teleport::Token qw(jwks_v16);

my $t_dir = dirname(__FILE__);
my @rows = read_corpus("$t_dir/corpus/logs.txt", qw(name where expect recipe));

# Reason words of the README's table "Responses and rejection reasons".
open my $readme, '<', "$t_dir/../README.md" or die "README.md: $!";
my $text = do { local $/; <$readme> };
close $readme;
my ($table) = $text =~ /^## Responses and rejection reasons\n(.*?)^## /ms;
my @reasons = ($table // '') =~ /^\| `([a-z_]+)` \|/mg;

plan tests => 1 + TOKEN_CASE_CHECKS * @rows + 10 + 6, need_module('cgid');

my %covered = map { (split ' ', $_->{expect})[1] // '' => 1 } @rows;
$covered{no_keys} = 1 if grep { $_->{expect} =~ /^503/ } @rows;
my @uncovered = grep { !$covered{$_} } @reasons;
# The table lists 19 words; finding fewer means the README was not parsed.
ok(@reasons >= 19 && !@uncovered, 'rows cover every reason word of the README ('
    . scalar(@reasons) . ' found)') or diag("not covered: @uncovered");

write_scenario('hostile-logs', JSON->new->canonical->encode(
    jwks_v16(hostile_key('rsa'), hostile_key('ec'))));
write_scenario('hostile-logs-nokeys', '{"keys":[]}');
set_jwks_control('hostile-logs-nokeys', 'status', "500\n");

my %result = map { $_->{name} => run_token_case($_) } @rows;

# ---- one capped, escaped line per hostile kid

my ($long_line) = rejection_lines(@{ $result{'kid-6-kb'}{log} });
$long_line //= '';
my ($long_kid) = $long_line =~ / kid="([^"]*)" uri=/;
note('kid of 6 KB logged as: ' . ($long_kid // '(no kid field)'));
is($long_kid, ('k' x 64) . '...', 'kid of 6 KB: first 64 bytes and "..." in the kid field');
cmp_ok(length $long_line, '<', 1024, 'kid of 6 KB: rejection line under 1024 bytes');
is(scalar(() = $long_line =~ /k{65}/g), 0, 'kid of 6 KB: never more than 64 bytes of it');

my @crlf_log = @{ $result{'kid-crlf-quote'}{log} };
my @crlf_lines = grep { /TLP030: token rejected: reason=unknown_kid / } @crlf_log;
my ($crlf_kid) = ($crlf_lines[0] // '') =~ / kid="(.*?)" uri=/;
note('kid with CR, LF and quotes logged as: ' . ($crlf_kid // '(no kid field)'));
is(scalar @crlf_lines, 1, 'kid with CR, LF, quotes: one rejection line');
is($crlf_kid, 'x%22%0D%0ATLP030: token rejected: reason=forged kid=%22y',
    'kid with CR, LF, quotes: escaped as %XX in the kid field');
is(scalar(grep { /^TLP030|^\s*TLP030|reason=forged(?! kid=%22)/ } @crlf_log), 0,
    'kid with CR, LF, quotes: no line starts with the injected text');

# The detail quotes the offending value once: exactly two '"' in it, and the
# value's own quote, CR and LF as %22%0D%0A.
for my $name (qw(bad-user bad-issuer alg-not-allowed-quoted-alg)) {
    my ($line) = rejection_lines(@{ $result{$name}{log} });
    my ($detail) = ($line // '') =~ / uri=\S+: (.*)$/;
    note("$name: detail: " . ($detail // '(none)'));
    like($detail // '', qr/^[^"]*"[^"]*%22%0D%0A[^"]*"[^"]*$/,
        "$name: quote, CR and LF escaped in the detail");
}

my ($audience_line) = rejection_lines(@{ $result{'bad-audience-3-kb'}{log} });
cmp_ok(length($audience_line // ''), '<', 1024, 'aud of 3 KB: rejection line under 1024 bytes');

# ---- LogLevel trace8 was in effect for these requests

my @all_lines = map { @{ $_->{log} } } values %result;
ok(scalar(grep { /:trace[1-8]\]/ } @all_lines) > 0, 'trace-level lines were logged for the rows');

# ---- no token and no signature in the logs

# Values sent by the hostile tests (hostile-sent) and by every test that
# used Teleport::Test::send_request (sent-tokens).  Values shorter than 24
# bytes (",", "..", "Bearer") could appear in a log by chance; signature
# segments shorter than 16 characters are skipped for the same reason.
my @values = sent_values();
if (open my $fh, '<:raw', state_dir() . '/sent-tokens') {
    chomp(my @lines = <$fh>);
    push @values, @lines;
    close $fh;
}
my %needle;
for my $value (@values) {
    my $token = $value =~ s/^\s*(?:Bearer|Basic)\s+//ir =~ s/^\s+|\s+$//gr;
    $needle{$token} = 1 if length $token >= 24;
    my $signature = (split /\./, $token, -1)[2] // '';
    $needle{$signature} = 1 if length $signature >= 16;
}
note(scalar(@values) . ' values sent, ' . scalar(keys %needle) . ' tokens and signatures to look for');
ok(keys(%needle) >= @rows, "tokens and signatures collected (at least one per row)");

for my $log (qw(error_log access_log)) {
    my $path = Apache::Test::vars('t_logs') . "/$log";
    open my $in, '<:raw', $path or die "$path: $!";
    my $content = do { local $/; <$in> };
    close $in;
    my $marker = $log eq 'error_log' ? 'token rejected: reason=' : '/hostile-logs/env';
    ok(index($content, $marker) >= 0, "$log: read (contains '$marker')");
    my @found = grep { index($content, $_) >= 0 } sort keys %needle;
    is(scalar @found, 0, "$log: no token or signature sent by the suite");
    diag("$log contains: " . substr($_, 0, 80)) for @found[0 .. ($#found < 2 ? $#found : 2)];
}
