package Teleport::EchoServer;

# A forked plain-HTTP server on 127.0.0.1 that plays the application behind
# httpd's mod_proxy: the response to every request is a JSON object of the
# request headers it received (names lower-cased, repeated headers joined
# with ", ").  The assertion headers are reported as present or absent,
# never with their value.  It serves one connection at a time and exits by
# itself after "lifetime" seconds.

use strict;
use warnings;

use Carp qw(croak);
use IO::Select ();
use IO::Socket::IP ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

use constant IO_TIMEOUT      => 5;
use constant MAX_HEADER_SIZE => 65536;

# Start the server.  Arguments: lifetime (seconds, default 1800).  Returns
# an object with port and pid.
sub start {
    my ($class, %args) = @_;
    my $listener = IO::Socket::IP->new(
        LocalHost => '127.0.0.1',
        LocalPort => 0,
        Listen    => 16,
        ReuseAddr => 1,
        Proto     => 'tcp',
    ) or croak "EchoServer: cannot listen on 127.0.0.1: $@";
    my $self = bless { lifetime => $args{lifetime} // 1800,
                       port => $listener->sockport }, $class;

    my $pid = fork;
    croak "EchoServer->start: fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        my $status = eval { $self->serve($listener); 0 } // do {
            warn "echo server: $@";
            1;
        };
        # POSIX::_exit skips the END blocks inherited from the test runner.
        POSIX::_exit($status);
    }
    close $listener;
    $self->{pid} = $pid;
    return $self;
}

sub port { return $_[0]{port} }
sub pid  { return $_[0]{pid} }

# Stop the server started by this object: SIGTERM to its pid, then wait.
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    return;
}

sub serve {
    my ($self, $listener) = @_;
    $0 = 'teleport-test-echo-server';
    my $deadline = time + $self->{lifetime};
    my $terminated = 0;
    local $SIG{TERM} = sub { $terminated = 1 };
    local $SIG{PIPE} = 'IGNORE';
    my $select = IO::Select->new($listener);
    while (!$terminated && time < $deadline) {
        next unless $select->can_read(1);
        my $client = $listener->accept or next;
        respond($client);
        close $client;
    }
    return;
}

sub respond {
    my ($client) = @_;
    my $head = '';
    my $select = IO::Select->new($client);
    my $deadline = Time::HiRes::time() + IO_TIMEOUT;
    while ($head !~ /\r?\n\r?\n/ && length $head < MAX_HEADER_SIZE) {
        my $left = $deadline - Time::HiRes::time();
        return if $left <= 0 || !$select->can_read($left);
        my $read = sysread $client, $head, 4096, length $head;
        return unless $read;
    }

    my ($request_line, @lines) = split /\r?\n/, (split /\r?\n\r?\n/, $head)[0];
    my %headers;
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        $name = lc $name;
        $headers{$name} = exists $headers{$name} ? "$headers{$name}, $value" : $value;
    }
    for my $secret (qw(teleport-jwt-assertion authorization)) {
        $headers{$secret} = '(present)' if exists $headers{$secret};
    }
    my $body = JSON::PP->new->canonical->encode(
        { request_line => $request_line // '', headers => \%headers }) . "\n";
    print {$client} "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n$body";
    return;
}

1;
