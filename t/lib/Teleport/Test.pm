package Teleport::Test;

# Helpers shared by the .t files: requests to the test server on 127.0.0.1,
# the error_log lines a request caused, JWKS test server scenarios, and
# check functions that print what they got and expected for each case.

use strict;
use warnings;

use Apache::Test ();
use Carp qw(croak);
use Exporter qw(import);
use JSON ();
use LWP::UserAgent ();
use Test::More ();

use Teleport::Token qw(load_key write_jwks write_file);

our @EXPORT = qw(
    server_url state_dir test_key send_request response_env
    error_log_path error_log_offset error_log_since rejection_lines
    jwks_hits set_jwks_control remove_jwks_control write_scenario_jwks
    expect_accepted expect_rejected expect_unavailable
    ACCEPT_CHECKS REJECT_CHECKS UNAVAILABLE_CHECKS
);

# Assertions made by one call of expect_accepted, expect_rejected and
# expect_unavailable, for the plans of the .t files.
use constant ACCEPT_CHECKS      => 3;
use constant REJECT_CHECKS      => 4;
use constant UNAVAILABLE_CHECKS => 4;

# The default header Teleport's application service sets.
use constant ASSERTION_HEADER => 'Teleport-Jwt-Assertion';

my $json = JSON->new->utf8->canonical;

sub state_dir {
    my $state = $ENV{TELEPORT_TEST_STATE};
    croak 'TELEPORT_TEST_STATE is not set: run the suite with t/TEST'
        unless defined $state && -d $state;
    return $state;
}

sub server_url {
    my ($path) = @_;
    my $port = Apache::Test::vars('port');
    return "http://127.0.0.1:$port$path";
}

sub test_key {
    my ($name) = @_;
    return load_key(state_dir() . "/keys/$name.pem");
}

my $user_agent;

sub user_agent {
    $user_agent //= LWP::UserAgent->new(timeout => 20, keep_alive => 0);
    return $user_agent;
}

