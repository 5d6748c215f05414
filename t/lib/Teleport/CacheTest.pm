package Teleport::CacheTest;

# Helpers of the cache_*.t tests, which check how the module fetches,
# shares and refreshes keys:
#   - JWKS scenarios (named cache-*) created while the tests run, so that
#     httpd's startup fetch of their URLs finds nothing (HTTP 404) and the
#     first request of a test is the first fetch;
#   - ports reserved by t/conf/extra_cache.conf.in, read back from the
#     generated t/conf/extra_cache.conf;
#   - a TLS JWKS server whose certificate a test switches between a good
#     one and an expired one, one from an unknown CA or one for another host;
#   - parallel HTTP clients, error_log line counts;
#   - memcached, redis-server and extra httpd instances on 127.0.0.1.
# Every process started here is stopped by its pid when the test ends,
# also when it dies.

use strict;
use warnings;

use Apache::Test ();
use Carp qw(croak);
use Errno ();
use Exporter qw(import);
use File::Path qw(make_path);
use IO::Socket::IP ();
use JSON ();
use LWP::UserAgent ();
use MIME::Base64 qw(encode_base64url);
use POSIX ();
use Time::HiRes ();

use Teleport::JWKSServer ();
use Teleport::Test qw(state_dir server_url);
use Teleport::Token qw(write_jwks write_file split_token);

our @EXPORT_OK = qw(
    reserved_port port_is_closed create_scenario scenario_url static_path
    lines_with count_lines sleep_until
    parallel_requests with_kid
    make_test_certificates start_tls_server
    start_memcached start_redis start_httpd stop_process
);

my $json = JSON->new->utf8->canonical;

# Processes started by this test file: pid => name.  Only the process that
# loaded this module stops them; forked clients and servers leave through
# POSIX::_exit and never run END blocks.
my %started;
my $owner_pid = $$;

END {
    if ($$ == $owner_pid) {
        local $?;
        stop_process($_) for sort { $b <=> $a } keys %started;
    }
}

# A test stopped by a signal leaves through exit, so that the END block
# above runs; signals that have a handler already keep it.
for my $signal (qw(TERM INT HUP)) {
    $SIG{$signal} //= sub { print STDERR "terminated by SIG$signal\n"; exit 1 };
}

# Ports

# The port that t/conf/extra_cache.conf.in reserved with
# "Define $name @NextAvailablePort@".
sub reserved_port {
    my ($name) = @_;
    my $conf = Apache::Test::vars('t_conf') . '/extra_cache.conf';
    open my $fh, '<', $conf or croak "cannot read $conf: $!";
    while (my $line = <$fh>) {
        return $1 if $line =~ /^\s*Define\s+\Q$name\E\s+(\d+)\s*$/;
    }
    croak "$conf defines no port $name";
}

# True when a TCP connection to 127.0.0.1:$port is refused: no program
# listens there.
sub port_is_closed {
    my ($port) = @_;
    my $socket = IO::Socket::IP->new(
        PeerHost => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => 2,
    );
    return 0 if $socket;
    return $! == Errno::ECONNREFUSED ? 1 : 0;
}

# A port on 127.0.0.1 that was free a moment ago.
sub free_port {
    my $socket = IO::Socket::IP->new(
        LocalHost => '127.0.0.1',
        LocalPort => 0,
        Proto     => 'tcp',
        Listen    => 1,
        ReuseAddr => 1,
    ) or croak "cannot find a free port on 127.0.0.1: $@";
    my $port = $socket->sockport;
    close $socket;
    return $port;
}

# JWKS scenarios

sub scenario_dir {
    my ($name) = @_;
    croak "scenario $name: names of these tests start with cache-"
        unless $name =~ /^cache-[a-z0-9-]+$/;
    return state_dir() . "/jwks/$name";
}

# Create the scenario directory that Teleport::JWKSServer serves as
# /$name/.well-known/jwks.json, with its JWKS (a hash or raw text) and
# control files (status, delay, body), and a page ok.txt under the
# document root at /$name/ for requests that need no CGI.
sub create_scenario {
    my ($name, $jwks, %control) = @_;
    my $dir = scenario_dir($name);
    croak "scenario $name exists already" if -e $dir;
    make_path($dir, { mode => 0755 });
    write_jwks("$dir/jwks.json", $jwks);
    write_file("$dir/$_", $control{$_}, 0644) for sort keys %control;

    my $pages = state_dir() . "/htdocs/$name";
    make_path($pages, { mode => 0755 });
    write_file("$pages/ok.txt", "ok\n", 0644);
    return;
}

