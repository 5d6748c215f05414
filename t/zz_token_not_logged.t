# No token, and no signature of one, reaches error_log or access_log: checks
# the tokens this file sends, accepted and rejected, to a location that logs
# the module at level debug, and every token the earlier test files sent
# (the harness runs this file last, in name order).
use strict;
use warnings;

use Apache::Test qw(-withtestmore);
use Teleport::Test;
use Teleport::Token qw(mint key_id teleport_claims tamper_payload);

my $key = test_key('rsa-main');
my $other = test_key('rsa-other');
my $kid = key_id($key);
my $valid = mint(key => $key, kid => $kid);
my @sent = (
    [ 'accepted',      200, $valid ],
    [ 'bad signature', 401, mint(key => $other, kid => $kid) ],
    [ 'expired',       401, mint(key => $key, kid => $kid,
                                 claims => teleport_claims(exp => time - 3600)) ],
    [ 'unknown kid',   401, mint(key => $key, kid => 'not-a-known-kid') ],
    [ 'tampered',      401, tamper_payload($valid, sub { $_[0]{username} = 'root' }) ],
);

plan tests => @sent + 3;

for my $case (@sent) {
    my ($name, $status, $token) = @$case;
    my $response = send_request(path => '/logs/', token => $token);
    # /logs/ has no content: 404 after authentication.
    my $got = $response->code == 404 ? 200 : $response->code;
    is($got, $status, "$name: status (404 counts as accepted)");
}

open my $fh, '<', state_dir() . '/sent-tokens' or die "sent-tokens: $!";
chomp(my @tokens = <$fh>);
close $fh;
my %seen;
@tokens = grep { !$seen{$_}++ } @tokens;
my @signatures = grep { length >= 40 } map { (split /\./)[2] // '' } @tokens;
note(scalar(@tokens) . ' distinct tokens sent by the suite');
ok(@tokens >= @sent, 'tokens recorded');

for my $log (qw(error_log access_log)) {
    my $path = Apache::Test::vars('t_logs') . "/$log";
    open my $in, '<', $path or die "$path: $!";
    my $text = do { local $/; <$in> };
    close $in;
    my @found = grep { index($text, $_) >= 0 } @signatures;
    is(scalar @found, 0, "$log: no token signature");
    diag("$log contains the signature $_") for @found[0 .. ($#found < 2 ? $#found : 2)];
}
