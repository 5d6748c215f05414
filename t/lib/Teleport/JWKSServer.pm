package Teleport::JWKSServer;

# A forked HTTPS server on 127.0.0.1 that plays a Teleport proxy's JWKS
# endpoint for the tests.
#
# GET /<scenario>/.well-known/jwks.json is served from the directory
# <root>/<scenario>/, whose files the tests may change between requests:
#   jwks.json  response body
#   body       if present, the response body instead of jwks.json
#   status     HTTP status code (default 200)
#   delay      seconds to wait before responding (default 0, at most 30)
#   hits       written by the server: requests received for this scenario
# Connections are accepted one at a time, so hits counts are exact.  A
# delayed response is sent by a forked child after the hit is counted.
#
# Two listeners share the scenarios: "port" presents a certificate for
# 127.0.0.1 and localhost, "wrong_name_port" one that names another host.
# The server exits by itself after "lifetime" seconds.

use strict;
use warnings;

use Carp qw(croak);
use IO::Select ();
use IO::Socket::IP ();
use IO::Socket::SSL ();
use POSIX ();
use Time::HiRes ();

use constant MAX_DELAY       => 30;
use constant IO_TIMEOUT      => 5;
use constant MAX_HEADER_SIZE => 16384;

my %REASON = (200 => 'OK', 404 => 'Not Found', 500 => 'Internal Server Error',
              502 => 'Bad Gateway', 503 => 'Service Unavailable');

# Start the server.  Arguments: root, cert, key, wrong_name_cert,
# wrong_name_key, lifetime (seconds, default 1800), log (file path).
# Returns an object with port, wrong_name_port and pid.
sub start {
    my ($class, %args) = @_;
    for (qw(root cert key wrong_name_cert wrong_name_key)) {
        croak "JWKSServer->start: $_ missing" unless defined $args{$_};
    }
    $args{lifetime} //= 1800;

    my $main = listen_on_loopback();
    my $wrong_name = listen_on_loopback();
    my $self = bless {
        %args,
        port            => $main->sockport,
        wrong_name_port => $wrong_name->sockport,
    }, $class;

    my $pid = fork;
    croak "JWKSServer->start: fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        my $status = eval { $self->serve($main, $wrong_name); 0 } // do {
            warn "JWKS server: $@";
            1;
        };
        # POSIX::_exit skips the END blocks inherited from the test runner.
        POSIX::_exit($status);
    }
    close $main;
    close $wrong_name;
    $self->{pid} = $pid;
    return $self;
}

sub port            { return $_[0]{port} }
sub wrong_name_port { return $_[0]{wrong_name_port} }
sub pid             { return $_[0]{pid} }

# Stop the server started by this object: SIGTERM to its pid, then wait.
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    return;
}

sub listen_on_loopback {
    my $socket = IO::Socket::IP->new(
        LocalHost => '127.0.0.1',
        LocalPort => 0,
        Listen    => 16,
        ReuseAddr => 1,
        Proto     => 'tcp',
    ) or croak "JWKSServer: cannot listen on 127.0.0.1: $@";
    return $socket;
}

sub serve {
    my ($self, $main, $wrong_name) = @_;
    $0 = 'teleport-test-jwks-server';
    my $deadline = time + $self->{lifetime};
    my %listener_cert = (
        fileno($main)       => [ $self->{cert}, $self->{key} ],
        fileno($wrong_name) => [ $self->{wrong_name_cert}, $self->{wrong_name_key} ],
    );
    my $terminated = 0;
    local $SIG{TERM} = sub { $terminated = 1 };
    local $SIG{PIPE} = 'IGNORE';
    my $select = IO::Select->new($main, $wrong_name);

    while (!$terminated && time < $deadline) {
        1 while waitpid(-1, POSIX::WNOHANG()) > 0;
        my @ready = $select->can_read(1);
        for my $listener (@ready) {
            my $client = $listener->accept or next;
            my ($cert, $key) = @{ $listener_cert{ fileno $listener } };
            $self->handle_connection($client, $cert, $key, $main, $wrong_name);
        }
    }
    $self->log_line("exiting: " . ($terminated ? 'SIGTERM' : 'lifetime reached'));
    return;
}