sub static_path {
    my ($name) = @_;
    return "/$name/ok.txt";
}

# The JWKS URL the module builds for a TeleportProxyURL of the scenario,
# as its log lines print it.
sub scenario_url {
    my ($name, $port) = @_;
    $port //= $ENV{TELEPORT_TEST_JWKS_PORT};
    return "https://127.0.0.1:$port/$name/.well-known/jwks.json";
}

# A counter file written by a test server: 0 when absent.
sub read_counter {
    my ($path) = @_;
    open my $fh, '<', $path or return 0;
    my $value = <$fh>;
    return defined $value ? 0 + $value : 0;
}

# Log lines

# The lines that contain every one of the strings given.
sub lines_with {
    my ($lines, @parts) = @_;
    return grep {
        my $line = $_;
        !grep { index($line, $_) < 0 } @parts;
    } @$lines;
}

sub count_lines {
    my ($lines, @parts) = @_;
    return scalar lines_with($lines, @parts);
}

sub sleep_until {
    my ($time) = @_;
    my $left = $time - Time::HiRes::time();
    Time::HiRes::sleep($left) if $left > 0;
    return;
}

# Tokens

# The token with its header's kid replaced, keeping payload and signature:
# a token naming a key that the JWKS does not list.  The module looks the
# kid up before it checks the signature.
sub with_kid {
    my ($token, $kid) = @_;
    my ($header, $payload, $signature) = split_token($token);
    my $fields = { alg => 'RS256', typ => 'JWT', kid => $kid };
    return encode_base64url($json->encode($fields)) . ".$payload.$signature";
}

# Parallel clients

# Send requests from several client processes at once.  Arguments:
#   clients     number of client processes (each keeps its own connection
#               open between requests)
#   requests    requests per client
#   request     sub ($client, $index) returning (path, token); the token
#               may be undef
#   start_at    epoch time at which every client sends its first request
#               (default: 0.3 s from now), so that the first requests meet
#   time_limit  seconds after which a client stops sending (default 30)
#   base_url    scheme, host and port (default: the main test server)
#   retries     times a connection error is retried (default 0)
#   on_start    sub run in the test process once the clients are running;
#               its argument is a sub that returns how many responses the
#               clients have received so far
# Returns a list of results in sending order per client, each a hash:
# client, index, path, code (of the last try), tries, seconds (from
# start_at until the response), failure (the connection error of the last
# try, if any).
sub parallel_requests {
    my (%args) = @_;
    my $clients = $args{clients} or croak 'parallel_requests: clients missing';
    my $requests = $args{requests} // 1;
    my $make = $args{request} or croak 'parallel_requests: request missing';
    my $start_at = $args{start_at} // Time::HiRes::time() + 0.3;
    my $time_limit = $args{time_limit} // 30;
    my $base_url = $args{base_url} // server_url('');
    my $retries = $args{retries} // 0;

    my $dir = state_dir() . '/cache-clients';
    make_path($dir, { mode => 0755 });
    my %result_file;
    for my $client (1 .. $clients) {
        my $file = "$dir/$$-" . int(Time::HiRes::time() * 1000) . "-$client";
        my $pid = fork // croak "fork failed: $!";
        if ($pid == 0) {
            my $status = eval {
                run_client($file, $client, $requests, $make, $start_at,
                           $time_limit, $base_url, $retries);
                0;
            } // do { warn "client $client: $@"; 1 };
            POSIX::_exit($status);
        }
        $result_file{$pid} = $file;
    }
    if ($args{on_start}) {
        $args{on_start}->(sub { count_result_lines(values %result_file) });
    }

    my @results;
    for my $pid (sort { $a <=> $b } keys %result_file) {
        waitpid $pid, 0;
        my $file = $result_file{$pid};
        open my $in, '<', $file or next;
        while (my $line = <$in>) {
            push @results, $json->decode($line);
        }
        close $in;
        unlink $file;
    }
    return @results;
}

