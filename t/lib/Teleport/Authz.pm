package Teleport::Authz;

# Helpers of the t/authz_*.t tests: requests tagged with a case id (the
# X-Authz-Case header that t/conf/extra_authz.conf.in writes to authz_log),
# requests over one kept-alive connection (so that they reach the same
# child process and its verified-token cache), the lines of authz_log, the
# debug lines of authorization denials, and the files that the subrequest
# and internal redirect tests request.

use strict;
use warnings;

use Apache::Test ();
use Carp qw(croak);
use Exporter qw(import);
use File::Basename qw(basename);
use File::Path qw(make_path);
use LWP::UserAgent ();
use Time::HiRes ();

use Teleport::Test ();
use Teleport::Token qw(write_file);

our @EXPORT_OK = qw(
    new_agent tagged_request authz_log_entry denial_lines lines_containing
    make_site websocket_port
);

# The default header Teleport's application service sets.
use constant ASSERTION_HEADER => 'Teleport-Jwt-Assertion';

# Seconds to wait for a line of authz_log, which httpd writes after it has
# sent the response.
use constant LOG_WAIT_SECONDS => 5;

my $case_counter = 0;

# A user agent.  With keep_alive => 1 its requests share one connection
# and so reach one httpd child process.
sub new_agent {
    my (%args) = @_;
    return LWP::UserAgent->new(timeout => 20,
                               keep_alive => $args{keep_alive} ? 1 : 0);
}

# Send a GET request tagged with a new case id.  Arguments: path, token,
# header (default Teleport-Jwt-Assertion), headers (array reference of more
# name/value pairs), agent (default: a new agent without keep-alive).
# Returns the response and the case id.
sub tagged_request {
    my (%args) = @_;
    my $case = sprintf '%s-%d-%d', basename($0, '.t'), $$, ++$case_counter;
    my @headers = ('X-Authz-Case' => $case, @{ $args{headers} || [] });
    if (defined $args{token}) {
        push @headers, ($args{header} // ASSERTION_HEADER) => $args{token};
    }
    my @values;
    for (my $i = 1; $i < @headers; $i += 2) {
        push @values, ref $headers[$i] ? @{ $headers[$i] } : $headers[$i];
    }
    # zz_token_not_logged.t checks that none of these reached a log file.
    Teleport::Test::record_tokens(@values);
    my $agent = $args{agent} // new_agent();
    my $response = $agent->get(Teleport::Test::server_url($args{path}), @headers);
    return ($response, $case);
}

sub authz_log_path {
    return Apache::Test::vars('t_logs') . '/authz_log';
}

# The authz_log entry of a case as a hash (case, pid, user, reason, status,
# uri; "-" for an unset value), or undef when no line appears within
# LOG_WAIT_SECONDS.
sub authz_log_entry {
    my ($case) = @_;
    my $deadline = Time::HiRes::time() + LOG_WAIT_SECONDS;
    while (1) {
        if (open my $fh, '<', authz_log_path()) {
            while (my $line = <$fh>) {
                chomp $line;
                my %entry = map { split /=/, $_, 2 } split / /, $line;
                return \%entry if ($entry{case} // '') eq $case;
            }
        }
        return undef if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

# The debug lines that the Require providers write for a denial.
sub denial_lines {
    my (@lines) = @_;
    return grep { /\[auth_teleport:debug\].* TLP05\d: Require teleport-/ } @lines;
}

sub lines_containing {
    my ($text, @lines) = @_;
    return grep { index($_, $text) >= 0 } @lines;
}

# Write the files behind /authz-ssi/, /authz-dir/, /authz-err/, /authz-rw/
# and /authz-merge/*/env (see t/conf/extra_authz.conf.in) into the state
# directory, readable by the httpd children.
sub make_site {
    my $state = Teleport::Test::state_dir();
    my @dirs = ('authz-cgi', map { "authz-site/$_" } qw(ssi dir err rw));
    make_path(map({ "$state/$_" } @dirs), { mode => 0755 });
    chmod 0755, "$state/authz-site", map { "$state/$_" } @dirs;
    write_file("$state/authz-site/ssi/page.shtml",
        qq(main-user=<!--#echo var="TELEPORT_USER" -->\n)
        . qq(<!--#include virtual="/authz-sub/env" -->\n), 0644);
    write_file("$state/authz-site/ssi/role.shtml",
        qq(main-user=<!--#echo var="TELEPORT_USER" -->\n)
        . qq(<!--#include virtual="/authz-role/env" -->\n), 0644);
    write_file("$state/authz-site/ssi/user-sub.shtml",
        qq(main-user=<!--#echo var="TELEPORT_USER" -->\n)
        . qq(<!--#include virtual="/authz-sub-user/env" -->\n), 0644);
    write_file("$state/authz-cgi/env.pl", read_text("$state/cgi-bin/env.pl"), 0755);
    return;
}

sub read_text {
    my ($path) = @_;
    open my $fh, '<:raw', $path or croak "cannot read $path: $!";
    local $/;
    return scalar <$fh>;
}

# The port that Apache::Test chose for the WebSocket backend: the value of
# "Define AUTHZ_WS_PORT" in the generated t/conf/extra_authz.conf.
sub websocket_port {
    my $conf = Apache::Test::vars('t_conf') . '/extra_authz.conf';
    open my $fh, '<', $conf or croak "cannot read $conf: $!";
    while (my $line = <$fh>) {
        return $1 if $line =~ /^\s*Define\s+AUTHZ_WS_PORT\s+(\d+)\s*$/;
    }
    croak "no 'Define AUTHZ_WS_PORT <port>' line in $conf";
}

1;