sub handle_connection {
    my ($self, $client, $cert, $key, @listeners) = @_;
    my $tls = IO::Socket::SSL->start_SSL($client,
        SSL_server    => 1,
        SSL_cert_file => $cert,
        SSL_key_file  => $key,
        Timeout       => IO_TIMEOUT,
    );
    unless ($tls) {
        $self->log_line("TLS handshake failed: $IO::Socket::SSL::SSL_ERROR");
        close $client;
        return;
    }

    my $request = read_request_head($tls);
    unless (defined $request) {
        $self->log_line('no complete request: connection closed or '
            . IO_TIMEOUT . ' s passed');
        $tls->close(SSL_fast_shutdown => 1);
        return;
    }

    my ($method, $path) = $request =~ m{^(\S+) (\S+) HTTP/1\.[01]\r?\n};
    my ($scenario) = ($path // '') =~ m{^/([a-z0-9][a-z0-9_-]*)/\.well-known/jwks\.json$};
    my $dir = defined $scenario ? "$self->{root}/$scenario" : undef;
    if (!defined $dir || !-d $dir || ($method // '') ne 'GET') {
        $self->log_line("404 for " . ($method // '?') . ' ' . ($path // '?'));
        write_response($tls, 404, "not found\n");
        return;
    }

    my $hits = count_hit($dir);
    my $status = read_control($dir, 'status') // 200;
    my $delay = read_control($dir, 'delay') // 0;
    $delay = MAX_DELAY if $delay > MAX_DELAY;
    my $body = read_control($dir, 'body', 1) // read_control($dir, 'jwks.json', 1) // '';
    $self->log_line("$scenario hit $hits: status $status, delay $delay s, "
        . length($body) . ' bytes');

    if ($delay > 0) {
        my $pid = fork;
        if (defined $pid && $pid == 0) {
            close $_ for @listeners;
            Time::HiRes::sleep($delay);
            write_response($tls, $status, $body);
            POSIX::_exit(0);
        }
        # The child owns the connection; close only this process's copy.
        $tls->close(SSL_no_shutdown => 1) if defined $pid;
        write_response($tls, 500, "fork failed\n") unless defined $pid;
        return;
    }
    write_response($tls, $status, $body);
    return;
}

# Read up to the blank line that ends the request head; undef on timeout.
sub read_request_head {
    my ($tls) = @_;
    my $head = '';
    my $select = IO::Select->new($tls);
    my $deadline = Time::HiRes::time() + IO_TIMEOUT;
    while ($head !~ /\r?\n\r?\n/ && length $head < MAX_HEADER_SIZE) {
        my $left = $deadline - Time::HiRes::time();
        return undef if $left <= 0;
        next unless $tls->pending || $select->can_read($left);
        my $read = sysread $tls, $head, 4096, length $head;
        return undef unless $read;
    }
    return $head;
}

sub write_response {
    my ($tls, $status, $body) = @_;
    my $reason = $REASON{$status} // 'Status';
    my $response = "HTTP/1.1 $status $reason\r\n"
        . "Content-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\n"
        . "Connection: close\r\n\r\n"
        . $body;
    print {$tls} $response;
    $tls->close;
    return;
}

# Read a control file of the scenario; undef when it does not exist.
# Unless $raw, surrounding whitespace is removed.
sub read_control {
    my ($dir, $name, $raw) = @_;
    open my $fh, '<:raw', "$dir/$name" or return undef;
    local $/;
    my $content = <$fh>;
    $content = '' unless defined $content;
    return $content if $raw;
    $content =~ s/^\s+|\s+$//g;
    return $content;
}

sub count_hit {
    my ($dir) = @_;
    my $hits = (read_control($dir, 'hits') // 0) + 1;
    my $tmp = "$dir/hits.tmp";
    open my $fh, '>', $tmp or die "cannot write $tmp: $!\n";
    print {$fh} "$hits\n";
    close $fh or die "cannot write $tmp: $!\n";
    rename $tmp, "$dir/hits" or die "cannot rename $tmp: $!\n";
    return $hits;
}

sub log_line {
    my ($self, $message) = @_;
    return unless defined $self->{log};
    open my $fh, '>>', $self->{log} or return;
    printf {$fh} "%.3f %s\n", Time::HiRes::time(), $message;
    close $fh;
    return;
}

1;