sub count_result_lines {
    my (@files) = @_;
    my $count = 0;
    for my $file (@files) {
        open my $in, '<', $file or next;
        $count++ while <$in>;
    }
    return $count;
}

sub run_client {
    my ($file, $client, $requests, $make, $start_at, $time_limit, $base_url,
        $retries) = @_;
    my $agent = LWP::UserAgent->new(timeout => 20, keep_alive => 1);
    my @prepared = map { [ $make->($client, $_) ] } 1 .. $requests;
    open my $out, '>', $file or die "cannot write $file: $!\n";
    $out->autoflush(1);
    sleep_until($start_at);
    my $deadline = $start_at + $time_limit;
    my $index = 0;
    for my $request (@prepared) {
        $index++;
        last if Time::HiRes::time() > $deadline;
        my ($path, $token) = @$request;
        my @headers = defined $token ? ('Teleport-Jwt-Assertion' => $token) : ();
        my ($response, $tries) = (undef, 0);
        while (1) {
            $tries++;
            $response = $agent->get("$base_url$path", @headers);
            last unless connection_failed($response) && $tries <= $retries;
        }
        print {$out} $json->encode({
            client  => $client,
            index   => $index,
            path    => $path,
            code    => $response->code,
            tries   => $tries,
            seconds => sprintf('%.3f', Time::HiRes::time() - $start_at),
            failure => connection_failed($response) ? $response->message : undef,
        }), "\n";
    }
    close $out;
    return;
}

