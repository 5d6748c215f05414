package Teleport::Fixtures;

# Everything the suite needs before httpd starts: a state directory under
# /tmp that the httpd children (user nobody) can read, a test CA and server
# certificates made with the openssl command, the signing keys, and one JWKS
# directory per scenario for Teleport::JWKSServer.

use strict;
use warnings;

use Carp qw(croak);
use File::Path qw(make_path);
use File::Temp qw(tempdir);

use Teleport::Token qw(
    new_rsa_key new_ec_key_with_short_coordinate save_key
    jwks_v14 jwks_v16 jwks_v17 write_jwks write_file
);

# Signing keys by name.  Keys absent from every JWKS (rsa-other, rsa-next)
# sign tokens that must fail or that a rotation introduces later.
my %KEY_MAKER = (
    'rsa-main'   => sub { new_rsa_key(2048) },
    'rsa-other'  => sub { new_rsa_key(2048) },
    'rsa-next'   => sub { new_rsa_key(2048) },
    'rsa-static' => sub { new_rsa_key(2048) },
    'rsa-weak'   => sub { new_rsa_key(1024) },
    'ec-short'   => sub { new_ec_key_with_short_coordinate() },
);

# Initial JWKS of each scenario, and control files written before httpd
# starts.  Each <Location> of t/conf/extra.conf.in fetches its own scenario.
my %SCENARIO = (
    'v12'              => { jwks => sub { jwks_without_kid($_[0]{'rsa-main'}) } },
    'v14'              => { jwks => sub { jwks_v14($_[0]{'rsa-main'}) } },
    'v16'              => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'v17'              => { jwks => sub { jwks_v17($_[0]{'ec-short'}) } },
    'claims'           => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'reject'           => { jwks => sub { jwks_v16(@{ $_[0] }{qw(rsa-main ec-short)}) } },
    'options'          => { jwks => sub { jwks_v16(@{ $_[0] }{qw(rsa-main ec-short)}) } },
    'alice'            => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'bearer'           => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'proxy'            => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'rotation'         => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'rotation-kidless' => { jwks => sub { jwks_v14($_[0]{'rsa-main'}) } },
    'burst'            => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'keep'             => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'logs'             => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'fail500'          => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) },
                            control => { status => "500\n" } },
    'slow'             => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) },
                            control => { delay => "3\n" } },
    'badbody'          => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) },
                            control => { body => "this is not JSON\n" } },
    'weakkey'          => { jwks => sub { jwks_v16($_[0]{'rsa-weak'}) } },
    'untrusted'        => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'wrongname'        => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    # Authorization, subrequest and token cache tests (t/authz_*.t).
    'authz-main'       => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'authz-cache'      => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'authz-rotate'     => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
    'authz-memo'       => { jwks => sub { jwks_v16($_[0]{'rsa-main'}) } },
);

# Teleport of 2020: one JWK per key, with neither "kid" nor "use".
sub jwks_without_kid {
    my (@keys) = @_;
    my $jwks = jwks_v14(@keys);
    delete @{$_}{qw(kid use)} for @{ $jwks->{keys} };
    return $jwks;
}

sub scenario_names { return sort keys %SCENARIO }

# Create the state directory and everything in it.  $source_dir is t/ of
# the checkout, for the CGI script.  Returns the state directory path.
sub create {
    my ($class, %args) = @_;
    my $state = tempdir('mod_auth_teleport-test-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    chmod 0755, $state or croak "chmod $state: $!";
    make_path(map { "$state/$_" } qw(tls keys jwks static cgi-bin htdocs),
              { mode => 0755 });

    make_certificates("$state/tls");
    my %key = make_keys("$state/keys");
    for my $name (sort keys %SCENARIO) {
        my $dir = "$state/jwks/$name";
        make_path($dir, { mode => 0755 });
        write_jwks("$dir/jwks.json", $SCENARIO{$name}{jwks}->(\%key));
        my $control = $SCENARIO{$name}{control} || {};
        write_file("$dir/$_", $control->{$_}, 0644) for keys %$control;
    }
    write_jwks("$state/static/jwks.json", jwks_v16($key{'rsa-static'}));

    my $cgi = read_text("$args{source_dir}/cgi-bin/env.pl");
    write_file("$state/cgi-bin/env.pl", $cgi, 0755);
    write_file("$state/htdocs/index.html", "mod_auth_teleport test server\n", 0644);
    return $state;
}

sub make_keys {
    my ($dir) = @_;
    my %key;
    for my $name (sort keys %KEY_MAKER) {
        $key{$name} = $KEY_MAKER{$name}->();
        save_key($key{$name}, "$dir/$name.pem");
    }
    return %key;
}

# A CA, a server certificate for 127.0.0.1 and localhost, and one for the
# host name wrong-name.test, all P-256 and valid for two days.
sub make_certificates {
    my ($dir) = @_;
    run_openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', "$dir/ca.key", '-out', "$dir/ca.pem", '-days', '2',
        '-subj', '/CN=mod_auth_teleport test CA',
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    make_leaf($dir, 'server', '127.0.0.1', 'IP:127.0.0.1,DNS:localhost');
    make_leaf($dir, 'wrong-name', 'wrong-name.test', 'DNS:wrong-name.test');
    chmod 0644, "$dir/ca.pem", "$dir/server.pem", "$dir/wrong-name.pem";
    chmod 0600, "$dir/ca.key", "$dir/server.key", "$dir/wrong-name.key";
    return;
}

sub make_leaf {
    my ($dir, $name, $common_name, $alt_names) = @_;
    write_file("$dir/$name.ext", join("\n",
        "subjectAltName=$alt_names",
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth', ''), 0644);
    run_openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', "$dir/$name.key", '-out', "$dir/$name.csr",
        '-subj', "/CN=$common_name");
    run_openssl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/ca.pem",
        '-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2',
        '-extfile', "$dir/$name.ext", '-out', "$dir/$name.pem");
    return;
}

sub run_openssl {
    my (@args) = @_;
    my $output = '';
    my $pid = open my $fh, '-|';
    croak "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT or die "dup failed: $!";
        exec 'openssl', @args or die "exec openssl failed: $!";
    }
    { local $/; $output = <$fh> // '' }
    close $fh;
    croak "openssl @args failed (exit status " . ($? >> 8) . "):\n$output" if $?;
    return;
}

sub read_text {
    my ($path) = @_;
    open my $fh, '<:raw', $path or croak "cannot read $path: $!";
    local $/;
    return scalar <$fh>;
}

1;