# Remember every token sent, so that a later test can check that none
# reached a log file.
sub record_tokens {
    my (@values) = @_;
    my @tokens = grep { defined && /^[\w-]+\.[\w-]+\.[\w-]{16,}$/ }
        map { s/^Bearer\s+//r } @values;
    return unless @tokens;
    open my $fh, '>>', state_dir() . '/sent-tokens' or croak "sent-tokens: $!";
    print {$fh} "$_\n" for @tokens;
    close $fh;
    return;
}

# Send a GET request.  Arguments: path, token (sent in header, default
# Teleport-Jwt-Assertion), headers (array reference of more name/value pairs;
# a value may be an array reference to send the header more than once).
sub send_request {
    my (%args) = @_;
    my @headers = @{ $args{headers} || [] };
    if (defined $args{token}) {
        unshift @headers, ($args{header} // ASSERTION_HEADER) => $args{token};
    }
    my @values;
    for (my $i = 1; $i < @headers; $i += 2) {
        push @values, ref $headers[$i] ? @{ $headers[$i] } : $headers[$i];
    }
    record_tokens(@values);
    return user_agent()->get(server_url($args{path}), @headers);
}

# The JSON printed by env.pl, or an empty hash when the body is not JSON.
sub response_env {
    my ($response) = @_;
    my $env = eval { $json->decode($response->decoded_content) };
    return ref $env eq 'HASH' ? $env : {};
}

sub error_log_path {
    return Apache::Test::vars('t_logs') . '/error_log';
}

sub error_log_offset {
    return -s error_log_path() // 0;
}

sub error_log_since {
    my ($offset) = @_;
    open my $fh, '<', error_log_path() or croak 'cannot read error_log: ' . $!;
    seek $fh, $offset, 0;
    my @lines = <$fh>;
    chomp @lines;
    return @lines;
}

sub rejection_lines {
    my (@lines) = @_;
    return grep { /token rejected: / } @lines;
}

sub scenario_dir {
    my ($scenario) = @_;
    my $dir = state_dir() . "/jwks/$scenario";
    croak "unknown JWKS scenario $scenario" unless -d $dir;
    return $dir;
}

sub jwks_hits {
    my ($scenario) = @_;
    my $file = scenario_dir($scenario) . '/hits';
    open my $fh, '<', $file or return 0;
    my $hits = <$fh>;
    return defined $hits ? 0 + $hits : 0;
}

sub set_jwks_control {
    my ($scenario, $name, $content) = @_;
    write_file(scenario_dir($scenario) . "/$name", $content, 0644);
    return;
}

sub remove_jwks_control {
    my ($scenario, $name) = @_;
    unlink scenario_dir($scenario) . "/$name";
    return;
}

sub write_scenario_jwks {
    my ($scenario, $jwks) = @_;
    write_jwks(scenario_dir($scenario) . '/jwks.json', $jwks);
    return;
}

# Print the request outcome and the new error_log lines when a check of
# this case failed.
sub explain_failure {
    my ($case, $response, @log) = @_;
    Test::More::diag("$case: response " . $response->status_line);
    for my $name (qw(WWW-Authenticate Retry-After)) {
        my $value = $response->header($name);
        Test::More::diag("$case: $name: $value") if defined $value;
    }
    Test::More::diag("$case: error_log: $_") for @log;
    Test::More::diag("$case: (no error_log lines)") unless @log;
    return;
}

# Send the request and check a 200 response for the expected user, with no
# rejection logged.  Makes ACCEPT_CHECKS assertions; returns the response.
sub expect_accepted {
    my ($case, %args) = @_;
    my $user = exists $args{user} ? delete $args{user} : 'alice';
    my $offset = error_log_offset();
    my $response = send_request(%args);
    my @log = error_log_since($offset);
    my $env = response_env($response);
    my @rejections = rejection_lines(@log);
    Test::More::note("$case: got " . $response->code . ' user '
        . ($env->{REMOTE_USER} // '(none)') . "; expected 200 user $user");

    my $ok = 1;
    $ok &= Test::More::is($response->code, 200, "$case: status");
    $ok &= Test::More::is($env->{REMOTE_USER}, $user, "$case: REMOTE_USER");
    $ok &= Test::More::is(scalar @rejections, 0, "$case: no rejection logged");
    explain_failure($case, $response, @log) unless $ok;
    return $response;
}

# Send the request and check a 401 with a WWW-Authenticate challenge and
# exactly one info-level "token rejected: reason=<reason>" line.  Makes
# REJECT_CHECKS assertions; returns the response and the rejection line.
sub expect_rejected {
    my ($case, %args) = @_;
    my $reason = delete $args{reason} or croak 'expect_rejected: reason missing';
    my $offset = error_log_offset();
    my $response = send_request(%args);
    my @log = error_log_since($offset);
    my @rejections = rejection_lines(@log);
    my ($got_reason) = map { /token rejected: reason=(\S+)/ } @rejections;
    Test::More::note("$case: got " . $response->code . ' reason '
        . ($got_reason // '(none)') . "; expected 401 reason $reason");

    my $ok = 1;
    $ok &= Test::More::is($response->code, 401, "$case: status");
    $ok &= Test::More::is(scalar @rejections, 1, "$case: one rejection line");
    $ok &= Test::More::is($got_reason, $reason, "$case: reason");
    $ok &= Test::More::like($rejections[0] // '', qr/\[[\w]*:info\]/,
        "$case: logged at info");
    explain_failure($case, $response, @log) unless $ok;
    return ($response, $rejections[0]);
}

# Send the request and check a 503 with Retry-After, an error-level line
# and no rejection line.  Makes UNAVAILABLE_CHECKS assertions.
sub expect_unavailable {
    my ($case, %args) = @_;
    my $offset = error_log_offset();
    my $response = send_request(%args);
    my @log = error_log_since($offset);
    my $retry_after = $response->header('Retry-After');
    Test::More::note("$case: got " . $response->code . ' Retry-After '
        . ($retry_after // '(none)') . '; expected 503 with Retry-After');

    my $ok = 1;
    $ok &= Test::More::is($response->code, 503, "$case: status");
    $ok &= Test::More::like($retry_after // '', qr/^\d+$/, "$case: Retry-After seconds");
    $ok &= Test::More::ok((grep { /\[[\w]*:error\]/ } @log) > 0, "$case: error logged");
    $ok &= Test::More::is(scalar rejection_lines(@log), 0, "$case: no rejection line");
    explain_failure($case, $response, @log) unless $ok;
    return $response;
}

1;