# LWP reports a connection that was refused, reset or closed without a
# response as a 500 it made itself.
sub connection_failed {
    my ($response) = @_;
    return ($response->header('Client-Warning') // '') eq 'Internal response';
}

# Certificates

# Make in $dir the certificates the TLS server can present, besides the
# good one of the suite (server.pem, signed by the test CA for 127.0.0.1):
#   expired     signed by the test CA for 127.0.0.1, valid from two days
#               ago until yesterday
#   unknown-ca  for 127.0.0.1, signed by a CA that no CA file lists
# Returns a hash of name => [certificate, key], with "good" and
# "wrong-host" (the suite's certificate for wrong-name.test) added.
sub make_test_certificates {
    my ($dir) = @_;
    my $tls = state_dir() . '/tls';
    make_path("$dir/issued", { mode => 0700 });

    write_file("$dir/leaf.ext", join("\n",
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth', ''), 0644);

    # OpenSSL 3.0's "x509 -req" cannot set a start date; "openssl ca" can.
    new_request($dir, 'expired');
    write_file("$dir/index.txt", '', 0600);
    write_file("$dir/serial", "1000\n", 0600);
    write_file("$dir/ca.cnf", join("\n",
        '[ca]', 'default_ca = test_ca',
        '[test_ca]', "database = $dir/index.txt", "new_certs_dir = $dir/issued",
        "serial = $dir/serial", 'default_md = sha256', 'policy = any_name',
        'unique_subject = no',
        '[any_name]', 'commonName = supplied', ''), 0600);
    my $day = 86400;
    run_openssl('ca', '-batch', '-config', "$dir/ca.cnf",
        '-cert', "$tls/ca.pem", '-keyfile', "$tls/ca.key",
        '-in', "$dir/expired.csr", '-out', "$dir/expired.pem", '-notext',
        '-startdate', utc_time(time - 2 * $day), '-enddate', utc_time(time - $day),
        '-extfile', "$dir/leaf.ext");

    run_openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', "$dir/other-ca.key", '-out', "$dir/other-ca.pem",
        '-days', '2', '-subj', '/CN=mod_auth_teleport unknown test CA',
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    new_request($dir, 'unknown-ca');
    run_openssl('x509', '-req', '-in', "$dir/unknown-ca.csr",
        '-CA', "$dir/other-ca.pem", '-CAkey', "$dir/other-ca.key",
        '-CAcreateserial', '-days', '2', '-extfile', "$dir/leaf.ext",
        '-out', "$dir/unknown-ca.pem");

    return (
        'good'       => [ "$tls/server.pem", "$tls/server.key" ],
        'wrong-host' => [ "$tls/wrong-name.pem", "$tls/wrong-name.key" ],
        'expired'    => [ "$dir/expired.pem", "$dir/expired.key" ],
        'unknown-ca' => [ "$dir/unknown-ca.pem", "$dir/unknown-ca.key" ],
    );
}

sub new_request {
    my ($dir, $name) = @_;
    run_openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', "$dir/$name.key", '-out', "$dir/$name.csr",
        '-subj', '/CN=127.0.0.1');
    return;
}

sub utc_time {
    my ($epoch) = @_;
    return POSIX::strftime('%Y%m%d%H%M%SZ', gmtime $epoch);
}

sub run_openssl {
    my (@args) = @_;
    my $output = '';
    my $pid = open my $fh, '-|';
    croak "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        exec 'openssl', @args or POSIX::_exit(127);
    }
    { local $/; $output = <$fh> // '' }
    close $fh;
    croak "openssl @args failed (exit status " . ($? >> 8) . "):\n$output" if $?;
    return;
}

# Start a Teleport::CacheTest::TLSServer on 127.0.0.1:$args{port}.
# Arguments: port, certificates (the hash of make_test_certificates),
# control (directory of its "certificate" and "connections" files),
# certificate (the name presented first).
sub start_tls_server {
    my (%args) = @_;
    return Teleport::CacheTest::TLSServer->start(
        root     => state_dir() . '/jwks',
        log      => state_dir() . '/cache-tls-server.log',
        lifetime => 600,
        %args,
    );
}

# Processes

# Start a program in a session of its own, with its output in $log;
# returns its pid.  The own session matters for httpd -DFOREGROUND: the
# prefork MPM sends SIGTERM to its whole process group when it stops.
sub spawn {
    my ($name, $log, @command) = @_;
    my $pid = fork // croak "fork failed: $!";
    if ($pid == 0) {
        POSIX::setsid() or POSIX::_exit(127);
        open STDIN, '<', '/dev/null' or POSIX::_exit(127);
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        exec @command or POSIX::_exit(127);
    }
    $started{$pid} = $name;
    return $pid;
}

# Stop a process this test started: SIGTERM, then SIGKILL after 10 s.
sub stop_process {
    my ($pid) = @_;
    return unless defined $pid && delete $started{$pid};
    kill 'TERM', $pid;
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        return if waitpid($pid, POSIX::WNOHANG()) != 0;
        Time::HiRes::sleep(0.05);
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return;
}

# Wait until $ready returns true, at most $seconds; croak with $what and
# the log file's end otherwise.
sub wait_for {
    my ($what, $seconds, $log, $pid, $ready) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    while (Time::HiRes::time() < $deadline) {
        return if $ready->();
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $started{$pid};
            croak "$what exited with status " . ($? >> 8) . ":\n" . log_tail($log);
        }
        Time::HiRes::sleep(0.05);
    }
    croak "$what not ready after $seconds s:\n" . log_tail($log);
}

sub log_tail {
    my ($log) = @_;
    open my $fh, '<', $log or return "(no log at $log)";
    my @lines = <$fh>;
    splice @lines, 0, -20 if @lines > 20;
    return join '', @lines;
}

sub port_is_open {
    my ($port) = @_;
    return IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
                               Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

sub work_dir {
    my ($name) = @_;
    my $dir = state_dir() . "/cache-$name";
    make_path($dir, { mode => 0755 });
    return $dir;
}

# Start memcached on 127.0.0.1 (TCP only).  Returns a hash: pid, port.
sub start_memcached {
    my $port = free_port();
    my $log = work_dir('memcached') . '/memcached.log';
    my $pid = spawn("memcached on port $port", $log, 'memcached',
        '-l', '127.0.0.1', '-p', $port, '-U', '0', '-m', '16', '-u', 'nobody');
    wait_for("memcached on port $port", 10, $log, $pid, sub { port_is_open($port) });
    return { pid => $pid, port => $port };
}

# Start redis-server on 127.0.0.1 without persistence.  Returns a hash:
# pid, port.
sub start_redis {
    my $port = free_port();
    my $dir = work_dir('redis');
    my $log = "$dir/redis.log";
    my $pid = spawn("redis-server on port $port", $log, 'redis-server',
        '--bind', '127.0.0.1', '--port', $port, '--save', '', '--appendonly', 'no',
        '--dir', $dir, '--daemonize', 'no');
    wait_for("redis-server on port $port", 10, $log, $pid, sub { port_is_open($port) });
    return { pid => $pid, port => $port };
}

# The MPM and the modules directory of the main test server, from the
# modules.conf that t/TEST writes.
sub suite_mpm {
    my $conf = Apache::Test::vars('t_conf') . '/modules.conf';
    open my $fh, '<', $conf or croak "cannot read $conf: $!";
    while (my $line = <$fh>) {
        return ($1, $2) if $line =~ m{^LoadModule\s+mpm_(\w+)_module\s+(\S+)/mod_mpm_\w+\.so};
    }
    croak "$conf loads no MPM";
}

# MPM directives for $processes child processes at start and at most
# $max_processes at a time.
sub mpm_settings {
    my ($mpm, $processes, $max_processes) = @_;
    if ($mpm eq 'prefork') {
        return join "\n", "ServerLimit $max_processes", "StartServers $processes",
            'MinSpareServers 1', "MaxSpareServers $processes",
            "MaxRequestWorkers $max_processes";
    }
    my $threads = 8 * $max_processes;
    return join "\n", "ServerLimit $max_processes", "StartServers $processes",
        'ThreadsPerChild 8', "MaxRequestWorkers $threads",
        'MinSpareThreads 1', 'MaxSpareThreads ' . ($threads + 8);
}

# Start an httpd of its own on 127.0.0.1, with the MPM of the suite and the
# module under test, protecting /app/ with keys from a JWKS scenario of the
# suite's JWKS server.  Arguments:
#   name           directory name under the state directory
#   scenario       JWKS scenario the location fetches
#   processes      child processes at start (default 1)
#   max_processes  child processes at most, including those that finish
#                  their requests after a graceful restart (default:
#                  processes)
#   cache          TeleportCache value (default: none, so shmcb)
#   directives     more Teleport* lines for the location
# /app/ok.txt answers 200 with header X-Remote-User after a valid token;
# /ping.txt answers 200 without one.  Returns a hash: pid, port, url,
# error_log.
sub start_httpd {
    my (%args) = @_;
    my $name = $args{name} or croak 'start_httpd: name missing';
    my $processes = $args{processes} // 1;
    my $max_processes = $args{max_processes} // $processes;
    my ($mpm, $modules_dir) = suite_mpm();
    my $dir = work_dir("httpd-$name");
    make_path("$dir/htdocs/app", { mode => 0755 });
    write_file("$dir/htdocs/ping.txt", "ping\n", 0644);
    write_file("$dir/htdocs/app/ok.txt", "ok\n", 0644);

    my @modules = ("mpm_$mpm", qw(authn_core authz_core authz_user headers));
    my $cache_line = '';
    if (defined $args{cache}) {
        my ($provider) = $args{cache} =~ /^(\w+)/;
        push @modules, "socache_$provider";
        $cache_line = "TeleportCache $args{cache}";
    }
    else {
        push @modules, 'socache_shmcb';
    }
    my $port = free_port();
    my $jwks_url = "https://127.0.0.1:$ENV{TELEPORT_TEST_JWKS_PORT}/$args{scenario}";
    my $directives = join "\n    ", @{ $args{directives} || [] };
    my $conf = join "\n",
        (map { "LoadModule ${_}_module $modules_dir/mod_$_.so" } @modules),
        "LoadModule auth_teleport_module $ENV{TELEPORT_TEST_MODULE}",
        "ServerRoot \"$dir\"",
        "DefaultRuntimeDir \"$dir\"",
        "PidFile \"$dir/httpd.pid\"",
        "ErrorLog \"$dir/error_log\"",
        'LogLevel info',
        "Listen 127.0.0.1:$port",
        "ServerName 127.0.0.1:$port",
        'User nobody',
        'Group nogroup',
        'KeepAlive On',
        mpm_settings($mpm, $processes, $max_processes),
        $cache_line,
        "DocumentRoot \"$dir/htdocs\"",
        "<Directory \"$dir/htdocs\">",
        '    Require all granted',
        '</Directory>',
        '<Location "/app/">',
        '    AuthType Teleport',
        "    AuthName \"$name\"",
        "    TeleportProxyURL \"$jwks_url\"",
        "    TeleportCAFile \"$ENV{TELEPORT_TEST_CA}\"",
        '    TeleportAudience "http://localhost:8080"',
        '    TeleportIssuer "teleport.example.com"',
        "    $directives",
        '    Require valid-user',
        '    Header always set X-Remote-User "expr=%{REMOTE_USER}"',
        '</Location>', '';
    write_file("$dir/httpd.conf", $conf, 0644);

    my $httpd = Apache::Test::vars('httpd');
    my $log = "$dir/httpd.out";
    my $pid = spawn("httpd $name on port $port", $log, $httpd,
        '-d', $dir, '-f', "$dir/httpd.conf", '-DFOREGROUND');
    my $url = "http://127.0.0.1:$port";
    my $agent = LWP::UserAgent->new(timeout => 5, keep_alive => 0);
    wait_for("httpd $name on port $port", 20, $log, $pid, sub {
        port_is_open($port) && $agent->get("$url/ping.txt")->code == 200;
    });
    return { pid => $pid, port => $port, url => $url, dir => $dir,
             error_log => "$dir/error_log" };
}

package Teleport::CacheTest::TLSServer;

# A JWKS server on one given port of 127.0.0.1 that serves the scenarios of
# Teleport::JWKSServer (same directory, same control files and hit counts)
# and presents, for each new connection, the certificate named in the file
# "certificate" of its control directory.  It counts accepted connections,
# including those whose TLS handshake fails, in the file "connections".
# Each connection is handed to Teleport::JWKSServer's handle_connection,
# which makes the TLS handshake, counts the hit and sends the response.

use parent -norequire, 'Teleport::JWKSServer';

use Carp qw(croak);
use IO::Select ();
use IO::Socket::IP ();
use POSIX ();

use Teleport::Token qw(write_file);

# Listen on the port and fork the server.  Arguments: port, root (the
# scenarios directory), control, certificates (name => [certificate,
# key]), certificate (the name presented first), log, lifetime (seconds).
sub start {
    my ($class, %args) = @_;
    for (qw(port root control certificates certificate)) {
        croak "TLSServer->start: $_ missing" unless defined $args{$_};
    }
    my $self = bless { %args }, $class;
    $self->set_certificate($args{certificate});
    my $listener = IO::Socket::IP->new(
        LocalHost => '127.0.0.1',
        LocalPort => $args{port},
        Listen    => 16,
        ReuseAddr => 1,
        Proto     => 'tcp',
    ) or croak "TLSServer: cannot listen on 127.0.0.1:$args{port}: $@";

    my $pid = fork;
    croak "TLSServer->start: fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        my $status = eval { $self->serve_port($listener); 0 } // do {
            warn "TLS JWKS server: $@";
            1;
        };
        POSIX::_exit($status);
    }
    close $listener;
    $self->{pid} = $pid;
    $started{$pid} = "TLS JWKS server on port $args{port}";
    return $self;
}

