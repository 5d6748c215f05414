# The command-line verifier on the hostile-input corpus: every row of
# t/corpus/tokens.txt that sends one plain token to the main location gets
# the same verdict and reason word from tools/teleport-jwt-verify as from
# the module.  Runs after hostile_corpus.t, which writes the key set.
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use File::Basename qw(dirname);
use File::Temp qw(tempfile);
use Teleport::Test;
use Teleport::Hostile qw(read_corpus);

my $top = dirname(__FILE__) . '/..';
my $cli = "$top/tools/teleport-jwt-verify";
my $jwks = state_dir() . '/jwks/hostile/jwks.json';

# Reasons the module finds in the request, before the verifier runs.
my %request_reasons = map { $_ => 1 } qw(multiple_headers bad_scheme);

my @cases;
for my $row (read_corpus(dirname(__FILE__) . '/corpus/tokens.txt',
                         qw(name where expect recipe))) {
    next unless $row->{where} eq 'main';
    my ($status, $reason) = split ' ', $row->{expect};
    next unless $status == 200 || ($status == 401 && defined $reason
                                   && $reason ne '-'
                                   && !$request_reasons{$reason});
    # Rows that depend on an earlier request (the token cache) are the
    # module's alone.
    next if $row->{recipe} =~ /after_request/;
    my $value = Teleport::Hostile::evaluate($row, 'recipe');
    # One token of visible ASCII: httpd trims or refuses anything else
    # before the module sees it.
    next if ref $value || $value !~ /\A[\x21-\x7e]+\z/;
    push @cases, [ $row->{name}, $value, $status, $reason ];
}

plan tests => 3 + 2 * @cases;

ok(-x $cli, "$cli is built");
ok(-r $jwks, "key set $jwks written by hostile_corpus.t");
cmp_ok(scalar @cases, '>=', 100, 'at least 100 corpus rows apply');

for my $case (@cases) {
    my ($name, $token, $status, $reason) = @$case;
    my ($fh, $path) = tempfile(UNLINK => 1);
    print {$fh} $token;
    close $fh;
    # scripts/sanitize-suite.sh builds the tool with ASan: memory errors
    # still fail the run, but LeakSanitizer cannot see APR's pool memory.
    my $output = `ASAN_OPTIONS=detect_leaks=0 '$cli' --jwks-file '$jwks' --audience http://localhost:8080 --issuer teleport.example.com - < '$path' 2>&1`;
    my $exit = $? >> 8;
    my ($word) = $output =~ /^rejected: reason=(\w+)/m;
    if ($status == 200) {
        is($exit, 0, "$name: valid (exit 0)") or note($output);
        like($output, qr/^valid$/m, "$name: prints valid");
    }
    else {
        is($exit, 1, "$name: rejected (exit 1)") or note($output);
        is($word // '(none)', $reason, "$name: reason $reason");
    }
}
