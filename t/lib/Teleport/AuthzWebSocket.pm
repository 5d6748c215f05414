package Teleport::AuthzWebSocket;

# A WebSocket echo server on 127.0.0.1 for t/authz_websocket.t, and the
# client side of the same protocol (RFC 6455).
#
# The server accepts one connection at a time.  It answers a valid upgrade
# request with 101, sends one text message with a JSON object
#   { "connection": <n>, "request_line": ..., "headers": { ... } }
# describing the upgrade request it received (n counts the connections
# accepted so far; header names lower-cased; the assertion headers reported
# as "(present)", never with their value), then echoes every text and binary
# message until the client closes.  Anything else gets 400.  Reads time
# out after IO_TIMEOUT seconds and the server exits by itself after
# "lifetime" seconds.

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(sha1);
use Exporter qw(import);
use IO::Select ();
use IO::Socket::IP ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes ();

our @EXPORT_OK = qw(open_websocket send_frame read_frame);

use constant IO_TIMEOUT      => 5;
use constant MAX_HEADER_SIZE => 65536;
use constant MAX_PAYLOAD     => 1 << 20;

# RFC 6455 section 1.3: appended to Sec-WebSocket-Key before hashing.
use constant ACCEPT_GUID => '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

use constant {
    OPCODE_TEXT   => 0x1,
    OPCODE_BINARY => 0x2,
    OPCODE_CLOSE  => 0x8,
    OPCODE_PING   => 0x9,
    OPCODE_PONG   => 0xA,
};

# Start the server on 127.0.0.1:port.  Arguments: port, lifetime (seconds,
# default 60).  Returns an object with port and pid.
sub start {
    my ($class, %args) = @_;
    croak 'AuthzWebSocket->start: port missing' unless $args{port};
    my $listener = IO::Socket::IP->new(
        LocalHost => '127.0.0.1',
        LocalPort => $args{port},
        Listen    => 8,
        ReuseAddr => 1,
        Proto     => 'tcp',
    ) or croak "AuthzWebSocket: cannot listen on 127.0.0.1:$args{port}: $@";
    my $self = bless { port => $args{port}, lifetime => $args{lifetime} // 60 }, $class;

    my $pid = fork;
    croak "AuthzWebSocket->start: fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        my $status = eval { $self->serve($listener); 0 } // do {
            warn "WebSocket server: $@";
            1;
        };
        # POSIX::_exit skips the END blocks inherited from the test.
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
    $0 = 'teleport-test-websocket-server';
    my $deadline = time + $self->{lifetime};
    my $terminated = 0;
    local $SIG{TERM} = sub { $terminated = 1 };
    local $SIG{PIPE} = 'IGNORE';
    my $select = IO::Select->new($listener);
    my $connections = 0;
    while (!$terminated && time < $deadline) {
        next unless $select->can_read(1);
        my $client = $listener->accept or next;
        $connections++;
        eval { serve_connection($client, $connections); 1 }
            or warn "WebSocket server: connection $connections: $@";
        close $client;
    }
    return;
}