sub stop {
    my ($self) = @_;
    Teleport::CacheTest::stop_process(delete $self->{pid});
    return;
}

sub set_certificate {
    my ($self, $name) = @_;
    croak "TLSServer: no certificate named $name"
        unless $self->{certificates}{$name};
    write_file("$self->{control}/certificate", "$name\n", 0644);
    return;
}

sub connections {
    my ($self) = @_;
    return Teleport::CacheTest::read_counter("$self->{control}/connections");
}

sub serve_port {
    my ($self, $listener) = @_;
    $0 = "teleport-test-tls-server-$self->{port}";
    my $deadline = time + ($self->{lifetime} // 600);
    my $terminated = 0;
    local $SIG{TERM} = sub { $terminated = 1 };
    local $SIG{PIPE} = 'IGNORE';
    my $select = IO::Select->new($listener);
    while (!$terminated && time < $deadline) {
        1 while waitpid(-1, POSIX::WNOHANG()) > 0;
        next unless $select->can_read(0.5);
        my $client = $listener->accept or next;
        my $count = $self->connections + 1;
        write_file("$self->{control}/connections", "$count\n", 0644);
        my $name = Teleport::JWKSServer::read_control($self->{control}, 'certificate')
            // 'good';
        my ($cert, $key) = @{ $self->{certificates}{$name} };
        $self->log_line("port $self->{port} connection $count: certificate $name");
        $self->handle_connection($client, $cert, $key, $listener);
    }
    return;
}

1;
