package Teleport::ConfigTest;

# "httpd -t" on small generated configurations that load the built module,
# for the tests of startup errors and warnings.
use strict;
use warnings;

use Apache::Test ();
use Exporter qw(import);

our @EXPORT_OK = qw(config_test write_text);

# Write $dir/httpd.conf with $server at server level and $location inside
# <Location "/app"> after "AuthType Teleport" and "AuthName", and run
# "httpd -t" on it.  Returns the exit status and the output (stdout, stderr
# and the error log).
sub config_test {
    my (%args) = @_;
    my $dir = $args{dir};
    my $httpd = Apache::Test::vars('httpd');
    my $module = $ENV{TELEPORT_TEST_MODULE}
        or die "TELEPORT_TEST_MODULE is not set: run t/TEST\n";
    my $apxs = Apache::Test::vars('apxs') || 'apxs';
    chomp(my $modules_dir = `$apxs -q LIBEXECDIR 2>/dev/null` // '');
    $modules_dir ||= '/usr/lib/apache2/modules';

    my $conf = "$dir/httpd.conf";
    my @modules = map { "LoadModule ${_}_module $modules_dir/mod_$_.so" }
        qw(mpm_event authn_core authz_core authz_user socache_shmcb);
    write_text($conf, join "\n",
        "ServerRoot \"$dir\"",
        'ServerName localhost',
        'Listen 127.0.0.1:8',
        "PidFile \"$dir/httpd.pid\"",
        "ErrorLog \"$dir/error_log\"",
        "DefaultRuntimeDir \"$dir\"",
        @modules,
        "LoadModule auth_teleport_module \"$module\"",
        $args{server} // '',
        '<Location "/app">',
        '    AuthType Teleport',
        '    AuthName "app"',
        (map { "    $_" } split /\n/, $args{location} // ''),
        '</Location>',
        '');
    unlink "$dir/error_log";
    my $output = `'$httpd' -t -f '$conf' 2>&1`;
    my $status = $? >> 8;
    if (open my $log, '<', "$dir/error_log") {
        local $/;
        $output .= <$log> // '';
    }
    return ($status, $output);
}

sub write_text {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!";
    return;
}

1;