sub serve_connection {
    my ($client, $number) = @_;
    my $head = read_head($client) // return;
    my ($request_line, @lines) = split /\r?\n/, $head;
    my %headers;
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        $name = lc $name;
        $headers{$name} = exists $headers{$name} ? "$headers{$name}, $value" : $value;
    }

    my $key = $headers{'sec-websocket-key'} // '';
    unless (($request_line // '') =~ m{^GET \S+ HTTP/1\.1$}
            && lc($headers{upgrade} // '') eq 'websocket'
            && ($headers{connection} // '') =~ /\bupgrade\b/i
            && ($headers{'sec-websocket-version'} // '') eq '13'
            && $key =~ m{^[A-Za-z0-9+/]{22}==$}) {
        syswrite $client, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
            . "Connection: close\r\n\r\n";
        return;
    }
    my $accept = encode_base64(sha1($key . ACCEPT_GUID), '');
    syswrite $client, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        . "Connection: Upgrade\r\nSec-WebSocket-Accept: $accept\r\n\r\n";

    for my $secret (qw(teleport-jwt-assertion authorization)) {
        $headers{$secret} = '(present)' if exists $headers{$secret};
    }
    send_frame($client, OPCODE_TEXT, JSON::PP->new->canonical->encode(
        { connection => $number, request_line => $request_line, headers => \%headers }));

    while (1) {
        my ($opcode, $payload) = read_frame($client);
        return unless defined $opcode;
        if ($opcode == OPCODE_TEXT || $opcode == OPCODE_BINARY) {
            send_frame($client, $opcode, $payload);
        }
        elsif ($opcode == OPCODE_PING) {
            send_frame($client, OPCODE_PONG, $payload);
        }
        elsif ($opcode == OPCODE_CLOSE) {
            send_frame($client, OPCODE_CLOSE, substr($payload, 0, 2));
            return;
        }
    }
}

# Read up to the blank line that ends an HTTP head and return the head
# without it; undef on timeout or end of file.  Reads one byte at a time,
# so no byte of a following frame is consumed.
sub read_head {
    my ($socket) = @_;
    my $head = '';
    my $deadline = Time::HiRes::time() + IO_TIMEOUT;
    while ($head !~ /\r?\n\r?\n\z/) {
        return undef if length $head > MAX_HEADER_SIZE;
        read_exact($socket, 1, $deadline, \$head) or return undef;
    }
    $head =~ s/\r?\n\r?\n\z//;
    return $head;
}

# Append exactly $length bytes to $$buffer; false on timeout or end of
# file.
sub read_exact {
    my ($socket, $length, $deadline, $buffer) = @_;
    my $select = IO::Select->new($socket);
    my $wanted = length($$buffer) + $length;
    while (length $$buffer < $wanted) {
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0 || !$select->can_read($left);
        my $read = sysread $socket, $$buffer, $wanted - length $$buffer, length $$buffer;
        return 0 unless $read;
    }
    return 1;
}

# Send one final frame.  $mask is true for frames from a client, which
# RFC 6455 section 5.3 requires to be masked.
sub send_frame {
    my ($socket, $opcode, $payload, $mask) = @_;
    my $length = length $payload;
    my $frame = chr(0x80 | $opcode);
    my $mask_bit = $mask ? 0x80 : 0;
    if ($length < 126) {
        $frame .= chr($mask_bit | $length);
    }
    elsif ($length < 65536) {
        $frame .= chr($mask_bit | 126) . pack('n', $length);
    }
    else {
        $frame .= chr($mask_bit | 127) . pack('Q>', $length);
    }
    if ($mask) {
        my $key = pack 'N', int rand 2**32;
        $frame .= $key . ($payload ^ substr($key x (int($length / 4) + 1), 0, $length));
    }
    else {
        $frame .= $payload;
    }
    my $written = syswrite $socket, $frame;
    croak "WebSocket: write failed: $!" unless defined $written && $written == length $frame;
    return;
}

# Read one frame and return its opcode and unmasked payload; an empty list
# on timeout, end of file or a frame longer than MAX_PAYLOAD.
sub read_frame {
    my ($socket) = @_;
    my $deadline = Time::HiRes::time() + IO_TIMEOUT;
    my $buffer = '';
    read_exact($socket, 2, $deadline, \$buffer) or return;
    my ($first, $second) = unpack 'CC', $buffer;
    my $length = $second & 0x7f;
    if ($length == 126) {
        $buffer = '';
        read_exact($socket, 2, $deadline, \$buffer) or return;
        $length = unpack 'n', $buffer;
    }
    elsif ($length == 127) {
        $buffer = '';
        read_exact($socket, 8, $deadline, \$buffer) or return;
        $length = unpack 'Q>', $buffer;
    }
    return if $length > MAX_PAYLOAD;
    my $key = '';
    if ($second & 0x80) {
        read_exact($socket, 4, $deadline, \$key) or return;
    }
    my $payload = '';
    read_exact($socket, $length, $deadline, \$payload) or return;
    if (length $key) {
        $payload ^= substr($key x (int($length / 4) + 1), 0, $length);
    }
    return ($first & 0x0f, $payload);
}

# Connect to 127.0.0.1:port and send an upgrade request for $path with the
# extra headers (array reference of name/value pairs).  Returns the status
# code, the response head and the socket, which carries WebSocket frames
# after a 101.
sub open_websocket {
    my (%args) = @_;
    my $socket = IO::Socket::IP->new(
        PeerHost => '127.0.0.1',
        PeerPort => $args{port},
        Proto    => 'tcp',
        Timeout  => IO_TIMEOUT,
    ) or croak "WebSocket: cannot connect to 127.0.0.1:$args{port}: $@";
    my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
    my @headers = @{ $args{headers} || [] };
    my $request = "GET $args{path} HTTP/1.1\r\nHost: 127.0.0.1:$args{port}\r\n"
        . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n";
    while (my ($name, $value) = splice @headers, 0, 2) {
        $request .= "$name: $value\r\n";
    }
    syswrite $socket, "$request\r\n";
    my $head = read_head($socket) // '';
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})};
    my ($accept) = $head =~ /^Sec-WebSocket-Accept:\s*(\S+)/mi;
    my $expected = encode_base64(sha1($key . ACCEPT_GUID), '');
    croak "WebSocket: 101 with Sec-WebSocket-Accept '" . ($accept // '') . "', expected '$expected'"
        if ($status // 0) == 101 && ($accept // '') ne $expected;
    return ($status // 0, $head, $socket);
}

1;
